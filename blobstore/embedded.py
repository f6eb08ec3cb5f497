"""The embedded PostgreSQL used when no database URL is configured.

The binaries come from the ``pgserver`` wheel; this module runs them itself
(``initdb``, ``pg_ctl``) so that it decides what matters for security and
for Ctrl-C:

* The cluster lives in ``<state_dir>/pg``, listens on no TCP port at all
  (``listen_addresses=''``; TCP logins are rejected in ``pg_hba.conf`` too)
  and only on a UNIX socket.  Local logins are trusted (no password), so the
  directory holding the socket is what keeps other local users out: it must
  be private to the server's user (mode 0700, :func:`check_socket_dir`).  It
  is the data directory itself when the path is short enough for a socket
  (107 bytes); otherwise a fresh ``mkdtemp`` directory (0700) in
  ``$XDG_RUNTIME_DIR`` when that is private, else in the temporary directory.
  A server whose socket directory is not private is refused, never used.
* ``initdb`` and ``pg_ctl`` run in their own session, so the terminal's
  Ctrl-C (SIGINT to the foreground process group) does not reach them or the
  server.  A Ctrl-C in this process while one of them runs is held until it
  has finished (each has a time limit) and raised afterwards, so a start or a
  stop is never cut in half, and a server this process was starting is
  stopped again.
* Several processes may use one cluster: their pids are kept in
  ``<state_dir>/pg.pids`` under an exclusive lock on ``<state_dir>/pg.lock``;
  the last one to release its handle stops the server (``pg_ctl stop -m
  fast``, then SIGQUIT and SIGKILL if it does not go within the limit).

When run as root the server runs as the ``pgserver`` system user (created
if missing, as the pgserver package does); the data directory and the
socket directory belong to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError
from twisted.logger import Logger

from blobstore.errors import StoreError

log = Logger()

DATABASE_NAME = "mepl"
PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
#: Longest UNIX socket path in bytes (``sun_path`` without its final NUL).
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107
SOCKET_DIR_PREFIX = "mepl-pg-"
#: The user the server runs as when ``mepl`` runs as root (PostgreSQL refuses root).
ROOT_SERVICE_USER = "pgserver"
INITDB_TIMEOUT_S = 300.0
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
KILL_WAIT_S = 5.0


class EmbeddedServerError(StoreError):
    """The embedded server cannot be started, joined or stopped safely."""


def check_socket_dir(path: Path, owner_uid: int) -> None:
    """Refuse a socket directory that anyone but ``owner_uid`` could enter or replace.

    It must be a real directory (not a symbolic link) owned by ``owner_uid``
    with no permission for group or others (0700), in a parent that others
    cannot write to (or that has the sticky bit, as ``/tmp`` has).  Raises
    :class:`EmbeddedServerError` saying what is wrong.
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise EmbeddedServerError(f"socket directory {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise EmbeddedServerError(f"socket directory {path} is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise EmbeddedServerError(f"socket directory {path} is not a directory")
    if info.st_uid != owner_uid:
        raise EmbeddedServerError(
            f"socket directory {path} is owned by uid {info.st_uid}, not by the server's "
            f"user (uid {owner_uid})")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise EmbeddedServerError(
            f"socket directory {path} has mode {mode:04o}: only the server's user may enter "
            "it (0700), as anyone who reaches the socket is database superuser")
    if not _others_cannot_replace_in(path.parent, owner_uid):
        raise EmbeddedServerError(
            f"socket directory {path}: others can write to its parent {path.parent} "
            "and could replace it")


class EmbeddedServer:
    """A handle on the running embedded cluster; :meth:`stop` releases it."""

    def __init__(self, cluster: _Cluster, socket_dir: str) -> None:
        self._cluster = cluster
        self.pgdata = cluster.pgdata
        self.socket_dir = socket_dir
        self._stopped = False

    def url(self, database: str = DATABASE_NAME) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return (f"postgresql+psycopg2://postgres@/{database}"
                f"?host={quote(self.socket_dir)}&port={PORT}")

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (for monitoring), or None once stopped."""
        if self._stopped:
            return None
        info = _read_postmaster(self.pgdata)
        return info.pid if info is not None else None

    def stop(self) -> None:
        """Release this handle; the server stops when no handle in any process is left.

        Calling it again does nothing.  Stopping the server is bounded: a fast
        shutdown, then SIGQUIT and SIGKILL if it does not go in time.
        """
        if not self._stopped:
            self._stopped = True
            self._cluster.release()


def start_embedded(state_dir: Path, database: str = DATABASE_NAME) -> EmbeddedServer:
    """Start (or join) the cluster in ``<state_dir>/pg`` and make sure ``database`` exists.

    Raises :class:`EmbeddedServerError` when the server cannot be started or
    its socket directory is not private.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir.resolve()
    with _registry_lock:
        cluster = _clusters.get(state_dir)
        if cluster is None:
            cluster = _clusters[state_dir] = _Cluster(state_dir)
    embedded = EmbeddedServer(cluster, str(cluster.acquire()))
    try:
        _ensure_database(embedded, database)
    except BaseException:
        embedded.stop()
        raise
    log.info("embedded PostgreSQL ready in {pgdata}, socket in {socket_dir}",
             pgdata=str(embedded.pgdata), socket_dir=embedded.socket_dir)
    return embedded


def _ensure_database(embedded: EmbeddedServer, database: str) -> None:
    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {database!r}")
    engine = create_engine(embedded.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            ).first()
            if exists is None:
                try:
                    conn.execute(text(f'CREATE DATABASE "{database}"'))
                except ProgrammingError as exc:
                    if getattr(exc.orig, "pgcode", None) != "42P04":  # duplicate_database
                        raise
    finally:
        engine.dispose()


_registry_lock = threading.RLock()
_clusters: dict[Path, _Cluster] = {}


@dataclass(frozen=True)
class _Postmaster:
    """What ``postmaster.pid`` says about a server."""

    pid: int
    socket_dir: Path | None
    listen: str
    status: str


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    fields = [line.strip() for line in lines] + [""] * 8
    if not fields[0].isdigit():
        return None
    return _Postmaster(pid=int(fields[0]), socket_dir=Path(fields[4]) if fields[4] else None,
                       listen=fields[5], status=fields[7])


def _is_postmaster(pid: int) -> bool:
    """True while ``pid`` is a live ``postgres`` process (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs: ask the kernel only
        return _pid_alive(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        comm = (proc / "comm").read_text().strip()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and comm == "postgres"


def _socket_path_fits(directory: Path) -> bool:
    return len(os.fsencode(directory / SOCKET_NAME)) <= MAX_SOCKET_PATH


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver package (the embedded PostgreSQL) is not "
                                  "installed: configure a database URL or install pgserver")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_env() -> dict[str, str]:
    """Our environment without libpq/PostgreSQL variables (PGPORT would move the socket)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(args: list[str], *, what: str, timeout: float, as_user: tuple[int, int] | None,
         cwd: Path) -> None:
    """Run a PostgreSQL program in its own session and wait for it, even through Ctrl-C.

    A KeyboardInterrupt arriving meanwhile is held until the program has
    finished (at most ``timeout`` seconds, then it is killed) and raised
    afterwards.  A failure raises :class:`EmbeddedServerError` with the
    end of the program's output.  ``as_user`` (uid, gid) runs it as that user
    with no supplementary groups (only when we are root).
    """
    uid, gid, groups = (None, None, None) if as_user is None else (*as_user, ())
    interrupted = False
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(  # noqa: S603 - fixed programs, no shell
            args, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            text=True, start_new_session=True, user=uid, group=gid, extra_groups=groups,
            cwd=cwd, env=_server_env())
        deadline = time.monotonic() + timeout
        while proc.returncode is None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except KeyboardInterrupt:
                interrupted = True
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise EmbeddedServerError(f"{what} did not finish within {timeout:.0f} s") \
                    from None
        output.seek(0)
        tail = " / ".join(output.read().strip().splitlines()[-3:])
    if interrupted:
        raise KeyboardInterrupt
    if proc.returncode != 0:
        raise EmbeddedServerError(f"{what} failed (exit status {proc.returncode}): {tail}")


class _Cluster:
    """One data directory, shared by every handle in this process and by other processes."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pgdata = state_dir / "pg"
        self._bin = _bin_dir()
        self._users = 0  # handles held in this process
        self._service_uid, self._service_gid = _service_ids()
        atexit.register(self._release_all)

    # -- handles --------------------------------------------------------------

    def acquire(self) -> Path:
        """Take a handle, starting the server if no process runs it; return its socket dir."""
        with _registry_lock, self._file_lock():
            if self._users == 0:
                started = False
                registered = False
                try:
                    others = self._live_handles()
                    info = self._running_server()
                    if info is None:
                        self._init_cluster()
                        started = True
                        info = self._start_server()
                    socket_dir = self._check_server(info)
                    self._write_handles([*others, os.getpid()])
                    registered = True
                finally:
                    if started and not registered and not self._live_handles():
                        self._stop_server()
            else:
                info = self._running_server()
                if info is None:
                    raise EmbeddedServerError(f"the embedded server in {self.pgdata} has stopped")
                socket_dir = self._check_server(info)
            self._users += 1
            return socket_dir

    def release(self) -> None:
        """Give back one handle; the last handle of the last process stops the server."""
        with _registry_lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            with self._file_lock():
                others = self._live_handles()
                self._write_handles(others)
                if not others:
                    self._stop_server()

    def _release_all(self) -> None:
        with _registry_lock:
            if self._users:
                self._users = 1
                self.release()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fd = os.open(self.state_dir / "pg.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _live_handles(self) -> list[int]:
        """Pids of other processes holding a handle (dead ones are dropped)."""
        try:
            pids = json.loads((self.state_dir / "pg.pids").read_text())
        except (FileNotFoundError, ValueError):
            return []
        me = os.getpid()
        return [p for p in pids if isinstance(p, int) and p != me and _pid_alive(p)]

    def _write_handles(self, pids: list[int]) -> None:
        path = self.state_dir / "pg.pids"
        tmp = path.with_suffix(".pids.tmp")
        tmp.write_text(json.dumps(pids))
        tmp.replace(path)

    # -- the server ---------------------------------------------------------

    def _running_server(self) -> _Postmaster | None:
        """The server running on the data directory, once ready; None if there is none."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            info = _read_postmaster(self.pgdata)
            if info is None or not _is_postmaster(info.pid):
                return None
            if info.status == "ready":
                return info
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"the embedded server in {self.pgdata} is {info.status or 'starting'} "
                    f"and not ready after {START_TIMEOUT_S} s; see {self.pgdata / 'log'}")
            time.sleep(0.1)

    def _check_server(self, info: _Postmaster) -> Path:
        if info.listen:
            raise EmbeddedServerError(
                f"the embedded server in {self.pgdata} (pid {info.pid}) listens on TCP "
                f"({info.listen}): stop it, it is not one this mepl started")
        if info.socket_dir is None:
            raise EmbeddedServerError(
                f"the embedded server in {self.pgdata} (pid {info.pid}) has no UNIX socket")
        try:
            check_socket_dir(info.socket_dir, self._service_uid)
        except EmbeddedServerError as exc:
            raise EmbeddedServerError(
                f"{exc}; refusing the embedded server in {self.pgdata} (pid {info.pid}): "
                "stop it and start again") from None
        return info.socket_dir

    def _init_cluster(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedServerError(
                    f"{self.pgdata} is not empty but holds no PostgreSQL cluster (no "
                    "PG_VERSION): move it away")
            self.pgdata.rmdir()
        # Built aside and renamed into place: an interrupted initdb leaves no half cluster.
        building = Path(tempfile.mkdtemp(prefix="pg.init-", dir=self.state_dir))
        try:
            self._give_to_service_user(building)
            _run([str(self._bin / "initdb"), "-D", str(building), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8"],
                 what="initdb", timeout=INITDB_TIMEOUT_S, as_user=self._run_as(),
                 cwd=self.state_dir)
            building.rename(self.pgdata)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        log.info("embedded PostgreSQL cluster created in {pgdata}", pgdata=str(self.pgdata))

    def _start_server(self) -> _Postmaster:
        socket_dir = self._socket_dir()
        options = " ".join([
            "-c", shlex.quote("listen_addresses="),
            "-p", str(PORT),
            "-k", shlex.quote(str(socket_dir)),
            "-c", "unix_socket_permissions=0700",
        ])
        try:
            _run([str(self._bin / "pg_ctl"), "start", "-D", str(self.pgdata), "-w",
                  "-t", str(START_TIMEOUT_S), "-l", str(self.pgdata / "log"), "-o", options],
                 what="pg_ctl start", timeout=START_TIMEOUT_S + 10, as_user=self._run_as(),
                 cwd=self.state_dir)
            info = self._running_server()
            if info is None:
                raise EmbeddedServerError(
                    f"the embedded server did not start; see {self.pgdata / 'log'}")
        except BaseException:
            self._stop_server()
            _remove_socket_dir(socket_dir, self.pgdata)
            raise
        return info

    def _socket_dir(self) -> Path:
        """The data directory if the socket path fits there, else a fresh private directory."""
        if _socket_path_fits(self.pgdata):
            return self.pgdata
        for base in self._socket_bases():
            candidate = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=base))  # 0700
            if _socket_path_fits(candidate):
                if os.geteuid() == 0:
                    os.chown(candidate, self._service_uid, self._service_gid)
                check_socket_dir(candidate, self._service_uid)
                return candidate
            candidate.rmdir()
        raise EmbeddedServerError(
            f"the path of {self.pgdata} is too long for a UNIX socket (at most "
            f"{MAX_SOCKET_PATH} bytes) and no short private directory was found: set "
            "XDG_RUNTIME_DIR or TMPDIR to a short directory, or use a shorter state directory")

    def _socket_bases(self) -> list[Path]:
        bases = []
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        # Root's runtime directory cannot be entered by the service user.
        if runtime and os.geteuid() != 0 and _is_private_dir(Path(runtime)):
            bases.append(Path(runtime))
        for base in (Path(tempfile.gettempdir()), Path("/tmp")):  # noqa: S108 - mkdtemp in it
            if base not in bases and _others_cannot_replace_in(base):
                bases.append(base)
        return bases

    def _stop_server(self) -> None:
        """Stop the server on the data directory, if any; bounded, and harmless if none."""
        info = _read_postmaster(self.pgdata)
        if info is None or not _is_postmaster(info.pid):
            return
        log.info("stopping the embedded PostgreSQL (pid {pid})", pid=info.pid)
        try:
            _run([str(self._bin / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast",
                  "-w", "-t", str(STOP_TIMEOUT_S)],
                 what="pg_ctl stop", timeout=STOP_TIMEOUT_S + 5, as_user=self._run_as(),
                 cwd=self.state_dir)
        except EmbeddedServerError as exc:
            log.warn("embedded PostgreSQL: {error}", error=str(exc))
        finally:
            _kill_if_running(info.pid)
            if info.socket_dir is not None:
                _remove_socket_dir(info.socket_dir, self.pgdata)

    # -- running as root ------------------------------------------------------

    def _run_as(self) -> tuple[int, int] | None:
        return (self._service_uid, self._service_gid) if os.geteuid() == 0 else None

    def _give_to_service_user(self, directory: Path) -> None:
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

        # As pgserver does: the service user must reach the directory and the binaries.
        os.chown(directory, self._service_uid, self._service_gid)
        ensure_prefix_permissions(directory)
        ensure_prefix_permissions(self._bin)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self._bin, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self._bin.parent / "lib", read)


