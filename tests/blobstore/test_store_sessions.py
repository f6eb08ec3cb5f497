"""Store sessions: a demoted primary is dropped and retried; the session settings."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from blobstore.config import DatabaseConfig
from blobstore.database import create_store_engine
from blobstore.pool import run_transaction
from tests.support.pg import migrated_database


def _insert(conn: Connection) -> int:
    return int(conn.execute(text(
        "INSERT INTO groups (name) VALUES ('after-failover') RETURNING id")).scalar_one())


def test_a_read_only_session_is_invalidated_and_the_transaction_retried_on_a_new_one() -> None:
    url = migrated_database("ro")
    engine = create_store_engine(url, DatabaseConfig(url=url, pool_size=1, max_overflow=0))
    try:
        with engine.connect() as conn:
            # Session-wide, so it outlives the transaction and stays with the pooled
            # connection: the next transaction on it fails with SQLSTATE 25006.
            conn.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"))
            conn.commit()
            first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            conn.commit()
        slept: list[float] = []
        new_id = run_transaction(engine, "insert", _insert, (), {}, attempts=3,
                                 backoff_s=0.001, sleep=slept.append)
        assert new_id > 0 and len(slept) == 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
            assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "off"
    finally:
        engine.dispose()


def test_other_errors_are_not_turned_into_lost_connections() -> None:
    url = migrated_database("ro")
    engine = create_store_engine(url, DatabaseConfig(url=url, pool_size=1, max_overflow=0))
    try:
        with pytest.raises(DBAPIError) as info:
            run_transaction(engine, "bad", lambda c: c.execute(text("SELECT 1/0")).all(), (),
                            {}, attempts=3, backoff_s=0.001, sleep=lambda _: None)
        assert info.value.connection_invalidated is False
    finally:
        engine.dispose()


def test_store_sessions_run_in_utc_with_the_configured_timeouts_and_no_jit() -> None:
    url = migrated_database("opts")
    engine = create_store_engine(url, DatabaseConfig(url=url, statement_timeout_ms=4321,
                                                     lock_timeout_ms=1234))
    try:
        with engine.connect() as conn:
            settings = conn.execute(text(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
                "current_setting('TimeZone'), current_setting('jit')")).one()
        assert tuple(settings) == ("4321ms", "1234ms", "UTC", "off")
    finally:
        engine.dispose()
