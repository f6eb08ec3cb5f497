"""Prepared statements: prepared once per session, planned once, same rows as plain SQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import ProgrammingError

from blobstore.config import DatabaseConfig
from blobstore.database import create_store_engine
from blobstore.prepared import PLAN_GUARDS, Prepared
from tests.support.pg import create_database

ECHO = Prepared("test_echo", (
    "SELECT v.n, v.id, v.label || '%' AS label, :tag AS tag "
    "FROM unnest(:ids, :labels) WITH ORDINALITY AS v(id, label, n) ORDER BY v.n"
), {"ids": "bigint[]", "labels": "text[]", "tag": "text"})


@pytest.fixture(scope="module")
def url() -> str:
    return create_database("prep")


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    made = create_engine(url, pool_size=1, max_overflow=0)
    try:
        yield made
    finally:
        made.dispose()


def _prepared(conn: Connection) -> tuple[Any, int] | None:
    """This session's ECHO as the server has it: (when prepared, executions), or None.

    Every execution of a prepared statement counts as a generic or custom plan.
    """
    row = conn.exec_driver_sql(
        "SELECT prepare_time, generic_plans + custom_plans FROM pg_prepared_statements "
        "WHERE name = %(name)s", {"name": ECHO.name}).first()
    return None if row is None else (row[0], int(row[1]))


def _rows(conn: Connection, **args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ECHO(conn, {"ids": [1, 2], "labels": ["a", None], "tag": "t",
                                          **args})]


def test_a_statement_is_prepared_once_per_session_then_executed_by_name(
        engine: Engine) -> None:
    with engine.begin() as conn:
        assert _prepared(conn) is None
        first = _rows(conn)
        after_first = _prepared(conn)
        second = _rows(conn)
        after_second = _prepared(conn)
    with engine.begin() as conn:  # the same pooled session: still prepared
        third = _rows(conn)
        after_third = _prepared(conn)
    assert first == second == third == [(1, 1, "a%", "t"), (2, 2, None, "t")]
    assert after_first is not None and after_second is not None and after_third is not None
    assert after_first[0] == after_second[0] == after_third[0]  # prepared once
    assert [after_first[1], after_second[1], after_third[1]] == [1, 2, 3]


def test_a_prepared_statement_outlives_a_rolled_back_transaction(engine: Engine) -> None:
    with engine.connect() as conn:
        _rows(conn)
        prepared = _prepared(conn)
        conn.rollback()
    with engine.begin() as conn:
        assert _rows(conn)[0][2] == "a%"
        after = _prepared(conn)
    assert prepared is not None and after is not None
    assert after == (prepared[0], prepared[1] + 1)


def test_a_new_session_after_invalidation_prepares_again(engine: Engine) -> None:
    with engine.begin() as conn:
        _rows(conn)
    with engine.connect() as conn:
        conn.invalidate()  # as after a lost connection: the pool opens a new session
    with engine.begin() as conn:
        assert _prepared(conn) is None
        assert len(_rows(conn)) == 2
        assert _prepared(conn) is not None


def test_empty_and_all_null_arrays_are_typed_by_the_declaration(engine: Engine) -> None:
    with engine.begin() as conn:
        assert _rows(conn, ids=[], labels=[]) == []
        assert _rows(conn, ids=[None, None], labels=[None, None]) == [
            (1, None, None, "t"), (2, None, None, "t")]


def test_with_prepared_statements_off_the_same_sql_runs_plain(url: str) -> None:
    plain = create_store_engine(url, DatabaseConfig(url=url, prepared_statements=False))
    try:
        with plain.begin() as conn:
            rows = _rows(conn)
            assert _prepared(conn) is None
        assert rows == [(1, 1, "a%", "t"), (2, 2, None, "t")]
    finally:
        plain.dispose()


def test_arguments_must_match_the_declared_parameters(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(TypeError, match="tag"):
        ECHO(conn, {"ids": [1], "labels": ["a"]})


def test_a_declaration_must_name_every_parameter_the_sql_uses() -> None:
    with pytest.raises(ValueError, match="declared"):
        Prepared("bad", "SELECT :a::int, :b", {"a": "int"})
    with pytest.raises(ValueError, match="name"):
        Prepared("bad name", "SELECT 1", {})


def test_a_statement_the_server_rejects_fails_when_prepared_not_later(engine: Engine) -> None:
    broken = Prepared("test_broken", "SELECT :x FROM no_such_table", {"x": "int"})
    with pytest.raises(ProgrammingError, match="no_such_table"), engine.begin() as conn:
        broken(conn, {"x": 1})
    # Not recorded as prepared: the PREPARE is tried again (an EXECUTE would fail
    # with "prepared statement does not exist" instead).
    with pytest.raises(ProgrammingError, match="no_such_table"), engine.begin() as conn:
        broken(conn, {"x": 1})


def test_a_plan_cached_while_the_table_was_small_still_reads_the_index_once_it_is_big(
        url: str) -> None:
    # A generic plan made on a table analyzed while empty (a new month's partition)
    # is kept as it grows, until the next ANALYZE: without the guards it stays a
    # sequential scan.
    engine = create_engine(url, pool_size=1, max_overflow=0)
    lookup = Prepared("test_lookup", "SELECT v FROM growing WHERE id = ANY(:ids)",
                      {"ids": "bigint[]"})
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE growing (id bigint PRIMARY KEY, v text)")
            conn.exec_driver_sql("ANALYZE growing")
            conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            assert lookup(conn, {"ids": [1]}).all() == []
            conn.exec_driver_sql("INSERT INTO growing SELECT g, 'x' FROM "
                                 "generate_series(1, 50000) AS g")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                PLAN_GUARDS + "EXPLAIN EXECUTE mepl_test_lookup('{7,8}')"))
            assert "Index Scan" in plan and "Seq Scan" not in plan and "Bitmap" not in plan, plan
            assert [r.v for r in lookup(conn, {"ids": [7, 8]})] == ["x", "x"]
    finally:
        engine.dispose()


def _sent(engine: Engine) -> list[str]:
    """Every statement the engine's connections send from now on (driver ones included)."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: sent.append(statement))
    return sent


