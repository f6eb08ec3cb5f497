"""Ctrl-C and the embedded PostgreSQL, with real processes.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group.  The
process that brought up the embedded server must then exit promptly and leave
no server running, wherever the signal finds it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_AND_WAIT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from blobstore.embedded import start_embedded
    server = start_embedded(Path(sys.argv[1]))
    print("ready", server.pid, flush=True)
    time.sleep(120)
""")

EXIT_WITHIN_S = 30.0


def _running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] not in ("Z", "X")


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def _spawn(*args: str) -> subprocess.Popen[str]:
    # Its own process group, as a shell gives a foreground job; SIGINT goes to the group.
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _read_line_containing(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout} s; exit {proc.poll()}")


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Postmaster pids seen by a test; any still running afterwards is shut down."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown of a server the test left


def _interrupt_and_wait(proc: subprocess.Popen[str]) -> tuple[float, str]:
    os.killpg(proc.pid, signal.SIGINT)
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"still running {EXIT_WITHIN_S} s after Ctrl-C") from None
    return time.monotonic() - started, err


def _assert_stopped(pgdata: Path, pid: int) -> None:
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), "the embedded PostgreSQL was left running"
    assert not (pgdata / "postmaster.pid").exists()


def test_ctrl_c_while_the_embedded_server_runs_stops_it(
        tmp_path: Path, leftovers: list[int]) -> None:
    state = tmp_path / "state"
    proc = _spawn(sys.executable, "-c", START_AND_WAIT, str(state))
    pid = int(_read_line_containing(proc, "ready", 60).split()[1])
    leftovers.append(pid)
    assert os.getsid(pid) != os.getsid(proc.pid), "postgres must not share the terminal session"
    elapsed, err = _interrupt_and_wait(proc)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert elapsed < EXIT_WITHIN_S
    _assert_stopped(state / "pg", pid)


def test_ctrl_c_while_the_embedded_server_starts_leaves_none_running(
        tmp_path: Path, leftovers: list[int]) -> None:
    state = tmp_path / "state"
    pgdata = state / "pg"
    proc = _spawn(sys.executable, "-c", START_AND_WAIT, str(state))
    # Interrupt as soon as the postmaster exists, while the start is still under way.
    deadline = time.monotonic() + 60
    pid = None
    while pid is None and time.monotonic() < deadline and proc.poll() is None:
        pid = _postmaster_pid(pgdata)
        time.sleep(0.002)
    assert pid is not None, "the server never started"
    leftovers.append(pid)
    _interrupt_and_wait(proc)
    _assert_stopped(pgdata, pid)
    # The data directory is intact: the next start works.
    again = _spawn(sys.executable, "-c", START_AND_WAIT, str(state))
    pid = int(_read_line_containing(again, "ready", 60).split()[1])
    leftovers.append(pid)
    _interrupt_and_wait(again)
    _assert_stopped(pgdata, pid)


def test_ctrl_c_during_the_demo_exits_promptly_and_stops_postgres(
        tmp_path: Path, leftovers: list[int]) -> None:
    state = tmp_path / "state"
    mepl = Path(sys.executable).with_name("mepl")
    # Receipts held back for a minute: the scenario is surely running when Ctrl-C comes.
    proc = _spawn(str(mepl), "demo", "--state-dir", str(state), "--devices", "3",
                  "--receipt-delay", "60")
    _read_line_containing(proc, "fleet:", 90)
    pid = _postmaster_pid(state / "pg")
    assert pid is not None
    leftovers.append(pid)
    elapsed, _ = _interrupt_and_wait(proc)
    assert elapsed < EXIT_WITHIN_S
    _assert_stopped(state / "pg", pid)
