"""Alembic environment: runs revisions on the connection ``blobstore.migrate`` passes in.

Run through ``mepl db upgrade`` (or :func:`blobstore.migrate.upgrade`).  For
the ``alembic`` command line, set ``sqlalchemy.url`` in the Alembic config
or ``MEPL_DATABASE_URL``.  Every run takes a transaction-level advisory lock
so several MEPL processes upgrading at once apply each revision once.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine, text

from blobstore.partitions import include_in_schema_compare
from blobstore.schema import metadata

MIGRATION_LOCK_ID = 0x6D65706C  # "mepl"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # The partitions of ``messages`` are managed by blobstore.partitions.
        include_name=include_in_schema_compare,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        # DDL may take long on a big database; waiting for locks may not.
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text("SET LOCAL lock_timeout = '60s'"))
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    """Run revisions on the given connection, or on a new one from the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("MEPL_DATABASE_URL")
    if not url:
        raise SystemExit("no database URL: set sqlalchemy.url or MEPL_DATABASE_URL")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported; run `mepl db upgrade`")
run_migrations_online()
