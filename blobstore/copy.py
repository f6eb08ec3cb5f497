"""PostgreSQL COPY from Python, for the bulk paths (device import, message batches).

COPY skips per-row statement parsing and is several times faster than a
multi-row INSERT.  Errors come back as SQLAlchemy exceptions (``IntegrityError``,
``OperationalError``...) like every other statement, a lost connection is
invalidated (:mod:`blobstore.driver`), so the pool's retry rules and
callers' ``except`` clauses apply unchanged.
"""

from __future__ import annotations

import io

from sqlalchemy import Connection

from blobstore import driver

# PostgreSQL text cannot hold NUL: it becomes U+FFFD (the exact bytes of a
# message are in its payload BLOB anyway).
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                          "\x00": "\ufffd"})

NULL = "\\N"


def text_cell(value: str | None) -> str:
    """A text value in COPY text format (tabs, newlines, backslashes escaped; NUL to U+FFFD)."""
    if value is None:
        return NULL
    if value.isprintable() and "\\" not in value:  # tab, newlines and NUL are not printable
        return value
    return value.translate(_ESCAPES)


def bytea_cell(value: bytes) -> str:
    """A bytea value in COPY text format (hex, with its backslash escaped)."""
    return "\\\\x" + value.hex()


def copy_from_text(conn: Connection, statement: str, data: str) -> None:
    """Run ``COPY ... FROM STDIN`` with ``data`` (COPY text format) on ``conn``'s transaction."""
    driver.copy_from(conn, statement, io.StringIO(data))
