"""What the fault suite injected and checked, for the terminal report.

Every scenario records one :class:`ScenarioResult` (through
:func:`tests.faults.invariants.check_invariants`); the suite's
``pytest_terminal_summary`` hook prints them (see :func:`summary_lines`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ScenarioResult:
    """One scenario run: the faults injected and the invariants checked.

    The first entry of ``faults`` is the fault injected (the headline count);
    any further entries say what it caused or came with (submits throttled
    by the storms, say).
    """

    scenario: str
    scale: str
    faults: dict[str, int]
    commands: int
    inbound: int
    outcomes: dict[str, bool] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    @property
    def injected(self) -> int:
        """The headline count: the first entry of ``faults``."""
        return next(iter(self.faults.values()), 0)

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return all(self.outcomes.values())

    def line(self) -> str:
        """One line: ``kill -9 [quick]: 3 injected (...); 5 invariants checked over ...: ok``."""
        what, *more = self.faults or {"nothing": 0}
        extra = "".join(f", {k} {self.faults[k]}" for k in more)
        failed = [name for name, ok in self.outcomes.items() if not ok]
        verdict = "ok" if not failed else "FAILED: " + ", ".join(failed)
        return (f"{self.scenario} [{self.scale}]: {self.injected} injected ({what}{extra}); "
                f"{len(self.outcomes)} invariants checked over {self.commands} commands "
                f"and {self.inbound} inbound messages: {verdict}")


LEDGER: list[ScenarioResult] = []


def summary_lines() -> list[str]:
    """The report: one line per scenario run, then the totals."""
    if not LEDGER:
        return []
    lines = [r.line() for r in LEDGER]
    faults = sum(r.injected for r in LEDGER)
    checks = sum(len(r.outcomes) for r in LEDGER)
    commands = sum(r.commands for r in LEDGER)
    failed = sum(1 for r in LEDGER if not r.ok)
    lines.append(f"total: {len(LEDGER)} scenario runs, {faults} faults injected, {checks} "
                 f"invariant checks over {commands} commands: "
                 + ("ok" if not failed else f"{failed} FAILED"))
    return lines
