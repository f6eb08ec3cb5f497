"""The admin API's handlers about the API itself: its OpenAPI document, whoami, the event stream."""

from __future__ import annotations

from sqlalchemy import Connection

from blobstore.devices import find_device_txn
from mepl.admin.api import Answer, Call
from mepl.app.errors import store_errors


def openapi_txn(conn: Connection, call: Call) -> Answer:
    """The OpenAPI document."""
    from mepl.admin.openapi import document

    return Answer(200, document())


def whoami_txn(conn: Connection, call: Call) -> Answer:
    """Who the proxy vouches for."""
    return Answer(200, {"name": call.identity.name, "role": call.identity.role,
                        "fingerprint": call.identity.fingerprint})

def _device_known(conn: Connection, identifier: str, region: str | None) -> int:
    with store_errors(field="device"):
        return find_device_txn(conn, identifier, region).id


def events_start_txn(conn: Connection, call: Call) -> Answer:
    """Start of a live event stream: resolves the ``device`` filter (the stream follows)."""
    device = call.query.get("device")
    device_id = _device_known(conn, device, call.api.region) if device else None
    return Answer(200, {"device_id": device_id}, target=device)
