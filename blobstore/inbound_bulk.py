"""Set-based statements for applying a batch of inbound items in one transaction.

Each function here does for a whole batch what its one-item counterpart
does for one (:func:`blobstore.inbound_queue.lock_entry_txn`,
:func:`blobstore.replies.link_messages_txn`...), in one statement whatever
the batch size.  The statements are plain SQL over arrays (``unnest``), built
once at import, so a batch costs a few round trips and no statement
building.  Rows are locked in id order, as every other batch does, so two
batches never deadlock on each other.

Statements that join ``messages`` to an array also restrict it with
``= ANY(array)``.  ``messages`` is partitioned and its key is (id,
created_at), so the planner cannot take id as unique, and autovacuum never
analyzes the partitioned parent: the join estimate falls back to defaults and
chose a hash join over a sequential scan of the month's partition (16 ms for
ten rows at 50k messages).  The ``= ANY`` restriction is estimated with each
partition's own statistics and turns into an index scan (0.5 ms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from blobstore.prepared import Prepared

_LOCK_ENTRIES = Prepared("lock_entries", (
    "SELECT id FROM inbound_queue WHERE id = ANY(CAST(:ids AS bigint[])) "
    "AND claimed_by = :worker ORDER BY id FOR NO KEY UPDATE"
), {"ids": "bigint[]", "worker": "text"})
_FINISH_ENTRIES = Prepared(
    "finish_entries", "DELETE FROM inbound_queue WHERE id = ANY(:ids)", {"ids": "bigint[]"})
_SENT_PARTS = Prepared("sent_parts", (
    # Each receipt's newest mt part, looked up by (link, SMSC id) through the
    # index: a LATERAL subquery kept apart (OFFSET 0) is always a parameterized
    # look-up, whatever the statistics the generic plan was made with.
    "SELECT DISTINCT ON (v.n) v.n, m.id, m.command_id, m.device_id, m.part_total "
    "FROM unnest(CAST(:links AS text[]), CAST(:smsc_ids AS text[])) "
    "WITH ORDINALITY AS v(link, smsc_id, n) "
    "JOIN LATERAL (SELECT p.id, p.command_id, p.device_id, p.part_total FROM messages AS p "
    "WHERE p.link = v.link AND p.smsc_message_id = v.smsc_id "
    "AND p.kind = 'mt' AND p.direction = 'out' OFFSET 0) AS m ON true "
    "ORDER BY v.n, m.id DESC"
), {"links": "text[]", "smsc_ids": "text[]"})
_PART_STATUS = Prepared("part_status", (
    "UPDATE messages AS m SET meta = coalesce(m.meta, '{}'::jsonb) "
    "|| jsonb_build_object('status', v.status) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[])) AS v(id, status) "
    "WHERE m.id = v.id AND m.id = ANY(CAST(:ids AS bigint[]))"
), {"ids": "bigint[]", "statuses": "text[]"})
_LINK = Prepared("link", (
    "UPDATE messages AS m SET device_id = coalesce(v.device_id, m.device_id), "
    "command_id = coalesce(v.command_id, m.command_id), error = coalesce(v.error, m.error) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:devices AS bigint[]), "
    "CAST(:commands AS bigint[]), CAST(:errors AS text[])) "
    "AS v(id, device_id, command_id, error) WHERE m.id = v.id "
    "AND m.id = ANY(CAST(:ids AS bigint[]))"
), {"ids": "bigint[]", "devices": "bigint[]", "commands": "bigint[]", "errors": "text[]"})
_TOUCH = Prepared("touch", (
    "UPDATE devices AS d SET last_seen_at = v.at "
    "FROM (SELECT id, max(at) AS at FROM unnest(CAST(:ids AS bigint[]), "
    "CAST(:ats AS timestamptz[])) AS u(id, at) GROUP BY id) AS v "
    "WHERE d.id = v.id AND d.id = ANY(CAST(:ids AS bigint[])) "
    "AND (d.last_seen_at IS NULL OR d.last_seen_at < v.at)"
), {"ids": "bigint[]", "ats": "timestamptz[]"})
_LOCK_DEVICES = Prepared("lock_devices", (
    "SELECT id, public_key, state, counter_hwm, counter_window FROM devices "
    "WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR NO KEY UPDATE"
), {"ids": "bigint[]"})
_SET_WINDOWS = Prepared("set_windows", (
    # The window and the last-seen time in one row version (greatest() skips a NULL).
    "UPDATE devices AS d SET counter_hwm = v.hwm, counter_window = v.win, "
    "last_seen_at = greatest(d.last_seen_at, CAST(:seen_at AS timestamptz)) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:hwms AS bigint[]), CAST(:wins AS bigint[])) "
    "AS v(id, hwm, win) WHERE d.id = v.id AND d.id = ANY(CAST(:ids AS bigint[]))"
), {"ids": "bigint[]", "hwms": "bigint[]", "wins": "bigint[]", "seen_at": "timestamptz"})
_DEVICE_KEYS = Prepared("device_keys", (
    # imei is char(15): compared as bpchar, so that its index serves
    "SELECT imei, id, key_id, public_key FROM devices WHERE imei = ANY(CAST(:imeis AS bpchar[]))"
), {"imeis": "bpchar[]"})
_REPLY_CONTEXTS = Prepared("reply_contexts", (
    # Each reply's device by IMEI, then its command by the full unique key
    # (device, key id, counter), both as LATERAL look-ups with a LIMIT: always
    # parameterized index scans.  Planned as joins, the generic plan depended on
    # the statistics it was made with: (key id, counter) alone looked up first
    # matched one command of every device (93 ms instead of 0.7 ms for ten
    # replies on 2,000 devices), and with statistics taken while the tables were
    # nearly empty it read the unique index whole for every batch.
    "SELECT v.n, d.id AS device_id, d.key_id, d.public_key, "
    "c.id AS command_id, c.state, c.frame, c.opcode "
    "FROM unnest(CAST(:imeis AS bpchar[]), CAST(:key_ids AS integer[]), "
    "CAST(:counters AS bigint[])) WITH ORDINALITY AS v(imei, key_id, counter, n) "
    "JOIN LATERAL (SELECT id, key_id, public_key FROM devices "
    "WHERE imei = v.imei LIMIT 1) AS d ON true "
    "JOIN LATERAL (SELECT id, state, frame, opcode FROM commands "
    "WHERE device_id = d.id AND key_id = v.key_id AND counter = v.counter "
    "AND counter IS NOT NULL LIMIT 1) AS c ON true"  # the unique index is partial
), {"imeis": "bpchar[]", "key_ids": "integer[]", "counters": "bigint[]"})
_COMMAND_OPCODES = Prepared(
    "command_opcodes", "SELECT id, opcode, arguments FROM commands WHERE id = ANY(:ids)",
    {"ids": "bigint[]"})


def lock_entries_txn(conn: Connection, entry_ids: Sequence[int], worker: str) -> set[int]:
    """Lock the claimed items still held by ``worker``; the ids of those (others were lost)."""
    if not entry_ids:
        return set()
    return {int(r.id) for r in _LOCK_ENTRIES(conn, {"ids": list(entry_ids), "worker": worker})}


def finish_entries_txn(conn: Connection, entry_ids: Iterable[int]) -> None:
    """The items are applied: remove them from the queue."""
    ids = list(entry_ids)
    if ids:
        _FINISH_ENTRIES(conn, {"ids": ids})


@dataclass(frozen=True)
class SentPart:
    """The ``mt`` part a receipt is about (its command and device, if known)."""

    message_id: int
    command_id: int | None
    device_id: int | None
    part_total: int


def sent_parts_txn(conn: Connection,
                   keys: Sequence[tuple[str, str]]) -> list[SentPart | None]:
    """For each (link, SMSC message id), the latest ``mt`` part submitted with it, or None."""
    if not keys:
        return []
    found: dict[int, SentPart] = {}
    for r in _SENT_PARTS(conn, {"links": [k[0] for k in keys],
                                "smsc_ids": [k[1] for k in keys]}):
        found[int(r.n)] = SentPart(int(r.id), r.command_id, r.device_id,
                                   int(r.part_total or 1))
    return [found.get(n) for n in range(1, len(keys) + 1)]


def set_part_status_txn(conn: Connection, statuses: Mapping[int, str]) -> None:
    """Record each part's latest receipt status in its ``meta`` (``status``)."""
    if statuses:
        _PART_STATUS(conn, {"ids": list(statuses), "statuses": list(statuses.values())})