def _service_ids() -> tuple[int, int]:
    """Uid and gid the server runs as: ours, or the service user's when we are root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(ROOT_SERVICE_USER)
    except KeyError:
        try:
            subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin",  # noqa: S603, S607
                            ROOT_SERVICE_USER], check=True, capture_output=True)
            entry = pwd.getpwnam(ROOT_SERVICE_USER)
        except (OSError, KeyError, subprocess.CalledProcessError) as exc:
            raise EmbeddedServerError(
                f"running as root, the embedded PostgreSQL needs a {ROOT_SERVICE_USER!r} "
                f"user and it could not be created ({exc}): run mepl as another user") from None
    return entry.pw_uid, entry.pw_gid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_private_dir(path: Path) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & 0o077)


def _others_cannot_replace_in(path: Path, owner_uid: int | None = None) -> bool:
    """True for a directory in which no one else can rename what we create.

    Sticky (as ``/tmp``), or writable only by its owner, who is root, us or
    ``owner_uid``.
    """
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and (
        bool(info.st_mode & stat.S_ISVTX)
        or (not info.st_mode & 0o022 and info.st_uid in (0, os.geteuid(), owner_uid)))


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _is_postmaster(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill_if_running(pid: int) -> None:
    """Immediate shutdown (SIGQUIT), then SIGKILL, of a postmaster that would not stop."""
    if _gone_within(pid, 2.0):  # it removes postmaster.pid just before it exits
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        log.warn("embedded PostgreSQL (pid {pid}) still running: sending {signal}",
                 pid=pid, signal=sig.name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _gone_within(pid, KILL_WAIT_S):
            return


def _remove_socket_dir(socket_dir: Path, pgdata: Path) -> None:
    """Remove a private socket directory made for a server (never the data directory)."""
    if socket_dir != pgdata and socket_dir.name.startswith(SOCKET_DIR_PREFIX):
        with contextlib.suppress(OSError):
            socket_dir.rmdir()  # empty once the server is gone; anything else is left alone
