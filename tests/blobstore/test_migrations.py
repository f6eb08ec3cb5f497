from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from blobstore.errors import SchemaOutOfDateError
from blobstore.migrate import check_schema, downgrade, head_revision, schema_status, upgrade
from blobstore.partitions import include_in_schema_compare, is_partition_table
from blobstore.schema import metadata
from tests.support.pg import create_database, migrated_database

TABLES = {"devices", "device_identity_history", "groups", "group_members",
          "command_events", "inbound_queue", "device_server_keys", "security_events",
          "server_key_counters", "commands", "messages", "audit", "alembic_version",
          "fanouts", "approvals", "message_keys", "message_partitions"}


def _tables(engine: Engine) -> set[str]:
    return {t for t in inspect(engine).get_table_names() if not is_partition_table(t)}


def test_migrations_run_up_from_empty_down_to_base_and_up_again() -> None:
    engine = create_engine(create_database("mig"))
    try:
        assert schema_status(engine) == (None, head_revision())
        upgrade(engine)
        assert _tables(engine) == TABLES
        assert schema_status(engine) == (head_revision(), head_revision())
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        with engine.connect() as conn:
            functions = conn.execute(text(
                "SELECT count(*) FROM pg_proc WHERE proname = 'audit_append_only'")).scalar()
        assert functions == 0
        upgrade(engine)
        assert _tables(engine) == TABLES
        check_schema(engine)
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_declarative_models() -> None:
    engine = create_engine(create_database("cmp"))
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": include_in_schema_compare})
            diffs = compare_metadata(context, metadata)
        assert diffs == []
    finally:
        engine.dispose()


def test_empty_database_is_refused_with_the_upgrade_hint() -> None:
    engine = create_engine(create_database("old"))
    try:
        with pytest.raises(SchemaOutOfDateError, match="run `mepl db upgrade`") as info:
            check_schema(engine)
        assert info.value.current is None
        assert info.value.head == head_revision()
    finally:
        engine.dispose()


def test_device_rows_updated_after_a_bulk_insert_stay_on_their_page() -> None:
    # Replies and alerts update last_seen_at and the replay window, which no
    # index holds: with room left on each page (fillfactor, migration 0013) the
    # new row version goes on the same page, without new index entries (HOT).
    engine = create_engine(migrated_database("hot"))
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO devices (imei, msisdn) SELECT lpad(n::text, 15, '0'), "
                "'+4477009' || lpad(n::text, 5, '0') FROM generate_series(1, 2000) AS n"))
        with engine.begin() as conn:
            updated = conn.execute(text(
                "UPDATE devices SET last_seen_at = now(), counter_hwm = 1 "
                "WHERE id % 10 = 0")).rowcount
            hot = conn.execute(text(
                "SELECT pg_stat_get_xact_tuples_hot_updated('devices'::regclass)")).scalar()
        assert (updated, hot) == (200, 200)
    finally:
        engine.dispose()
