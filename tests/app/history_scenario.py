"""A device's history made end to end: commands sealed and submitted, receipts,
verified and rejected replies and alerts, a concatenated alert, garbage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from sqlalchemy import text

from blobstore.audit import append_audit_txn
from mepl.runtime.outbound_txn import record_submitted_txn
from signing.alerts import make_alert
from signing.transport import DEVICE_PORT, SERVER_PORT, split_frame
from sms_gateway.udh import Concat, Udh
from tests.mepl.helpers import SERVER_NUMBER, World

IMEI = "490154203237518"
NUMBER = "+447700900101"
NATIONAL = "07700 900101"


@dataclass
class History:
    """The world, the device and the ids of the rows each step stored."""

    world: World
    device_id: int
    command_id: int
    mt: int
    dlr: int
    reply: int
    alert: int
    forged: int
    stale: int
    garbage: int
    parts: tuple[int, ...]


def last_message_id(world: World) -> int:
    return int(world.scalar("SELECT max(id) FROM messages"))


def make_history() -> History:
    """Store, through the real inbound and outbound transactions, in this order:
    ``lock_status`` sent (mt), its receipt (dlr), the handset's verified reply,
    a verified ``sim_changed`` alert, a reply with a forged signature, an alert
    raised days ago (stale), garbage from the device's number, and a ``lost``
    alert in two concatenated parts."""
    w = World.create()
    device_id, handset = w.enrol(IMEI, NUMBER)
    command_id = w.queue(device_id, "lock_status")
    (ready,) = w.claim()
    w.run(record_submitted_txn, ready, link="l1", channel="smpp", message_ids=["m1"],
          now=w.now)
    mt = last_message_id(w)
    w.receipt("l1", "m1")
    dlr = last_message_id(w)
    outcome = handset.receive(ready.frame, SERVER_NUMBER, w.clock.seconds())
    w.deliver(w.mo(NUMBER, outcome.reply_frame))
    reply = last_message_id(w)
    w.deliver(w.mo(NUMBER, handset.alert(make_alert("sim_changed", imsi="234150000000009",
                                                    msisdn=NUMBER), w.clock.seconds())))
    alert = last_message_id(w)
    forged = bytearray(outcome.reply_frame)
    forged[-1] ^= 0x01
    w.deliver(w.mo(NUMBER, bytes(forged)))
    forged_id = last_message_id(w)
    w.deliver(w.mo(NUMBER, handset.alert(make_alert("lost"), w.clock.seconds() - 5 * 86400)))
    stale = last_message_id(w)
    w.deliver(w.mo(NUMBER, b"\x00hello, is this thing on?"))
    garbage = last_message_id(w)
    frame = handset.alert(make_alert("lost", detail="left on the 7:42 to Leeds " * 6),
                          w.clock.seconds())
    chunks = split_frame(frame)
    parts = []
    for seq, chunk in enumerate(chunks, start=1):
        udh = Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT,
                  concat=Concat(0x33, len(chunks), seq))
        w.deliver(replace(w.mo(NUMBER, chunk), udh=udh))
        parts.append(last_message_id(w))
    return History(w, device_id, command_id, mt, dlr, reply, alert, forged_id, stale,
                   garbage, tuple(parts))


def add_audit_rows(world: World) -> None:
    """Four audit rows, oldest first: alice's group.add two days ago, then now
    alice's device.add, bob's command.send and alice's command.send."""
    with world.engine.begin() as conn:
        # The trigger refuses UPDATE, so the old row is inserted with its time.
        conn.execute(text("INSERT INTO audit (at, actor, role, action, target, details) "
                          "VALUES (now() - interval '2 days', 'alice', 'cli', 'group.add', "
                          "'north', '{}')"))
        append_audit_txn(conn, actor="alice", role="cli", action="device.add", target=IMEI,
                         details={"groups": []})
        append_audit_txn(conn, actor="bob", role="cli", action="command.send", target=IMEI,
                         details={"opcode": "lock"})
        append_audit_txn(conn, actor="alice", role="cli", action="command.send", target=IMEI,
                         details={"opcode": "unlock"})


@contextmanager
def stored_history() -> Iterator[History]:
    """:func:`make_history` plus :func:`add_audit_rows`; the engine disposed of after."""
    made = make_history()
    add_audit_rows(made.world)
    try:
        yield made
    finally:
        made.world.engine.dispose()
