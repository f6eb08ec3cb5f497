"""Who can reach the embedded PostgreSQL: only its own user, through a private socket.

The embedded cluster trusts every local connection (no passwords), so the
directory holding its UNIX socket is the only thing between a local user and
superuser access.  These tests run against the real embedded server.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from blobstore.embedded import EmbeddedServerError, check_socket_dir, start_embedded

# Long enough that <state>/pg/.s.PGSQL.5432 exceeds the 107 bytes of a UNIX socket path.
LONG_NAME = "a-state-directory-with-a-rather-long-name-" * 2


def _service_uid() -> int:
    """The user the embedded server runs as: ourselves, or `pgserver` when we are root."""
    return pwd.getpwnam("pgserver").pw_uid if os.geteuid() == 0 else os.geteuid()


def _long_state_dir(tmp_path: Path) -> Path:
    state = tmp_path / LONG_NAME / "state"
    assert len(os.fsencode(state / "pg" / ".s.PGSQL.5432")) > 107
    return state


def _select_one(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT 1")).scalar_one())
    finally:
        engine.dispose()


def test_long_state_dir_puts_the_socket_in_a_private_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    state = _long_state_dir(tmp_path)
    server = start_embedded(state)
    socket_dir = Path(server.socket_dir)
    try:
        info = os.lstat(socket_dir)
        assert stat.S_ISDIR(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == _service_uid()
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
        assert len(os.fsencode(socket_dir / ".s.PGSQL.5432")) <= 107
        assert _select_one(server.url()) == 1
    finally:
        server.stop()
    assert not (state / "pg" / "postmaster.pid").exists()
    assert not socket_dir.exists()  # the private directory goes with the server


def test_short_state_dir_keeps_the_socket_in_the_private_data_directory(tmp_path: Path) -> None:
    server = start_embedded(tmp_path / "state")
    try:
        assert Path(server.socket_dir) == server.pgdata
        info = os.lstat(server.pgdata)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == _service_uid()
    finally:
        server.stop()


def test_world_writable_runtime_dir_is_not_used_for_the_socket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    runtime.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    server = start_embedded(_long_state_dir(tmp_path))
    try:
        socket_dir = Path(server.socket_dir)
        assert runtime not in socket_dir.parents
        assert stat.S_IMODE(os.lstat(socket_dir).st_mode) == 0o700
    finally:
        server.stop()


def test_joining_a_server_whose_socket_dir_others_can_enter_is_refused(tmp_path: Path) -> None:
    state = _long_state_dir(tmp_path)
    server = start_embedded(state)
    socket_dir = Path(server.socket_dir)
    try:
        socket_dir.chmod(0o777)  # as the old fallback left it: anyone could connect
        with pytest.raises(EmbeddedServerError, match=r"has mode 0777: only the server's user"):
            start_embedded(state)
    finally:
        socket_dir.chmod(0o700)
        server.stop()
    assert not (state / "pg" / "postmaster.pid").exists()


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o1777, 0o710])
def test_pre_created_socket_dir_others_can_enter_is_refused(tmp_path: Path, mode: int) -> None:
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir()
    socket_dir.chmod(mode)
    with pytest.raises(EmbeddedServerError, match=f"has mode {mode:04o}"):
        check_socket_dir(socket_dir, os.geteuid())


def test_socket_dir_owned_by_another_user_or_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir(mode=0o700)
    socket_dir.chmod(0o700)
    check_socket_dir(socket_dir, os.geteuid())  # private and ours: accepted
    with pytest.raises(EmbeddedServerError, match=r"is owned by uid \d+, not by the server's user"):
        check_socket_dir(socket_dir, os.geteuid() + 1)
    link = tmp_path / "link"
    link.symlink_to(socket_dir)
    with pytest.raises(EmbeddedServerError, match="is a symbolic link"):
        check_socket_dir(link, os.geteuid())


def test_socket_dir_in_a_directory_others_can_rename_it_in_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)  # world-writable without the sticky bit (unlike /tmp)
    socket_dir = parent / "sock"
    socket_dir.mkdir()
    socket_dir.chmod(0o700)
    with pytest.raises(EmbeddedServerError, match="others can write to its parent"):
        check_socket_dir(socket_dir, os.geteuid())


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _inet_socket_inodes() -> set[int]:
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net") / table
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                inodes.add(int(line.split()[9]))
    return inodes


def test_embedded_server_is_not_reachable_over_tcp(tmp_path: Path) -> None:
    server = start_embedded(tmp_path / "state")
    try:
        engine = create_engine(server.url())
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SHOW listen_addresses")).scalar_one() == ""
                # Even if someone made it listen, TCP logins would be rejected.
                open_rules = conn.execute(text(
                    "SELECT count(*) FROM pg_hba_file_rules "
                    "WHERE type <> 'local' AND auth_method <> 'reject'")).scalar_one()
                assert open_rules == 0
        finally:
            engine.dispose()
        pid = server.pid
        assert pid is not None
        assert _socket_inodes(pid), "the postmaster has its UNIX socket open"
        assert not _socket_inodes(pid) & _inet_socket_inodes()
    finally:
        server.stop()
