"""Opening the store: an engine on the configured or embedded PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url

from blobstore.config import DatabaseConfig
from blobstore.embedded import EmbeddedServer, start_embedded
from blobstore.migrate import check_schema
from blobstore.prepared import OPTION as PREPARED_OPTION


class Database:
    """An engine plus, for the embedded default, the server it runs on.

    Use as a context manager or call :meth:`close`: it disposes of the
    connections and stops the embedded server (if this process was the last
    user).
    """

    def __init__(self, engine: Engine, config: DatabaseConfig,
                 embedded: EmbeddedServer | None = None) -> None:
        self.engine = engine
        self.config = config
        self.embedded = embedded

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return make_url(self.engine.url).render_as_string(hide_password=True)

    def check_schema(self) -> None:
        """Raise :class:`~blobstore.errors.SchemaOutOfDateError` unless migrated to the head."""
        check_schema(self.engine)

    def close(self) -> None:
        """Dispose of the engine's connections and stop the embedded server.

        Calling it again does nothing; stopping the server is bounded in time.
        """
        self.engine.dispose()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# SQLSTATE 25006: the server is read-only now (a primary demoted to a replica
# without dropping its sessions).  Retrying on the same connection can never
# succeed; a new one (with target_session_attrs=read-write) finds the primary.
READ_ONLY_SQL_TRANSACTION = "25006"


def _demoted_is_disconnect(context: ExceptionContext) -> None:
    code = getattr(context.original_exception, "pgcode", None)
    if code == READ_ONLY_SQL_TRANSACTION:
        # The whole pool is invalidated (every connection went to that node) and
        # the error becomes a lost connection, which run_transaction retries.
        context.is_disconnect = True


def create_store_engine(url: str, config: DatabaseConfig) -> Engine:
    """An engine for ``url`` with the pool size, timeouts and session settings of ``config``."""
    # jit=off: our statements are short; PostgreSQL's JIT (on by default where
    # it is built with LLVM, as in the Debian and PGDG packages) compiled the
    # state gauges' index-forced counts for 130-280 ms each time.
    options = (
        f"-c statement_timeout={config.statement_timeout_ms} "
        f"-c lock_timeout={config.lock_timeout_ms} "
        "-c timezone=UTC -c jit=off"
    )
    engine = create_engine(
        url,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout_s,
        # No pre-ping: it doubled the transactions.  A connection the server
        # dropped fails its first statement, which run_transaction retries.
        pool_pre_ping=False,
        connect_args={
            "options": options,
            "application_name": config.application_name,
            "connect_timeout": config.connect_timeout_s,
        },
    )
    event.listen(engine, "handle_error", _demoted_is_disconnect)
    if not config.prepared_statements:  # a pooler in transaction mode (blobstore.prepared)
        return engine.execution_options(**{PREPARED_OPTION: False})
    return engine


def open_database(config: DatabaseConfig, state_dir: Path) -> Database:
    """Open the configured database, starting the embedded server when no URL is set.

    The schema is not checked here: call :meth:`Database.check_schema` (every
    command but ``mepl db upgrade`` does).
    """
    if config.url is not None:
        return Database(create_store_engine(config.url, config), config)
    embedded = start_embedded(state_dir)
    try:
        engine = create_store_engine(embedded.url(), config)
    except BaseException:  # Ctrl-C included: release the server we joined or started
        embedded.stop()
        raise
    return Database(engine, config, embedded)
