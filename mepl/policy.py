"""Policy reactions to verified device alerts, as one transaction each.

- SIM changed: record the new IMSI and number in the identity history, and
  queue LOCK at security priority;
- lost: device state ``lost``, and queue LOCK at security priority;
- invalid SIM, left territory, provisioning defect: recorded and reported, no
  automatic command.

The alert has been verified (signature, device counter) before any of this runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from blobstore.commands import PRIORITY_SECURITY, NewCommand, insert_command_txn
from blobstore.devices import set_device_state_txn, update_identity_txn
from blobstore.replies import link_message_txn
from signing.alerts import Alert, AlertType

LOCK_REACTIONS = frozenset({AlertType.SIM_CHANGED, AlertType.LOST})


@dataclass(frozen=True)
class Reaction:
    """What the policy did about one alert."""

    alert: str
    identity_changes: int
    lock_command_id: int | None
    new_state: str | None


def react_to_alert_txn(conn: Connection, *, device_id: int, alert: Alert, sender: str | None,
                       message_id: int | None, now: datetime, ttl: timedelta) -> Reaction:
    """Apply the policy for ``alert`` from device ``device_id``."""
    if message_id is not None:
        link_message_txn(conn, message_id, device_id=device_id)
    changes = 0
    new_state = None
    if alert.alert_type is AlertType.SIM_CHANGED:
        imsi = alert.args.get("imsi")
        updates: dict[str, Any] = {}
        if isinstance(imsi, str):
            updates["imsi"] = imsi
        if sender is not None and sender.startswith("+"):
            updates["msisdn"] = sender
        changes = len(update_identity_txn(conn, device_id, source="alert:sim_changed",
                                          **updates))
    if alert.alert_type is AlertType.LOST:
        set_device_state_txn(conn, device_id, "lost")
        new_state = "lost"
    lock_id = None
    if alert.alert_type in LOCK_REACTIONS:
        lock_id = insert_command_txn(conn, device_id, NewCommand(
            opcode="lock", requested_by=f"policy:{alert.name}", not_after=now + ttl,
            arguments={"emergency_dialer": True}, priority=PRIORITY_SECURITY))
    return Reaction(alert.name, changes, lock_id, new_state)
