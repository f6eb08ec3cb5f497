"""The real, embedded PostgreSQL the tests run against (pgserver, from pip).

One cluster per test process, started on first use in a temporary directory
on a UNIX socket and stopped at exit.  ``create_database()`` gives each test
its own empty database in milliseconds.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
from typing import Any
from urllib.parse import quote

import psycopg2

_lock = threading.Lock()
_server: Any = None
_socket_dir: str | None = None
_counter = itertools.count(1)


def _ensure_server() -> str:
    global _server, _socket_dir
    with _lock:
        if _server is None:
            import pgserver

            pgdata = tempfile.mkdtemp(prefix="mepl-test-pg-")
            _server = pgserver.get_server(pgdata, cleanup_mode="stop")
            _socket_dir = str(_server.get_uri()).split("host=", 1)[1]

            def _stop() -> None:
                try:
                    _server.cleanup()
                finally:
                    shutil.rmtree(pgdata, ignore_errors=True)

            atexit.register(_stop)
        assert _socket_dir is not None
        return _socket_dir


def database_url(name: str) -> str:
    """SQLAlchemy URL of database ``name`` in the test cluster."""
    host = _ensure_server()
    return f"postgresql+psycopg2://postgres@/{name}?host={quote(host)}"


def admin_execute(sql: str) -> None:
    """Run one statement on the maintenance database, in autocommit mode."""
    host = _ensure_server()
    conn = psycopg2.connect(dbname="postgres", user="postgres", host=host)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database(prefix: str = "t", template: str | None = None) -> str:
    """Create a new uniquely named database (optionally from ``template``); return its URL."""
    name = f"{prefix}_{next(_counter)}"
    suffix = f" TEMPLATE {template}" if template else ""
    admin_execute(f'CREATE DATABASE "{name}"{suffix}')
    return database_url(name)


_template_lock = threading.Lock()
_template: str | None = None


def migrated_database(prefix: str = "m") -> str:
    """Create a new database at the schema head; return its URL.

    The first call migrates a template database with the real migrations
    (``blobstore.migrate.upgrade``); later calls copy it, in milliseconds.
    """
    global _template
    with _template_lock:
        if _template is None:
            from sqlalchemy import create_engine

            from blobstore.migrate import upgrade

            url = create_database("tmpl")
            engine = create_engine(url)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            _template = url.split("?", 1)[0].rsplit("/", 1)[1]
    return create_database(prefix, template=_template)
