"""The monthly partitions of ``messages``: the migration, the months ahead, the gateway keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text

from blobstore.messages import NewMessage, insert_message_txn, insert_unique_message_txn
from blobstore.migrate import upgrade
from blobstore.partitions import (
    DEFAULT_PARTITION,
    PartitionError,
    add_months,
    ensure_partitions_txn,
    list_partitions_txn,
    month_start,
    months_ahead_txn,
    partition_name,
)
from tests.support.pg import create_database, migrated_database


@pytest.fixture
def engine() -> Iterator[Engine]:
    made = create_engine(migrated_database("part"))
    try:
        yield made
    finally:
        made.dispose()


def _message(payload: bytes, *, when: datetime | None = None, external_id: str | None = None,
             link: str | None = "gw") -> NewMessage:
    return NewMessage(direction="in", channel="http", kind="mo", payload=payload, link=link,
                      external_id=external_id, created_at=when)


def _attached(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {name: bound for name, bound in conn.execute(text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'messages'::regclass"))}


def _partition_of(engine: Engine, message_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT tableoid::regclass::text FROM messages "
                                     "WHERE id = :id"), {"id": message_id}).scalar_one())


def test_a_fresh_schema_has_this_month_three_ahead_and_a_default_partition(
        engine: Engine) -> None:
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
        listed = list_partitions_txn(conn)
        assert months_ahead_txn(conn, now=now) == 3
    this = month_start(now)
    names = [p.name for p in listed]
    assert names == [f"messages_part_until_{this:%Y_%m}",
                     *(partition_name(add_months(this, n)) for n in range(4)),
                     DEFAULT_PARTITION]
    assert listed[0].lower is None and listed[0].upper == this
    assert listed[-1].is_default and listed[-1].upper is None
    assert all(p.attached and p.state == "attached" for p in listed)
    assert set(_attached(engine)) == set(names)


def test_rows_go_to_the_partition_of_their_month(engine: Engine) -> None:
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    this = month_start(now)
    with engine.begin() as conn:
        old = insert_message_txn(conn, _message(b"old", when=datetime(2020, 5, 1, tzinfo=UTC)))
        current = insert_message_txn(conn, _message(b"now"))
        later = insert_message_txn(conn, _message(b"later", when=add_months(this, 2)))
        far = insert_message_txn(conn, _message(b"far", when=add_months(this, 40)))
    assert _partition_of(engine, old) == f"messages_part_until_{this:%Y_%m}"
    assert _partition_of(engine, current) == partition_name(this)
    assert _partition_of(engine, later) == partition_name(add_months(this, 2))
    assert _partition_of(engine, far) == DEFAULT_PARTITION


def test_ensure_creates_the_missing_months_once_and_moves_strays_out_of_the_default(
        engine: Engine) -> None:
    with engine.connect() as conn:
        this = month_start(conn.execute(text("SELECT now()")).scalar_one())
    stray_month = add_months(this, 5)
    with engine.begin() as conn:
        stray = insert_message_txn(conn, _message(b"stray", when=stray_month))
    assert _partition_of(engine, stray) == DEFAULT_PARTITION
    later = add_months(this, 3)  # three months on: +4 .. +6 are missing
    with engine.begin() as conn:
        created = ensure_partitions_txn(conn, now=later)
    assert created == [partition_name(add_months(this, n)) for n in (4, 5, 6)]
    assert _partition_of(engine, stray) == partition_name(stray_month)
    with engine.begin() as conn:
        assert ensure_partitions_txn(conn, now=later) == []
        assert months_ahead_txn(conn, now=later) == 3
        assert conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar() == 0
        payload = conn.execute(text("SELECT payload FROM messages WHERE id = :id"),
                               {"id": stray}).scalar_one()
    assert bytes(payload) == b"stray"
    with engine.begin() as conn, pytest.raises(PartitionError, match="0 to 120"):
        ensure_partitions_txn(conn, now=later, months_ahead=500)


def test_a_gateway_id_is_stored_once_across_months(engine: Engine) -> None:
    with engine.connect() as conn:
        this = month_start(conn.execute(text("SELECT now()")).scalar_one())
    with engine.begin() as conn:
        first, dup = insert_unique_message_txn(
            conn, _message(b"a", external_id="mo:1", when=this))
        assert dup is False
    with engine.begin() as conn:
        # The retry arrives a month later: another partition, still the same key.
        again, dup = insert_unique_message_txn(
            conn, _message(b"a", external_id="mo:1", when=add_months(this, 1)))
        other, other_dup = insert_unique_message_txn(
            conn, _message(b"b", external_id="mo:1", link="gw2"))
        no_link, _ = insert_unique_message_txn(conn, _message(b"c", external_id="x", link=None))
        no_link_again, no_link_dup = insert_unique_message_txn(
            conn, _message(b"c", external_id="x", link=None))
    assert (again, dup) == (first, True)
    assert other != first and other_dup is False
    assert (no_link_again, no_link_dup) == (no_link, True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 3
        assert conn.execute(text("SELECT count(*) FROM message_keys")).scalar() == 3


def test_upgrading_a_filled_table_keeps_every_row_and_key_in_the_first_partition() -> None:
    engine = create_engine(create_database("mig7"))
    try:
        upgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO messages (direction, channel, kind, link, external_id, payload, "
                "sha256, created_at) VALUES "
                "('in', 'http', 'mo', 'gw', 'mo:1', 'a', :sha, '2025-03-04T05:06:07Z'), "
                "('in', 'http', 'mo', 'gw', NULL, 'b', :sha, now()), "
                "('in', 'http', 'dlr', NULL, 'dlr:9', 'c', :sha, now())"),
                {"sha": hashlib.sha256(b"x").digest()})
            conn.execute(text("INSERT INTO inbound_queue (message_id, kind) "
                              "SELECT max(id), 'callback' FROM messages"))
            before = conn.execute(text("SELECT max(id) FROM messages")).scalar_one()
        upgrade(engine)
        with engine.connect() as conn:
            now = conn.execute(text("SELECT now()")).scalar_one()
            first = f"messages_part_until_{add_months(month_start(now), 1):%Y_%m}"
            rows = conn.execute(text(
                "SELECT tableoid::regclass::text, id FROM messages ORDER BY id")).all()
            keys = conn.execute(text(
                "SELECT direction, link, external_id FROM message_keys ORDER BY 3")).all()
            queued = conn.execute(text("SELECT count(*) FROM inbound_queue")).scalar()
            listed = list_partitions_txn(conn)
        assert [r[0] for r in rows] == [first] * 3
        assert set(keys) == {("in", "gw", "mo:1"), ("in", "", "dlr:9")}
        assert queued == 1
        assert listed[0].name == first and listed[0].lower is None
        with engine.begin() as conn:
            new_id = insert_message_txn(conn, _message(b"d"))
            dup_id, dup = insert_unique_message_txn(conn, _message(b"a", external_id="mo:1"))
        assert new_id > before
        assert (dup_id, dup) == (rows[0][1], True)
    finally:
        engine.dispose()