@dataclass(frozen=True)
class Link:
    """What was learnt about one stored inbound row (None: left as it is)."""

    message_id: int
    device_id: int | None = None
    command_id: int | None = None
    error: str | None = None


def link_many_txn(conn: Connection, links: Sequence[Link]) -> None:
    """Attach devices, commands and errors to stored rows (never their bytes)."""
    if links:
        _LINK(conn, {"ids": [k.message_id for k in links],
                     "devices": [k.device_id for k in links],
                     "commands": [k.command_id for k in links],
                     "errors": [k.error for k in links]})


def touch_many_txn(conn: Connection, seen: Sequence[tuple[int, datetime]]) -> None:
    """Record when each device was last heard from (never moves backwards)."""
    if seen:
        _TOUCH(conn, {"ids": [s[0] for s in seen], "ats": [s[1] for s in seen]})


@dataclass(frozen=True)
class HeldDevice:
    """A device row locked for applying: its key, state and replay window."""

    public_key: bytes | None
    state: str
    counter_hwm: int
    counter_window: int


def lock_devices_txn(conn: Connection, device_ids: Iterable[int]) -> dict[int, HeldDevice]:
    """Lock device rows in id order."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    return {int(r.id): HeldDevice(bytes(r.public_key) if r.public_key is not None else None,
                                  str(r.state), int(r.counter_hwm), int(r.counter_window))
            for r in _LOCK_DEVICES(conn, {"ids": ids})}


def set_windows_txn(conn: Connection, windows: Mapping[int, tuple[int, int]],
                    seen_at: datetime) -> None:
    """Store each device's new (high-water mark, window) of its replay counters.

    The devices were heard from at ``seen_at``: their last-seen time moves
    up to it (never back) in the same row version.
    """
    if windows:
        _SET_WINDOWS(conn, {"ids": list(windows),
                            "hwms": [w[0] for w in windows.values()],
                            "wins": [w[1] for w in windows.values()], "seen_at": seen_at})


@dataclass(frozen=True)
class DeviceKey:
    """What verifying a device's frame needs."""

    device_id: int
    key_id: int
    public_key: bytes


