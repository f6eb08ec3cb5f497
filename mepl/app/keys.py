"""Server key rotation: a new key, and a ``rotate_key`` for every enrolled device.

A rotation must not cut the fleet off.  So the new key is only *announced*:
every device goes on receiving frames sealed with the key it has accepted
(``device_server_keys``), including the ``rotate_key`` command that carries
the new key, and each device moves to the new key when its signed ok reply
to that command is applied (:mod:`mepl.runtime.inbound_txn`).  A handset
that is offline gets the command when it comes back (a long validity,
resends by housekeeping).  :func:`key_usage_txn` shows the fleet moving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from blobstore.audit import append_audit_txn
from blobstore.commands import PRIORITY_SECURITY, NewCommand, insert_fanout_commands_txn
from blobstore.devices import reachable_device_ids
from blobstore.server_keys import key_counts_txn, pin_unpinned_txn, unpinned_count_txn
from mepl.app.context import Actor, SyncTransactions
from signing.commands import rotate_key_command
from signing.keystore import ServerKeyStore

DEFAULT_ROTATION_VALIDITY = timedelta(days=7)
"""How long a ``rotate_key`` command stays valid: long, so that handsets out of
coverage for days still receive it (resent by housekeeping) when they return."""


@dataclass(frozen=True)
class Rotation:
    """What one rotation did.

    ``pinned``: enrolled devices that had no server key on record, now pinned
    to ``previous_key_id``; ``queued``: ``rotate_key`` commands queued (None
    when queueing was not asked for); ``not_after``: their validity.
    """

    key_id: int
    previous_key_id: int
    pinned: int
    queued: int | None
    not_after: datetime | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601)."""
        return {"key_id": self.key_id, "previous_key_id": self.previous_key_id,
                "pinned": self.pinned, "queued": self.queued,
                "not_after": self.not_after.isoformat() if self.not_after else None}


@dataclass(frozen=True)
class KeyUsage:
    """How many devices are on each server key, and how many have none on record."""

    devices_per_key: dict[int, int]
    unpinned: int


def rotate_server_key(engine: Engine | None, store: ServerKeyStore, *,
                      passphrase: bytes | None, now: datetime, actor: str,
                      validity: timedelta = DEFAULT_ROTATION_VALIDITY,
                      role: str = "cli") -> Rotation:
    """Create the next server key in ``store`` and announce it to every enrolled device.

    With ``engine`` None only the key is created (nothing is queued).  Otherwise:

    1. every enrolled device without a key on record is pinned to the key
       active until now, and that is committed *before* the new key exists,
       so a running dispatcher (whose default key follows the store) never
       pins such a device to a key it does not have;
    2. the next key is created in the store and made active;
    3. :func:`announce_rotation_txn`, in one transaction.
    """
    if validity <= timedelta(0):
        raise ValueError("the validity of the rotate_key commands must be positive")
    previous = store.load().active_key_id
    transactions = None if engine is None else SyncTransactions(engine)
    pinned = 0
    if transactions is not None:
        pinned = transactions.run("pin unpinned devices", pin_unpinned_txn, previous)
    key = store.rotate(now=now, passphrase=passphrase)
    if transactions is None:
        return Rotation(key.key_id, previous, pinned, None, None)
    return transactions.run("announce a server key", announce_rotation_txn,
                            Actor(actor, role), key_id=key.key_id, public_key=key.raw,
                            previous_key_id=previous, not_after=now + validity,
                            pinned_before=pinned)


def announce_rotation_txn(conn: Connection, actor: Actor, *, key_id: int, public_key: bytes,
                          previous_key_id: int, not_after: datetime,
                          pinned_before: int = 0) -> Rotation:
    """Queue the new server key's ``rotate_key`` for the fleet; audited as ``keys.rotate``.

    The pinning again (devices enrolled since ``pinned_before`` were pinned),
    one ``rotate_key`` command (the key id and public key, security priority,
    requested by ``keys rotate (<actor>)``, valid until ``not_after``) for
    every device that has a public key and is not retired, and the audit row.
    """
    pinned = pinned_before + pin_unpinned_txn(conn, previous_key_id)
    arguments = rotate_key_command(key_id, public_key).to_json()["args"]
    command = NewCommand(opcode="rotate_key", requested_by=f"keys rotate ({actor.name})",
                         not_after=not_after, arguments=arguments,
                         priority=PRIORITY_SECURITY)
    queued = insert_fanout_commands_txn(conn, reachable_device_ids(enrolled=True), command,
                                        details={"rotation": key_id})
    rotation = Rotation(key_id, previous_key_id, pinned, queued, not_after)
    append_audit_txn(conn, actor=actor.name, role=actor.role, action="keys.rotate",
                     target=f"server-key:{key_id}", details=rotation.to_json())
    return rotation


def key_usage_txn(conn: Connection, actor: Actor) -> KeyUsage:
    """Devices per server key and enrolled devices without one (not audited)."""
    return KeyUsage(key_counts_txn(conn), unpinned_count_txn(conn))
