"""The admin API's server-key handlers: the keys in use, and their rotation.

A new key is created (blocking file work, off the reactor) before the
transaction that announces it; a rotation that needs two-person approval
creates it when the approval is approved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool

from blobstore.server_keys import pin_unpinned_txn
from mepl.admin.api import Answer, Call
from mepl.admin.errors import ApiError
from mepl.admin.handlers.common import pending_approval
from mepl.app.commands import Approved
from mepl.app.context import Actor
from mepl.app.keys import DEFAULT_ROTATION_VALIDITY, announce_rotation_txn, key_usage_txn
from signing.keys import VerifyKey
from signing.keystore import ServerKeyStore


@dataclass
class KeyRotator:
    """The server key store as the API uses it (creating a key is blocking file work)."""

    store: ServerKeyStore
    passphrase: bytes | None

    def active_key_id(self) -> int:
        """The active key's id."""
        return self.store.load().active_key_id

    def rotate(self, now: datetime) -> tuple[VerifyKey, int]:
        """Create the next key; return it and the id of the key active until now."""
        previous = self.store.load().active_key_id
        return self.store.rotate(now=now, passphrase=self.passphrase), previous


def _keys(call: Call) -> KeyRotator:
    keys = call.api.services.get("keys")
    if keys is None:
        raise ApiError("conflict", "this MEPL process has no server key store",
                       hint="rotate with `mepl keys rotate` on the server")
    return keys  # type: ignore[no-any-return]


def get_keys_txn(conn: Connection, call: Call) -> Answer:
    """Server keys and how many devices are on each."""
    usage = key_usage_txn(conn, call.actor)
    keys = call.api.services.get("keys")
    active = keys.active_key_id() if keys is not None else None
    return Answer(200, {"active_key_id": active,
                        "keys": [{"key_id": k, "devices": n}
                                 for k, n in sorted(usage.devices_per_key.items())],
                        "unpinned": usage.unpinned})


@dataclass(frozen=True)
class NewKey:
    """A server key created before the transaction that announces it."""

    key: VerifyKey
    previous_key_id: int
    pinned: int
    valid_days: int


@inlineCallbacks
def create_key(call: Call, valid_days: int) -> Any:
    """Pin the unpinned devices, then create the next key off the reactor: a :class:`NewKey`."""
    rotator = _keys(call)
    api = call.api
    previous = rotator.active_key_id()
    pinned = yield api.runner.run_interaction("pin unpinned devices", pin_unpinned_txn,
                                              previous)
    reactor: Any = api.clock
    key, previous = yield deferToThreadPool(reactor, reactor.getThreadPool(),
                                            rotator.rotate, call.now)
    return NewKey(key, previous, int(pinned), valid_days)


def requested_valid_days(request: Mapping[str, Any]) -> int:
    """How many days a rotation request keeps the old key valid (the default when not given)."""
    return int(request.get("valid_days") or DEFAULT_ROTATION_VALIDITY.days)


def prepare_rotation(call: Call) -> Deferred[Any]:
    """Create the key first (file work, off the reactor) unless approval is needed."""
    if call.api.approvals.for_rotation() is not None:
        _keys(call)
        return succeed(None)
    return create_key(call, requested_valid_days(call.body))  # type: ignore[no-any-return]


def announce_rotation(conn: Connection, requester: Actor, call: Call,
                      approved: Approved | None = None) -> dict[str, Any]:
    """Announce the key prepared for ``call`` (by the requester, or as approved): its JSON."""
    new: NewKey | None = call.prepared
    if new is None:
        raise ApiError("conflict", "the key was not created")
    actor = requester if approved is None else Actor(
        f"{requester.name} approved by {approved.approver.name}", requester.role)
    rotation = announce_rotation_txn(
        conn, actor, key_id=new.key.key_id, public_key=new.key.raw,
        previous_key_id=new.previous_key_id, not_after=call.now + timedelta(
            days=new.valid_days), pinned_before=new.pinned)
    return rotation.to_json()


def rotate_keys_txn(conn: Connection, call: Call) -> Answer:
    """Rotate the server key (or record it for two-person approval: 202)."""
    action = call.api.approvals.for_rotation()
    if action is not None:
        return pending_approval(conn, call, action, "server-key")
    rotation = announce_rotation(conn, call.actor, call)
    return Answer(201, {"rotation": rotation}, target=f"server-key:{rotation['key_id']}")
