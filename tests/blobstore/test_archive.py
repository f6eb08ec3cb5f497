"""Archiving a message partition: exported, verified, restorable, and only then dropped."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from blobstore.archive import archivable, archive_partition_txn
from blobstore.messages import NewMessage, insert_message_txn, insert_unique_message_txn
from blobstore.partitions import (
    Partition,
    PartitionError,
    add_months,
    list_partitions_txn,
    month_start,
)
from tests.support.pg import migrated_database

OLD = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    made = create_engine(migrated_database("arch"))
    try:
        yield made
    finally:
        made.dispose()


def _store(engine: Engine) -> dict[str, int]:
    """Three old messages (one with a gateway id, one with binary and odd text) and a new one."""
    with engine.begin() as conn:
        ids = {
            "keyed": insert_unique_message_txn(conn, NewMessage(
                direction="in", channel="http", kind="mo", payload=b"POST /mo\r\n\r\nhi",
                link="gw", external_id="mo:77", created_at=OLD))[0],
            "binary": insert_message_txn(conn, NewMessage(
                direction="out", channel="smpp", kind="mt", payload=bytes(range(256)),
                link="smsc", error='odd, "quoted"\nline', meta={"k": "v,\n"},
                created_at=OLD)),
            "plain": insert_message_txn(conn, NewMessage(
                direction="in", channel="smpp", kind="pdu", payload=b"\x00\x00", link="smsc",
                created_at=OLD)),
            "new": insert_message_txn(conn, NewMessage(
                direction="in", channel="smpp", kind="pdu", payload=b"now", link="smsc")),
        }
    return ids


def _first(engine: Engine) -> Partition:
    with engine.connect() as conn:
        return list_partitions_txn(conn)[0]


def test_only_partitions_wholly_before_the_date_and_this_month_are_archivable(
        engine: Engine) -> None:
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
        listed = list_partitions_txn(conn)
    this = month_start(now)
    assert [p.name for p in archivable(listed, before=this, now=now)] == [listed[0].name]
    assert archivable(listed, before=add_months(this, -1), now=now) == []
    # A date in the future never reaches the current month or the default partition.
    assert [p.name for p in archivable(listed, before=add_months(this, 12), now=now)] == [
        listed[0].name]


def test_archive_with_drop_exports_every_row_then_drops_the_partition_and_its_keys(
        engine: Engine, tmp_path: Path) -> None:
    ids = _store(engine)
    partition = _first(engine)
    with engine.connect() as conn:
        originals = {r.id: r for r in conn.execute(text(
            "SELECT * FROM messages WHERE created_at < :t ORDER BY id"), {"t": OLD.replace(
                year=2026)})}
    with engine.begin() as conn:
        result = archive_partition_txn(conn, partition, tmp_path, drop=True,
                                       schema_revision="0007")
    assert (result.rows, result.dropped) == (3, True)
    assert stat.S_IMODE(result.file.stat().st_mode) == 0o600
    assert hashlib.sha256(result.file.read_bytes()).hexdigest() == result.sha256
    manifest = json.loads(result.manifest.read_text())
    assert (manifest["rows"], manifest["sha256"], manifest["partition"]) == (
        3, result.sha256, partition.name)
    assert manifest["columns"][0] == "id" and "payload" in manifest["columns"]
    with engine.connect() as conn:
        left = [r[0] for r in conn.execute(text("SELECT id FROM messages ORDER BY id"))]
        keys = conn.execute(text("SELECT count(*) FROM message_keys")).scalar()
        state = conn.execute(text("SELECT state, archive_rows FROM message_partitions "
                                  "WHERE name = :n"), {"n": result.name}).one()
        exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": result.name}).scalar()
    assert left == [ids["new"]] and keys == 0
    assert tuple(state) == ("dropped", 3) and exists is None

    # The export restores byte for byte into a table like messages.
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE restored (LIKE messages)"))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with gzip.open(result.file, "rt", encoding="utf-8", newline="") as handle:
            cursor.copy_expert("COPY restored FROM STDIN WITH (FORMAT csv, HEADER true)",
                               io.StringIO(handle.read()))
        restored = {r.id: r for r in conn.execute(text("SELECT * FROM restored ORDER BY id"))}
    assert set(restored) == set(originals) == {ids["keyed"], ids["binary"], ids["plain"]}
    for key, row in originals.items():
        assert restored[key]._mapping == row._mapping


def test_archive_without_drop_keeps_the_partition_and_records_the_export(
        engine: Engine, tmp_path: Path) -> None:
    _store(engine)
    partition = _first(engine)
    with engine.begin() as conn:
        result = archive_partition_txn(conn, partition, tmp_path, drop=False,
                                       schema_revision=None)
    with gzip.open(result.file, "rt", encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))
    assert len(records) == 4 and records[0][0] == "id"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 4
        listed = list_partitions_txn(conn)
    assert (listed[0].state, listed[0].archive_rows, listed[0].attached) == ("archived", 3, True)


def test_a_partition_with_queued_inbound_items_is_refused_and_nothing_is_dropped(
        engine: Engine, tmp_path: Path) -> None:
    ids = _store(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO inbound_queue (message_id, kind) VALUES (:id, 'mo')"),
                     {"id": ids["plain"]})
    partition = _first(engine)
    with engine.begin() as conn, pytest.raises(PartitionError, match="1 inbound item"):
        archive_partition_txn(conn, partition, tmp_path, drop=True,
                              schema_revision=None)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 4
        assert list_partitions_txn(conn)[0].state == "attached"
    assert not list(tmp_path.iterdir())
