"""Policy decisions about verified device messages, as pure functions returning intents.

The apply transaction carries the intents out; nothing here touches a
database.  The rules:

- **Freshness.** An alert raised more than ``max_age`` ago, or further in the
  future than ``max_skew``, is refused (``stale_alert``): its counter is not
  consumed and nothing reacts.
- **SIM changed.** The new IMSI and phone number come only from the signed
  alert; the SMS sender proves nothing.  A sender that disagrees with the
  signed number is a ``sender_mismatch`` security event; a SIM-change alert
  without a signed number leaves the number as it was (``unverified_number``).
  The device is locked (security priority).
- **Lost.** Device state ``lost``, and locked.
- Invalid SIM, left territory, provisioning defect: recorded, no command.
- **Replies.** A verified LOCK puts the device in ``locked``, an UNLOCK
  back in ``provisioned`` (a lost or retired device keeps its state); an
  accepted ``rotate_key`` moves the device to the announced server key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from signing.alerts import Alert, AlertType

LOCK_REACTIONS = frozenset({AlertType.SIM_CHANGED, AlertType.LOST})
STICKY_STATES = frozenset({"lost", "retired"})


@dataclass(frozen=True)
class AlertDecision:
    """What to do about one verified alert."""

    accept: bool
    refusal: str | None = None
    identity: Mapping[str, str] = field(default_factory=dict)
    security_events: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    new_state: str | None = None
    lock: bool = False


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def signed_msisdn(alert: Alert) -> str | None:
    """The E.164 number the alert's signed content reports (``+`` and digits), or None."""
    value = alert.args.get("msisdn")
    if not isinstance(value, str) or not _digits(value):
        return None
    return "+" + _digits(value)


def decide_alert(alert: Alert, *, raised_at: datetime, sender: str | None, now: datetime,
                 max_age: timedelta, max_skew: timedelta) -> AlertDecision:
    """The policy for one alert whose signature has been verified."""
    if raised_at < now - max_age or raised_at > now + max_skew:
        return AlertDecision(False, "stale_alert", security_events=((
            "stale_alert", {"alert": alert.name, "raised_at": raised_at.isoformat()}),))
    events: list[tuple[str, Mapping[str, Any]]] = [
        (f"alert:{alert.name}", {"alert": alert.name, "raised_at": raised_at.isoformat(),
                                 **alert.to_json()["args"]})]
    identity: dict[str, str] = {}
    if alert.alert_type is AlertType.SIM_CHANGED:
        imsi = alert.args.get("imsi")
        if isinstance(imsi, str) and imsi:
            identity["imsi"] = imsi
        number = signed_msisdn(alert)
        if number is not None:
            identity["msisdn"] = number
            if sender is not None and _digits(sender) != _digits(number):
                events.append(("sender_mismatch", {"signed": number, "sender": sender}))
        elif sender is not None:
            events.append(("unverified_number", {"sender": sender}))
    return AlertDecision(
        True, identity=identity, security_events=tuple(events),
        new_state="lost" if alert.alert_type is AlertType.LOST else None,
        lock=alert.alert_type in LOCK_REACTIONS)


def state_after_reply(opcode: str, ok: bool, device_state: str) -> str | None:
    """The device state a verified reply implies, or None for no change."""
    if not ok or device_state in STICKY_STATES:
        return None
    if opcode == "lock":
        return "locked"
    if opcode == "unlock" and device_state == "locked":
        return "provisioned"
    return None


def accepted_key(opcode: str, ok: bool, arguments: Mapping[str, Any]) -> int | None:
    """The server key a device accepted by answering ``rotate_key`` with ok, or None."""
    if opcode != "rotate_key" or not ok:
        return None
    value = arguments.get("next_key_id")
    return int(value) if value is not None else None
