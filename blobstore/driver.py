"""Statements run on the driver's cursor, inside the SQLAlchemy connection's transaction.

The hot statements are fixed SQL (:mod:`blobstore.prepared`, COPY): they need
none of SQLAlchemy's per-statement work (execution context, result
metadata, row processors), which a profile of the loop put at a fifth of
MEPL's CPU spent on statements.  They run here on a plain psycopg2 cursor
of the same connection, so they are part of the same transaction.

Errors go through the connection's own error handling, exactly as if
SQLAlchemy had run the statement: the driver's exception becomes the same
``DBAPIError`` subclass, a lost connection is detected and invalidated
(with the pool), and the engine's ``handle_error`` hooks run (the one that
treats a demoted primary as a lost connection, :mod:`blobstore.database`).
:func:`blobstore.pool.run_transaction` therefore retries them as before.
The connection's ``before_cursor_execute`` listeners see them too.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import IO, Any, NoReturn

from sqlalchemy import Connection


class Rows:
    """The rows a statement returned (attribute access by column name), and its row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount
        """Rows the statement returned or changed, as the driver reports it."""

    def all(self) -> list[Any]:
        """Every row, in the order the statement returned them."""
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    class Row(namedtuple("Row", names)):  # type: ignore[misc]
        """A row: a tuple with attribute access, and ``_mapping`` as SQLAlchemy's rows have."""

        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return self._asdict()

    return Row


def _raise(conn: Connection, exc: BaseException, statement: str,
           params: Mapping[str, Any] | None, cursor: Any) -> NoReturn:
    # SQLAlchemy's own handler: the same wrapping, disconnect detection, pool
    # invalidation and handle_error hooks as any statement it runs itself.
    conn._handle_dbapi_exception(exc, statement, params, cursor, None)


def _announce(conn: Connection, cursor: Any, statement: str,
              params: Mapping[str, Any] | None) -> None:
    # The connection's (and engine's) before_cursor_execute listeners see driver
    # statements too: what watches SQLAlchemy's statements (the query-plan tests,
    # an operator's tracing) misses none.  Their return value is not used.
    listeners = conn.dispatch.before_cursor_execute
    if listeners:
        listeners(conn, cursor, statement, params, None, False)


def execute(conn: Connection, statement: str, params: Mapping[str, Any]) -> Rows:
    """Run ``statement`` (pyformat ``%(name)s`` parameters) on ``conn``'s transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        _announce(conn, cursor, statement, params)
        cursor.execute(statement, params)
        description = cursor.description
        if description is None:
            return Rows([], cursor.rowcount)
        row = _row_type(tuple(d[0] for d in description))
        return Rows([row._make(r) for r in cursor.fetchall()], cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as exc:
        _raise(conn, exc, statement, params, cursor)
    finally:
        cursor.close()


def copy_from(conn: Connection, statement: str, data: IO[str]) -> None:
    """Run ``COPY ... FROM STDIN`` reading ``data`` (COPY text format) on ``conn``'s transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        _announce(conn, cursor, statement, None)
        cursor.copy_expert(statement, data)
    except conn.dialect.loaded_dbapi.Error as exc:
        _raise(conn, exc, statement, None, cursor)
    finally:
        cursor.close()
