"""Look-ups and checks of the inbound flow: what a reply is about, the device counter window.

Signature checks happen in the caller (this package knows nothing of
signing); these functions look up the keys and frames the caller needs.
The device's alert counter window lives in the ``devices`` row
(``counter_hwm`` plus a 64-bit bitmap of the counters below it already
seen) and is checked and advanced under a row lock, so two MEPL processes
can never both accept the same alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from blobstore.devices import DeviceRecord, device_by_imei_txn
from blobstore.schema import commands, devices, messages

WINDOW_BITS = 64
_MASK = (1 << WINDOW_BITS) - 1


@dataclass(frozen=True)
class ReplyContext:
    """What verifying a reply needs: the device's key and the exact command frame."""

    device: DeviceRecord
    command_id: int
    command_state: str
    frame: bytes
    opcode: str


def reply_context_txn(conn: Connection, imei: str, key_id: int,
                      counter: int) -> ReplyContext | None:
    """The command a reply claims to answer (server key ``key_id``, ``counter``)."""
    device = device_by_imei_txn(conn, imei)
    if device is None:
        return None
    row = conn.execute(
        select(commands.c.id, commands.c.state, commands.c.frame, commands.c.opcode)
        .where(commands.c.device_id == device.id, commands.c.key_id == key_id,
               commands.c.counter == counter)
    ).first()
    if row is None or row.frame is None:
        return None
    return ReplyContext(device, int(row.id), row.state, bytes(row.frame), row.opcode)


def advance_window(hwm: int, window: int, counter: int) -> tuple[int, int] | None:
    """The (high-water mark, window) after accepting ``counter``; None if it is refused.

    Accepts a counter above the high-water mark, or one inside the 64 below
    it not seen yet.  ``window`` is the stored (signed 64-bit) bitmap.
    """
    if counter < 1:
        return None
    bitmap = window & _MASK
    if counter > hwm:
        shift = counter - hwm
        bitmap = ((bitmap << shift) | (1 << (shift - 1))) & _MASK if hwm else 0
        hwm = counter
    else:
        offset = hwm - 1 - counter
        if counter == hwm or offset >= WINDOW_BITS or bitmap >> offset & 1:
            return None
        bitmap |= 1 << offset
    signed = bitmap - (1 << WINDOW_BITS) if bitmap >> (WINDOW_BITS - 1) else bitmap
    return hwm, signed


def accept_device_counter_txn(conn: Connection, device_id: int, counter: int) -> bool:
    """Check a device counter against the stored window and mark it seen.

    Returns False (and changes nothing) for a counter :func:`advance_window` refuses.
    """
    if counter < 1:
        return False
    row = conn.execute(
        select(devices.c.counter_hwm, devices.c.counter_window)
        .where(devices.c.id == device_id).with_for_update(key_share=True)
    ).one()
    advanced = advance_window(int(row.counter_hwm), int(row.counter_window), counter)
    if advanced is None:
        return False
    conn.execute(update(devices).where(devices.c.id == device_id)
                 .values(counter_hwm=advanced[0], counter_window=advanced[1]))
    return True


def link_messages_txn(conn: Connection, message_ids: Sequence[int], *,
                      device_id: int | None = None, command_id: int | None = None,
                      error: str | None = None) -> None:
    """Attach what was learnt about stored inbound messages (never their bytes)."""
    values: dict[str, Any] = {}
    if device_id is not None:
        values["device_id"] = device_id
    if command_id is not None:
        values["command_id"] = command_id
    if error is not None:
        values["error"] = error
    if values and message_ids:
        conn.execute(update(messages).where(messages.c.id.in_(list(message_ids)))
                     .values(values))
