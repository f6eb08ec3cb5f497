"""Array literals for prepared statements: every value round-trips through PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine

from blobstore import driver
from blobstore.array_literals import booleans, byteas, encoder_for, integers, texts, timestamps
from tests.support.pg import create_database

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
EXAMPLES = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    made = create_engine(create_database("arrays"), pool_size=1, max_overflow=0)
    try:
        yield made
    finally:
        made.dispose()


def _round_trip(engine: Engine, literal: str, pg_type: str) -> list[Any]:
    with engine.connect() as conn:
        [row] = driver.execute(conn, f"SELECT CAST(%(v)s AS {pg_type}) AS v", {"v": literal})
        conn.rollback()
    return list(row.v)


@EXAMPLES
@given(st.lists(st.none() | TEXT, max_size=8))
def test_any_text_survives_as_a_text_array(engine: Engine, values: list[str | None]) -> None:
    assert _round_trip(engine, texts(values), "text[]") == values


@EXAMPLES
@given(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=8))
def test_integers_survive_as_a_bigint_array(engine: Engine, values: list[int | None]) -> None:
    assert _round_trip(engine, integers(values), "bigint[]") == values


@EXAMPLES
@given(st.lists(st.none() | st.binary(max_size=40), max_size=6))
def test_bytes_survive_as_a_bytea_array(engine: Engine, values: list[bytes | None]) -> None:
    got = _round_trip(engine, byteas(values), "bytea[]")
    assert [None if v is None else bytes(v) for v in got] == values


@EXAMPLES
@given(st.lists(st.none() | st.datetimes(min_value=datetime(1900, 1, 1),
                                         max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
                max_size=6))
def test_aware_times_survive_as_a_timestamptz_array(
        engine: Engine, values: Sequence[datetime | None]) -> None:
    assert _round_trip(engine, timestamps(values), "timestamptz[]") == list(values)


def test_booleans_and_empty_lists(engine: Engine) -> None:
    assert _round_trip(engine, booleans([True, None, False]), "boolean[]") == [True, None, False]
    assert _round_trip(engine, integers([]), "integer[]") == []
    assert _round_trip(engine, texts(["NULL", "", "{a,b}", 'q"\\']), "text[]") == [
        "NULL", "", "{a,b}", 'q"\\']


def test_unknown_array_types_are_refused_and_scalars_left_to_the_driver() -> None:
    with pytest.raises(ValueError, match="numeric"):
        encoder_for("numeric[]")
    assert encoder_for("bigint") is None
