"""The invariants every fault scenario ends with, checked through SQL and the handsets.

1. **final**: every command is in a final state, and only in those the
   scenario expects (``done`` unless it says otherwise; ``refused``,
   ``failed`` or ``expired`` where it makes them happen).
2. **none lost**: there are exactly as many commands as were queued, and
   every command the server counts as answered (``done``/``refused``) was
   executed by its handset under the command's own key and counter.
3. **none executed twice**: no handset executed a (key, counter) twice,
   every execution is a command row of that device with that key and counter
   (a command re-sealed under a new counter after it ran would show as an
   execution without a row), and no command has more than one reply applied.
4. **stored once**: over SMPP, at least every deliver_sm the SMSC saw
   acknowledged and at most every one it sent is stored (an acknowledged
   message is never lost, none is stored twice); over HTTP, no gateway id is
   stored twice and every callback acknowledged with 200 is stored.
5. **queue drained**: the inbound queue is empty, but for the parked items
   (``state = 'failed'``) the scenario expects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from mepl.fleet import SimulatedDevice
from tests.faults.ledger import LEDGER, ScenarioResult

FINAL_STATES = frozenset({"done", "refused", "failed", "expired"})


@dataclass(frozen=True)
class Expect:
    """What a scenario expects at the end, beyond the invariants themselves."""

    states: frozenset[str] = frozenset({"done"})
    parked: int = 0
    callbacks_acknowledged: frozenset[str] = frozenset()
    smpp_deliver: Mapping[str, int] = field(default_factory=dict)


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def _final(engine: Engine, expect: Expect) -> tuple[bool, str]:
    states = dict(_rows(engine, "SELECT state, count(*) FROM commands GROUP BY state"))
    bad = {s: n for s, n in states.items() if s not in FINAL_STATES or s not in expect.states}
    return not bad, f"states {states}" + (f", unexpected {bad}" if bad else "")


def _none_lost(engine: Engine, devices: Mapping[int, SimulatedDevice],
               queued: int) -> tuple[bool, str]:
    total = _rows(engine, "SELECT count(*) FROM commands")[0][0]
    answered = _rows(engine, "SELECT device_id, key_id, counter FROM commands "
                             "WHERE state IN ('done', 'refused')")
    unexecuted = [(d, k, c) for d, k, c in answered
                  if d not in devices or (k, c) not in set(devices[d].slots)]
    ok = total == queued and not unexecuted
    return ok, (f"{total} commands for {queued} queued, {len(answered)} answered, "
                f"{len(unexecuted)} answered but never executed {unexecuted[:5]}")


def _once(engine: Engine, devices: Mapping[int, SimulatedDevice]) -> tuple[bool, str]:
    rows = {(d, k, c) for d, k, c in _rows(
        engine, "SELECT device_id, key_id, counter FROM commands WHERE counter IS NOT NULL")}
    twice: list[Any] = []
    orphans: list[Any] = []
    executions = 0
    for device_id, device in devices.items():
        executions += len(device.slots)
        twice += [(device_id, s) for s, n in Counter(device.slots).items() if n > 1]
        orphans += [(device_id, s) for s in device.slots if (device_id, *s) not in rows]
    replies = _rows(engine, "SELECT command_id, count(*) FROM command_events WHERE event IN "
                            "('reply_ok', 'reply_refused') GROUP BY command_id "
                            "HAVING count(*) > 1")
    ok = not twice and not orphans and not replies
    return ok, (f"{executions} executions, {len(twice)} slots executed twice {twice[:5]}, "
                f"{len(orphans)} executions without their command {orphans[:5]}, "
                f"{len(replies)} commands with more than one reply applied {replies[:5]}")


def _stored_once(engine: Engine, expect: Expect) -> tuple[bool, str]:
    smpp = _rows(engine, "SELECT count(*) FROM messages WHERE direction = 'in' "
                         "AND channel = 'smpp' AND kind NOT IN ('pdu', 'pdu_batch')")[0][0]
    details = []
    ok = True
    if expect.smpp_deliver:
        acked, sent = expect.smpp_deliver["deliver_ok"], expect.smpp_deliver["deliver_sm"]
        ok = acked <= smpp <= sent
        details.append(f"SMPP: {smpp} stored, {acked} acknowledged, {sent} sent")
    dupes = _rows(engine, "SELECT link, external_id, count(*) FROM messages WHERE "
                          "direction = 'in' AND external_id IS NOT NULL "
                          "GROUP BY link, external_id HAVING count(*) > 1")
    # external_id is "<callback kind>:<the gateway's id>" (mepl.http_store).
    stored = {e.split(":", 1)[-1] for (e,) in _rows(
        engine, "SELECT external_id FROM messages WHERE direction = 'in' "
                "AND external_id IS NOT NULL")}
    missing = expect.callbacks_acknowledged - stored
    ok = ok and not dupes and not missing
    details.append(f"HTTP: {len(stored)} gateway ids stored, {len(dupes)} stored twice, "
                   f"{len(missing)} acknowledged but not stored {sorted(missing)[:5]}")
    return ok, "; ".join(details)


def _drained(engine: Engine, expect: Expect) -> tuple[bool, str]:
    states = dict(_rows(engine, "SELECT state, count(*) FROM inbound_queue GROUP BY state"))
    parked = states.pop("failed", 0)
    # What is left, for a failure message: enough to tell when and how it came.
    left = [tuple(r) for r in _rows(
        engine, "SELECT q.kind, q.state, q.link, q.smsc_message_id, q.attempts, "
                "q.created_at::text, (SELECT count(*) FROM messages AS s WHERE s.direction = "
                "'out' AND s.smsc_message_id = q.smsc_message_id) AS submits "
                "FROM inbound_queue AS q WHERE q.state <> 'failed' ORDER BY q.id LIMIT 5")]
    return not states and parked == expect.parked, (
        f"queue {states or 'empty'}, {parked} parked ({expect.parked} expected)"
        + (f"; first left (kind, state, link, SMSC id, attempts, created, submits "
           f"recorded): {left}" if left else ""))


def inbound_count(engine: Engine) -> int:
    """Inbound messages stored (not PDU log rows)."""
    return int(_rows(engine, "SELECT count(*) FROM messages WHERE direction = 'in' "
                             "AND kind NOT IN ('pdu', 'pdu_batch')")[0][0])


def check_invariants(engine: Engine, devices: Mapping[int, SimulatedDevice], *,
                     scenario: str, scale: str, faults: Mapping[str, int], queued: int,
                     expect: Expect = Expect(), context: Iterable[str] = ()) -> ScenarioResult:
    """Check the five invariants, record the result for the report, fail if one broke.

    ``devices`` maps each device row id to its simulated handset; ``queued``
    is how many commands the scenario queued; ``context`` (process output,
    say) goes into the failure message.
    """
    checks = {
        "final": _final(engine, expect),
        "none lost": _none_lost(engine, devices, queued),
        "none executed twice": _once(engine, devices),
        "stored once": _stored_once(engine, expect),
        "queue drained": _drained(engine, expect),
    }
    result = ScenarioResult(scenario, scale, dict(faults), queued, inbound_count(engine),
                            {k: ok for k, (ok, _) in checks.items()},
                            {k: d for k, (_, d) in checks.items()})
    LEDGER.append(result)
    if not result.ok:
        report = "\n".join(f"{k}: {'ok' if ok else 'BROKEN'}: {d}"
                           for k, (ok, d) in checks.items())
        raise AssertionError(f"{scenario}: invariants broken\n{report}\n" + "\n".join(context))
    return result
