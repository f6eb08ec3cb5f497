"""The device registry: add, find and show, list, update, enrol, and the import's audit row.

Identifiers are read here in any written form (``default_region`` for
national numbers); an input that cannot be read is an
:class:`~mepl.app.errors.InvalidRequest` naming it.  Enrolment records the
server key the handset was provisioned with, so commands to it are sealed
with a key it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from blobstore import devices as registry
from blobstore.audit import append_audit_txn
from blobstore.devices import DeviceRecord, IdentityChange
from blobstore.groups import add_members_txn, check_group_name, ensure_group_txn
from blobstore.identity import IdentityError, parse_imei, parse_imsi, parse_msisdn
from blobstore.importer import ImportReport
from blobstore.schema import DEVICE_STATES
from blobstore.server_keys import pin_device_txn
from mepl.app.context import Actor
from mepl.app.errors import InvalidRequest, store_errors
from signing.errors import SigningError
from signing.keys import device_key_id, public_key_defect
from signing.keystore import KeyIndex


@dataclass(frozen=True)
class DeviceDetails:
    """A device and its identity history (oldest first)."""

    record: DeviceRecord
    history: tuple[IdentityChange, ...]

    def to_json(self) -> dict[str, Any]:
        """The device as JSON-ready data, with ``identity_history``."""
        data = self.record.as_json()
        data["identity_history"] = [
            {"kind": h.kind, "old": h.old_value, "new": h.new_value,
             "changed_at": h.changed_at.isoformat(), "source": h.source}
            for h in self.history
        ]
        return data


@dataclass(frozen=True)
class DeviceUpdate:
    """A device after an update, and the identity changes written."""

    record: DeviceRecord
    changes: tuple[IdentityChange, ...]


@dataclass(frozen=True)
class Enrolment:
    """A device after enrolment: its key id, and the server key on record (None: none)."""

    record: DeviceRecord
    key_id: int
    server_key_id: int | None


def _parse(field: str, parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except IdentityError as exc:
        raise InvalidRequest(str(exc), field=field) from None


def _audit(conn: Connection, actor: Actor, action: str, target: str,
           details: dict[str, Any]) -> None:
    append_audit_txn(conn, actor=actor.name, role=actor.role, action=action, target=target,
                     details=details)


def _find(conn: Connection, identifier: str, region: str | None) -> DeviceRecord:
    with store_errors(field="identifier"):
        return registry.find_device_txn(conn, identifier, region)


def add_device_txn(conn: Connection, actor: Actor, imei: str, *, imsi: str | None = None,
                   phone: str | None = None, groups: Sequence[str] = (),
                   region: str | None = None) -> DeviceRecord:
    """Register a device (in ``groups``, created if needed); audited as ``device.add``."""
    canonical = _parse("imei", parse_imei, imei)
    imsi_value = _parse("imsi", parse_imsi, imsi) if imsi else None
    msisdn = _parse("phone", parse_msisdn, phone, region) if phone else None
    for group in groups:
        _group_name(group)
    with store_errors():
        record = registry.add_device_txn(conn, canonical, imsi=imsi_value, msisdn=msisdn)
    for group in groups:
        ensure_group_txn(conn, group)
        add_members_txn(conn, group, [record.id])
    _audit(conn, actor, "device.add", canonical, {"groups": list(groups)})
    return registry.get_device_txn(conn, record.id)


def _group_name(name: str) -> None:
    try:
        check_group_name(name)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="group") from None


def show_device_txn(conn: Connection, actor: Actor, identifier: str, *,
                    region: str | None = None) -> DeviceDetails:
    """A device found by any identifier, with its identity history (not audited)."""
    record = _find(conn, identifier, region)
    return DeviceDetails(record, tuple(registry.identity_history_txn(conn, record.id)))


def device_page_txn(conn: Connection, actor: Actor, *, group: str | None = None,
                    after_id: int = 0, limit: int = 1000, state: str | None = None,
                    prefix: str | None = None) -> list[DeviceRecord]:
    """Devices by id, ``limit`` after ``after_id`` (keyset paging; not audited), only
    in ``state``, only those an IMEI, IMSI or number of which starts with ``prefix``."""
    if limit < 1:
        raise InvalidRequest("the limit must be at least 1", field="limit")
    if state is not None and state not in DEVICE_STATES:
        raise InvalidRequest(f"unknown device state {state!r}; one of "
                             f"{', '.join(DEVICE_STATES)}", field="state")
    return registry.list_devices_txn(conn, group=group, after_id=after_id, limit=limit,
                                     state=state, prefix=prefix or None)


def retire_devices_txn(conn: Connection, actor: Actor, identifiers: Sequence[str], *,
                       region: str | None = None,
                       approved_by: Actor | None = None) -> list[str]:
    """Retire devices (any written identifiers): no command goes to them any more.

    All or nothing: an identifier that matches no device refuses the whole
    request.  Returns the IMEIs retired (already retired ones included);
    audited as ``device.retire`` (with the second administrator,
    ``approved_by``, when two-person approval applied).
    """
    if not identifiers:
        raise InvalidRequest("no device to retire", field="devices")
    records = [_find(conn, identifier, region) for identifier in identifiers]
    imeis = []
    for record in records:
        if record.state != "retired":
            registry.set_device_state_txn(conn, record.id, "retired")
        imeis.append(record.imei)
    target = imeis[0] if len(imeis) == 1 else f"{len(imeis)} devices"
    details: dict[str, Any] = {"devices": imeis}
    if approved_by is not None:
        details["approved_by"] = approved_by.name
    _audit(conn, actor, "device.retire", target, details)
    return imeis


def update_device_txn(conn: Connection, actor: Actor, identifier: str, *,
                      imsi: str | None = None, phone: str | None = None,
                      state: str | None = None, region: str | None = None) -> DeviceUpdate:
    """Change a device's IMSI, number (None: leave, ``""``: clear) or state; audited.

    Identity changes go into the identity history with the actor's role as
    their source; the audit row ``device.update`` holds each old and new value.
    """
    changes: dict[str, Any] = {}
    if imsi is not None:
        changes["imsi"] = _parse("imsi", parse_imsi, imsi) if imsi else None
    if phone is not None:
        changes["msisdn"] = _parse("phone", parse_msisdn, phone, region) if phone else None
    if state is not None and state not in DEVICE_STATES:
        raise InvalidRequest(f"unknown device state {state!r}; one of "
                             f"{', '.join(DEVICE_STATES)}", field="state")
    record = _find(conn, identifier, region)
    written = registry.update_identity_txn(conn, record.id, source=actor.role, **changes)
    details: dict[str, Any] = {c.kind: {"old": c.old_value, "new": c.new_value}
                               for c in written}
    if state is not None:
        registry.set_device_state_txn(conn, record.id, state)
        details["state"] = {"old": record.state, "new": state}
    _audit(conn, actor, "device.update", record.imei, details)
    return DeviceUpdate(registry.get_device_txn(conn, record.id), tuple(written))


def public_key_from_hex(text: str) -> bytes:
    """A device's Ed25519 public key from hex; raises :class:`InvalidRequest`."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidRequest("not hexadecimal", field="public_key") from None
    if len(raw) != 32:
        raise InvalidRequest(f"an Ed25519 public key has 32 octets, got {len(raw)}",
                             field="public_key")
    defect = public_key_defect(raw)
    if defect is not None:
        raise InvalidRequest(f"not a usable device key: {defect}", field="public_key")
    return raw


