"""Statements on the driver's cursor: same transaction, same rows, same errors as SQLAlchemy's."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from blobstore import driver
from blobstore.config import DatabaseConfig
from blobstore.database import create_store_engine
from blobstore.pool import is_transient
from tests.support.pg import create_database


@pytest.fixture(scope="module")
def url() -> str:
    made = create_database("driver")
    engine = create_engine(made)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id bigint PRIMARY KEY, label text)"))
    engine.dispose()
    return made


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    made = create_store_engine(url, DatabaseConfig(url=url))
    try:
        yield made
    finally:
        made.dispose()


def test_rows_read_by_column_name_and_count_what_a_statement_changed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM items"))
        inserted = driver.execute(conn, "INSERT INTO items SELECT g, 'n' || g "
                                  "FROM generate_series(1, %(n)s) g", {"n": 3})
        rows = driver.execute(conn, "SELECT id, label FROM items ORDER BY id DESC", {})
    assert inserted.rowcount == 3 and inserted.all() == []
    assert [(r.id, r.label) for r in rows] == [(3, "n3"), (2, "n2"), (1, "n1")]
    assert rows.all()[0]._mapping == {"id": 3, "label": "n3"}  # as SQLAlchemy's rows
    assert len(rows) == 3 and rows.rowcount == 3


def test_a_driver_statement_is_part_of_the_connection_s_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM items"))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        driver.execute(conn, "INSERT INTO items VALUES (10, 'rolled back')", {})
        driver.copy_from(conn, "COPY items FROM STDIN", io.StringIO("11\tcopied\n"))
        raise RuntimeError("abandon the transaction")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM items")).scalar_one() == 0


def test_a_constraint_violation_is_sqlalchemy_s_integrity_error(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM items"))
        driver.execute(conn, "INSERT INTO items VALUES (1, 'a')", {})
    with pytest.raises(IntegrityError, match="items_pkey"), engine.begin() as conn:
        driver.copy_from(conn, "COPY items FROM STDIN", io.StringIO("1\tagain\n"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        driver.execute(conn, "INSERT INTO items VALUES (1, 'again')", {})


def test_a_lost_connection_is_invalidated_retryable_and_replaced(engine: Engine) -> None:
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    other = create_engine(engine.url)
    try:
        with other.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()
    with pytest.raises(OperationalError) as raised, engine.begin() as conn:
        driver.execute(conn, "SELECT 1 AS one", {})
    assert raised.value.connection_invalidated
    assert is_transient(raised.value)
    with engine.begin() as conn:  # the pool opened a new session
        assert [r.one for r in driver.execute(conn, "SELECT 1 AS one", {})] == [1]


def test_a_read_only_server_counts_as_a_lost_connection_through_the_engine_hook(
        engine: Engine) -> None:
    # A demoted primary answers writes with 25006; the engine's handle_error hook
    # turns that into a lost connection (blobstore.database), for driver statements too.
    with pytest.raises(DBAPIError) as raised, engine.begin() as conn:
        conn.execute(text("SET TRANSACTION READ ONLY"))
        driver.execute(conn, "INSERT INTO items VALUES (99, 'refused')", {})
    assert getattr(raised.value.orig, "pgcode", None) == "25006"
    assert raised.value.connection_invalidated
    assert is_transient(raised.value)


def test_before_cursor_execute_listeners_see_driver_statements(engine: Engine) -> None:
    seen: list[tuple[str, object]] = []
    with engine.begin() as conn:
        event.listen(conn, "before_cursor_execute",
                     lambda _c, _cur, statement, params, *_: seen.append((statement, params)))
        driver.execute(conn, "SELECT %(x)s AS x", {"x": 1})
        driver.copy_from(conn, "COPY items FROM STDIN", io.StringIO(""))
    assert seen == [("SELECT %(x)s AS x", {"x": 1}), ("COPY items FROM STDIN", None)]
