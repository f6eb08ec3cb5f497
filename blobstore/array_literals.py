"""Python lists as PostgreSQL array literals (``'{1,2,3}'``), for the prepared statements.

psycopg2 sends a list as an ``ARRAY[...]`` expression: it adapts every
element on the client, and the server parses every element as a separate
constant and evaluates the expression (8 % of PostgreSQL's CPU in a fan-out
went to evaluating the arguments of ``EXECUTE``).  One string in array
syntax costs the client a join and the server one ``array_in``: the
statement's ``CAST(... AS bigint[])`` reads it as it read the expression.

Text elements are always double-quoted with backslashes and double quotes
escaped, so any string (commas, braces, quotes, ``NULL``) round-trips; a
Python ``None`` is an unquoted ``NULL``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

Encoder = Callable[[Sequence[Any]], str]


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def integers(values: Sequence[int | None]) -> str:
    """``{1,2,NULL}`` from integers."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def texts(values: Sequence[str | None]) -> str:
    """``{"a","b\\"c",NULL}`` from strings."""
    return "{" + ",".join("NULL" if v is None else _quoted(str(v)) for v in values) + "}"


def booleans(values: Sequence[bool | None]) -> str:
    """``{t,f,NULL}`` from booleans."""
    return "{" + ",".join("NULL" if v is None else ("t" if v else "f") for v in values) + "}"


def timestamps(values: Sequence[datetime | None]) -> str:
    """``{"2026-12-03T12:00:00+00:00",NULL}`` from datetimes (ISO 8601, with their offset)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.isoformat() + '"'
                          for v in values) + "}"


def byteas(values: Sequence[bytes | None]) -> str:
    """``{"\\\\x0102",NULL}`` from bytes (hex input format, its backslash escaped)."""
    return "{" + ",".join("NULL" if v is None else '"\\\\x' + bytes(v).hex() + '"'
                          for v in values) + "}"


ENCODERS: dict[str, Encoder] = {
    "bigint[]": integers, "integer[]": integers, "smallint[]": integers,
    "text[]": texts, "bpchar[]": texts, "boolean[]": booleans,
    "timestamptz[]": timestamps, "bytea[]": byteas,
}
"""The encoder for each array type a prepared statement may declare."""


def encoder_for(declared: str) -> Encoder | None:
    """The encoder for a declared parameter type, or None (psycopg2 adapts the value)."""
    encoder = ENCODERS.get(declared)
    if encoder is None and declared.endswith("[]"):
        raise ValueError(f"no array literal encoder for {declared}")
    return encoder
