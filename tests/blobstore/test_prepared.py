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


def _sent(conn: Connection) -> list[str]:
    statements: list[str] = []

    def capture(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        last = statement.split("; ")[-1]  # after the plan guards
        statements.append(last.split(" ", 1)[0])

    event.listen(conn, "before_cursor_execute", capture)
    return statements


def _rows(conn: Connection, **args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ECHO(conn, {"ids": [1, 2], "labels": ["a", None], "tag": "t",
                                          **args})]


def test_a_statement_is_prepared_once_per_session_then_executed_by_name(
        engine: Engine) -> None:
    with engine.begin() as conn:
        sent = _sent(conn)
        first = _rows(conn)
        second = _rows(conn)
    with engine.begin() as conn:  # the same pooled session: still prepared
        sent_later = _sent(conn)
        third = _rows(conn)
    assert first == second == third == [(1, 1, "a%", "t"), (2, 2, None, "t")]
    assert sent == ["PREPARE", "EXECUTE", "EXECUTE"]
    assert sent_later == ["EXECUTE"]


def test_a_prepared_statement_outlives_a_rolled_back_transaction(engine: Engine) -> None:
    with engine.connect() as conn:
        _rows(conn)
        conn.rollback()
    with engine.begin() as conn:
        sent = _sent(conn)
        assert _rows(conn)[0][2] == "a%"
    assert sent == ["EXECUTE"]


def test_a_new_session_after_invalidation_prepares_again(engine: Engine) -> None:
    with engine.begin() as conn:
        _rows(conn)
    with engine.connect() as conn:
        conn.invalidate()  # as after a lost connection: the pool opens a new session
    with engine.begin() as conn:
        sent = _sent(conn)
        assert len(_rows(conn)) == 2
    assert sent == ["PREPARE", "EXECUTE"]


def test_empty_and_all_null_arrays_are_typed_by_the_declaration(engine: Engine) -> None:
    with engine.begin() as conn:
        assert _rows(conn, ids=[], labels=[]) == []
        assert _rows(conn, ids=[None, None], labels=[None, None]) == [
            (1, None, None, "t"), (2, None, None, "t")]


def test_with_prepared_statements_off_the_same_sql_runs_plain(url: str) -> None:
    plain = create_store_engine(url, DatabaseConfig(url=url, prepared_statements=False))
    try:
        with plain.begin() as conn:
            sent = _sent(conn)
            rows = _rows(conn)
        assert rows == [(1, 1, "a%", "t"), (2, 2, None, "t")]
        assert sent == ["SELECT"]
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
    with engine.begin() as conn:  # not recorded as prepared: tried again, fails again
        sent = _sent(conn)
        with pytest.raises(ProgrammingError):
            broken(conn, {"x": 1})
    assert sent == ["PREPARE"]


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
