"""Run every fuzz harness for a fixed budget, one after the other, and report.

    python fuzz/run_all.py --seconds 300            # every target, 5 minutes each
    python fuzz/run_all.py --seconds 60 --targets smpp_session,config
    python fuzz/run_all.py --seconds 300 --keep     # then minimise into the kept corpus

Each target runs as its own process (``python fuzz/<target>.py``) on a
scratch corpus seeded from ``tests/fuzz/corpus/<target>`` (see
:func:`fuzz._common.run`), with a per-input time limit (``--timeout``, a
hang is a finding) and a memory limit (``--rss-limit-mb``, unbounded memory
is a finding).  The table gives, per target: inputs run, executions per
second, coverage (libFuzzer's ``cov``, edges of our packages) at start and at
the end, the scratch corpus size, crashes (including hangs and
out-of-memory), and peak RSS.  With ``--keep``, the scratch corpus is merged
into the kept corpus, keeping only inputs that add coverage.  The exit
status is 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz import TARGETS
from fuzz._common import CORPUS_ROOT, ROOT, work_dir

REGRESSION_PREFIX = "regression-"
"""Kept inputs named so (the crashes found, after the fix) survive every re-minimisation."""
_COV = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass
class Result:
    """What one target's run showed."""

    target: str
    seconds: float
    runs: int = 0
    execs_per_s: int = 0
    cov_start: int = 0
    cov_end: int = 0
    features: int = 0
    corpus: int = 0
    peak_rss_mb: int = 0
    crashes: list[str] = field(default_factory=list)
    exit_code: int = 0
    kept: int | None = None
    cov_timeline: list[tuple[int, int]] = field(default_factory=list)


def parse_log(target: str, seconds: float, text: str, exit_code: int) -> Result:
    """Read libFuzzer's output (``-print_final_stats=1``) into a :class:`Result`."""
    result = Result(target, seconds, exit_code=exit_code)
    for line in text.splitlines():
        cov = _COV.match(line)
        if cov:
            runs, kind, edges, features, corpus = cov.groups()
            if kind == "INITED":
                result.cov_start = int(edges)
            result.cov_end, result.features = int(edges), int(features)
            result.corpus, result.runs = int(corpus), max(result.runs, int(runs))
            if kind in ("INITED", "pulse", "DONE"):
                result.cov_timeline.append((int(runs), int(edges)))
            continue
        stat = _STAT.match(line)
        if stat:
            name, number = stat.groups()
            if name == "number_of_executed_units":
                result.runs = int(number)
            elif name == "average_exec_per_sec":
                result.execs_per_s = int(number)
            elif name == "peak_rss_mb":
                result.peak_rss_mb = int(number)
            continue
        artifact = _ARTIFACT.search(line)
        if artifact:
            result.crashes.append(artifact.group(1))
    return result


def run_target(target: str, seconds: float, *, timeout: int, rss_limit_mb: int,
               log_dir: Path) -> Result:
    """Fuzz one target for ``seconds``; its log goes to ``log_dir/<target>.log``."""
    work = work_dir(target)
    command = [sys.executable, str(ROOT / "fuzz" / f"{target}.py"),
               f"-max_total_time={int(seconds)}", f"-timeout={timeout}",
               f"-rss_limit_mb={rss_limit_mb}", "-print_final_stats=1",
               f"-artifact_prefix={work}/", str(work)]
    # Seed the scratch corpus (the harness does it when given no directory).
    subprocess.run([sys.executable, str(ROOT / "fuzz" / f"{target}.py"), "-runs=0"],
                   check=False, capture_output=True, cwd=ROOT)
    log = log_dir / f"{target}.log"
    with log.open("wb") as out:
        process = subprocess.run(command, check=False, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=ROOT)
    text = log.read_text("utf-8", "replace")
    return parse_log(target, seconds, text, process.returncode)


def keep(target: str) -> int:
    """Merge the scratch corpus into the kept one (coverage-adding inputs only, no
    hit-count features, so the kept set stays small; ``regression-*`` files always stay);
    returns the kept file count."""
    kept = CORPUS_ROOT / target
    kept.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "merged"
        merged.mkdir()
        subprocess.run([sys.executable, str(ROOT / "fuzz" / f"{target}.py"), "-merge=1",
                        "-use_counters=0", "-timeout=10", str(merged), str(kept),
                        str(work_dir(target))],
                       check=False, capture_output=True, cwd=ROOT)
        files = sorted(p for p in merged.iterdir() if p.is_file())
        if files:
            for old in kept.iterdir():
                if not old.name.startswith(REGRESSION_PREFIX):
                    old.unlink()
            for path in files:
                shutil.copyfile(path, kept / path.name)
    return sum(1 for p in kept.iterdir() if p.is_file())


def table(results: list[Result]) -> str:
    """The report, one line per target."""
    head = (f"{'target':<14} {'seconds':>7} {'runs':>10} {'execs/s':>8} {'cov':>11} "
            f"{'corpus':>6} {'kept':>5} {'crashes':>7} {'peak RSS':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        kept = "-" if r.kept is None else str(r.kept)
        lines.append(f"{r.target:<14} {r.seconds:>7.0f} {r.runs:>10} {r.execs_per_s:>8} "
                     f"{f'{r.cov_start}->{r.cov_end}':>11} {r.corpus:>6} {kept:>5} "
                     f"{len(r.crashes):>7} {f'{r.peak_rss_mb} MB':>9}")
    for r in results:
        for crash in r.crashes:
            lines.append(f"CRASH {r.target}: {crash}")
        if r.exit_code and not r.crashes:
            lines.append(f"{r.target}: exited with status {r.exit_code} (see its log)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the targets in turn, print the table."""
    parser = argparse.ArgumentParser(description="Run every fuzz harness for a fixed budget.")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="budget per target, in seconds (default 60)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated targets (default: all of {', '.join(TARGETS)})")
    parser.add_argument("--timeout", type=int, default=10,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=1024,
                        help="memory a harness may use before it counts as a crash")
    parser.add_argument("--keep", action="store_true",
                        help="merge each scratch corpus into tests/fuzz/corpus/<target>")
    parser.add_argument("--logs", type=Path, default=None,
                        help="directory for the libFuzzer logs (default: a scratch dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    log_dir = args.logs or work_dir("logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for target in targets:
        started = time.monotonic()
        print(f"fuzzing {target} for {args.seconds:.0f}s...", flush=True)
        result = run_target(target, args.seconds, timeout=args.timeout,
                            rss_limit_mb=args.rss_limit_mb, log_dir=log_dir)
        result.seconds = time.monotonic() - started
        if args.keep and not result.crashes:
            result.kept = keep(target)
        results.append(result)
    print(table(results))
    print(f"logs: {log_dir}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 1 if any(r.crashes or r.exit_code for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
