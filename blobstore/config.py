"""The ``[database]`` configuration section."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: Schemes accepted for ``url``: all mean PostgreSQL through psycopg2, the driver MEPL ships.
PSYCOPG2_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")


def psycopg2_url(url: str) -> str:
    """``url`` with its scheme made ``postgresql+psycopg2``; ValueError for any other driver.

    ``postgresql://`` and ``postgres://`` (as libpq and most providers write
    them) are accepted; another driver (``postgresql+asyncpg://``,
    ``mysql://``...) is refused with a message naming the setting.  The URL
    itself is never echoed, as it may hold a password.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise ValueError("url: expected a URL such as postgresql://user:password@host/db")
    if scheme.lower() not in PSYCOPG2_SCHEMES:
        raise ValueError(
            f"url: unsupported driver {scheme!r}: MEPL talks to PostgreSQL through psycopg2; "
            "write postgresql://, postgres:// or postgresql+psycopg2://")
    normalised = f"postgresql+psycopg2://{rest}"
    try:
        make_url(normalised)
    except (ArgumentError, ValueError):
        raise ValueError("url: not a valid database URL "
                         "(postgresql://user:password@host:port/db)") from None
    return normalised


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the store lives and how it is used.

    ``url`` is the URL of an external PostgreSQL
    (``postgresql://user:pass@host/db``, ``postgres://`` or
    ``postgresql+psycopg2://``, all stored as ``postgresql+psycopg2://``;
    other drivers are refused); None or empty starts the embedded server in
    ``<state_dir>/pg``.  ``pool_size`` is both the number
    of connections kept open and the number of worker threads of the
    :class:`~blobstore.pool.DatabasePool`.  ``prepared_statements`` (on by
    default) prepares the hot statements once per session
    (:mod:`blobstore.prepared`); turn it off behind a pooler in transaction mode.
    ``batch_max_delay_ms`` is how long the message batcher waits for more
    rows (an SMSC's answer waits for the commit); ``pdu_batch_max_delay_ms``
    the same for the raw PDU log, which nothing waits for, so it waits
    longer and writes fewer, larger batches.
    """

    url: str | None = None
    pool_size: int = 4
    max_overflow: int = 2
    pool_timeout_s: float = 10.0
    connect_timeout_s: int = 10
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 10_000
    retry_attempts: int = 3
    retry_backoff_ms: int = 50
    batch_max_rows: int = 500
    batch_max_delay_ms: int = 5
    pdu_batch_max_delay_ms: int = 25
    application_name: str = "mepl"
    prepared_statements: bool = True

    def __post_init__(self) -> None:
        if self.url is not None and self.url.strip() == "":
            object.__setattr__(self, "url", None)
        if self.url is not None:
            object.__setattr__(self, "url", psycopg2_url(self.url))
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.max_overflow < 0:
            raise ValueError("max_overflow must not be negative")
        if self.pool_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("pool_timeout_s and connect_timeout_s must be positive")
        if self.statement_timeout_ms < 0 or self.lock_timeout_ms < 0:
            raise ValueError("statement_timeout_ms and lock_timeout_ms must not be negative")
        if self.retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1 (1 means no retry)")
        if self.retry_backoff_ms < 0:
            raise ValueError("retry_backoff_ms must not be negative")
        if not 1 <= self.batch_max_rows <= 10_000:
            raise ValueError("batch_max_rows must be between 1 and 10000")
        if self.batch_max_delay_ms < 0:
            raise ValueError("batch_max_delay_ms must not be negative")
        if not 0 <= self.pdu_batch_max_delay_ms <= 1000:
            raise ValueError("pdu_batch_max_delay_ms must be between 0 and 1000")

    @property
    def embedded(self) -> bool:
        """True when no URL is configured and the embedded server is used."""
        return self.url is None