def _guards_in_effect(conn: Connection) -> list[str]:
    return [conn.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in ("enable_seqscan", "enable_bitmapscan", "plan_cache_mode")]


def test_the_plan_guards_go_with_a_transactions_first_statement_only(engine: Engine) -> None:
    sent = _sent(engine)
    with engine.begin() as conn:
        _rows(conn)
        _rows(conn)
        _rows(conn)
        assert _guards_in_effect(conn) == ["off", "off", "force_generic_plan"]
    with engine.begin() as conn:
        _rows(conn)
    executes = [s for s in sent if "EXECUTE" in s and "PREPARE" not in s]
    assert [s.startswith(PLAN_GUARDS) for s in executes] == [True, False, False, True]


def test_after_a_savepoint_the_next_statement_sends_the_guards_again(engine: Engine) -> None:
    sent = _sent(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = on")  # as if set before the savepoint
        savepoint = conn.begin_nested()
        _rows(conn)  # the guards, inside the savepoint
        savepoint.rollback()  # ... undone with it
        assert _guards_in_effect(conn)[0] == "on"
        _rows(conn)
        assert _guards_in_effect(conn) == ["off", "off", "force_generic_plan"]
    executes = [s for s in sent if "EXECUTE" in s and "PREPARE" not in s]
    assert [s.startswith(PLAN_GUARDS) for s in executes] == [True, True]


def test_with_prepared_statements_off_the_guards_also_go_once(url: str) -> None:
    plain = create_store_engine(url, DatabaseConfig(url=url, prepared_statements=False))
    sent = _sent(plain)
    try:
        with plain.begin() as conn:
            first, second = _rows(conn), _rows(conn)
            assert _guards_in_effect(conn) == ["off", "off", "force_generic_plan"]
        assert first == second == [(1, 1, "a%", "t"), (2, 2, None, "t")]
    finally:
        plain.dispose()
    echoes = [s for s in sent if "unnest" in s]
    assert [s.startswith(PLAN_GUARDS) for s in echoes] == [True, False]