def enrol_device_txn(conn: Connection, actor: Actor, identifier: str, public_key: str, *,
                     keys: KeyIndex | None, server_key: int | None = None,
                     region: str | None = None) -> Enrolment:
    """Register a device's public key (hex); an unprovisioned device becomes provisioned.

    The server key it was provisioned with is recorded: ``server_key`` when
    given (checked against ``keys``, the key store's index, when there is
    one), else the active key of ``keys``; nothing when neither is known.  A
    new device key (a re-provisioned handset) or an explicit ``server_key``
    replaces the key on record; the same handset enrolled again keeps the
    one it has accepted.  Audited as ``device.enrol``.
    """
    raw = public_key_from_hex(public_key)
    if server_key is not None and not 1 <= server_key <= 0xFFFF:
        raise InvalidRequest("server key ids are 1..65535", field="server_key")
    provisioned_with = server_key
    if keys is not None:
        try:
            provisioned_with = (keys.active_key_id if server_key is None
                                else keys.key(server_key).key_id)
        except SigningError as exc:
            raise InvalidRequest(str(exc), field="server_key") from None
    record = _find(conn, identifier, region)
    key_id = device_key_id(raw)
    registry.set_device_key_txn(conn, record.id, key_id, raw)
    pinned: int | None = None
    if provisioned_with is not None:
        reprovisioned = record.public_key is None or record.public_key != raw
        pinned = pin_device_txn(conn, record.id, provisioned_with,
                                replace=reprovisioned or server_key is not None)
    if record.state == "unprovisioned":
        registry.set_device_state_txn(conn, record.id, "provisioned")
    _audit(conn, actor, "device.enrol", record.imei,
           {"key_id": key_id, "public_key": raw.hex(), "server_key_id": pinned})
    return Enrolment(registry.get_device_txn(conn, record.id), key_id, pinned)


def record_import_txn(conn: Connection, actor: Actor, source: str,
                      report: ImportReport) -> None:
    """Audit a bulk import (``device.import``): its rows, imported and bad counts.

    The import itself runs in batches of its own transactions
    (:func:`blobstore.importer.import_csv`); this row records its outcome.
    """
    _audit(conn, actor, "device.import", source,
           {"rows": report.rows, "imported": report.imported, "bad": len(report.errors)})
