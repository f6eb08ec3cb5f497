"""The embedded PostgreSQL (pgserver, from pip) used when no database URL is configured.

The cluster lives in ``<state_dir>/pg`` and listens only on a UNIX socket.
pgserver counts the processes using a cluster, so several ``mepl`` processes
on one state directory share one server; the last one to stop stops it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError
from twisted.logger import Logger

log = Logger()

DATABASE_NAME = "mepl"


class EmbeddedServer:
    """A running embedded cluster; :meth:`stop` releases this process's handle."""

    def __init__(self, server: Any, pgdata: Path, socket_dir: str) -> None:
        self._server = server
        self.pgdata = pgdata
        self.socket_dir = socket_dir
        self._stopped = False

    def url(self, database: str = DATABASE_NAME) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg2://postgres@/{database}?host={quote(self.socket_dir)}"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (for monitoring), or None once stopped."""
        if self._stopped:
            return None
        pid = self._server.get_pid()
        return int(pid) if pid is not None else None

    def stop(self) -> None:
        """Release this process's handle; the server stops when no process uses it."""
        if not self._stopped:
            self._stopped = True
            self._server.cleanup()


def start_embedded(state_dir: Path, database: str = DATABASE_NAME) -> EmbeddedServer:
    """Start (or join) the cluster in ``<state_dir>/pg`` and make sure ``database`` exists."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (state_dir / "pg").resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    socket_dir = str(server.get_uri()).split("host=", 1)[1]
    embedded = EmbeddedServer(server, pgdata, socket_dir)
    try:
        _ensure_database(embedded, database)
    except Exception:
        embedded.stop()
        raise
    log.info("embedded PostgreSQL ready in {pgdata}", pgdata=str(pgdata))
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
