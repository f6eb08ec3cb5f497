"""Server key rotation: a new key, and a ``rotate_key`` for every enrolled device.

A rotation must not cut the fleet off.  So the new key is only *announced*:
every device goes on receiving frames sealed with the key it has accepted
(``device_server_keys``), including the ``rotate_key`` command that carries
the new key, and each device moves to the new key when its signed ok reply
to that command is applied (:mod:`mepl.runtime.inbound_txn`).  A handset
that is offline gets the command when it comes back (a long validity,
resends by housekeeping).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from blobstore.audit import append_audit_txn
from blobstore.commands import PRIORITY_SECURITY, NewCommand, insert_fanout_commands_txn
from blobstore.schema import devices
from blobstore.server_keys import pin_unpinned_txn
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
    3. in one transaction: the pinning again (devices enrolled meanwhile), one
       ``rotate_key`` command (next key id and public key, security priority,
       requested by ``keys rotate (<actor>)``) for every device that has a
       public key and is not retired, and an audit row ``keys.rotate``.
    """
    if validity <= timedelta(0):
        raise ValueError("the validity of the rotate_key commands must be positive")
    previous = store.load().active_key_id
    pinned = 0
    if engine is not None:
        with engine.begin() as conn:
            pinned = pin_unpinned_txn(conn, previous)
    key = store.rotate(now=now, passphrase=passphrase)
    if engine is None:
        return Rotation(key.key_id, previous, pinned, None, None)
    not_after = now + validity
    arguments = rotate_key_command(key.key_id, key.raw).to_json()["args"]
    command = NewCommand(opcode="rotate_key", requested_by=f"keys rotate ({actor})",
                         not_after=not_after, arguments=arguments,
                         priority=PRIORITY_SECURITY)
    targets = select(devices.c.id).where(devices.c.public_key.is_not(None),
                                         devices.c.state != "retired")
    with engine.begin() as conn:
        pinned += pin_unpinned_txn(conn, previous)
        queued = insert_fanout_commands_txn(
            conn, targets, command, details={"rotation": key.key_id})
        rotation = Rotation(key.key_id, previous, pinned, queued, not_after)
        append_audit_txn(conn, actor=actor, role=role, action="keys.rotate",
                         target=f"server-key:{key.key_id}", details=rotation.to_json())
    return rotation