def device_keys_txn(conn: Connection, imeis: Iterable[str]) -> dict[str, DeviceKey]:
    """The enrolled devices among these IMEIs, by IMEI (devices without a key left out)."""
    wanted = sorted(set(imeis))
    if not wanted:
        return {}
    return {str(r.imei): DeviceKey(int(r.id), int(r.key_id or 0), bytes(r.public_key))
            for r in _DEVICE_KEYS(conn, {"imeis": wanted})
            if r.public_key is not None}


@dataclass(frozen=True)
class ReplyTarget:
    """The command a reply claims to answer, and what verifying it needs."""

    device_id: int
    key_id: int
    public_key: bytes
    command_id: int
    command_state: str
    frame: bytes
    opcode: str


def reply_targets_txn(conn: Connection,
                      claims: Sequence[tuple[str, int, int]]) -> list[ReplyTarget | None]:
    """For each (IMEI, server key id, counter), its command and the device's key.

    None where there is no such command, or it has no frame, or the device no key.
    """
    if not claims:
        return []
    found: dict[int, ReplyTarget] = {}
    for r in _REPLY_CONTEXTS(conn, {"imeis": [c[0] for c in claims],
                                    "key_ids": [c[1] for c in claims],
                                    "counters": [c[2] for c in claims]}):
        if r.frame is not None and r.public_key is not None:
            found[int(r.n)] = ReplyTarget(int(r.device_id), int(r.key_id or 0),
                                          bytes(r.public_key), int(r.command_id), str(r.state),
                                          bytes(r.frame), str(r.opcode))
    return [found.get(n) for n in range(1, len(claims) + 1)]


def command_opcodes_txn(conn: Connection,
                        command_ids: Iterable[int]) -> dict[int, tuple[str, dict[str, object]]]:
    """``{id: (opcode, arguments)}`` of these commands."""
    ids = sorted(set(command_ids))
    if not ids:
        return {}
    return {int(r.id): (str(r.opcode), dict(r.arguments or {}))
            for r in _COMMAND_OPCODES(conn, {"ids": ids})}
