"""A simulated device fleet: reference handsets behind the SMSC simulator.

Each simulated device is a :class:`signing.handset.Handset` (the same code an
Android implementer checks against) with a phone number.  The fleet watches
the simulator's accepted submit_sm PDUs: a message to one of its numbers is
reassembled, handed to that handset, and the handset's signed reply goes back
as a mobile-originated deliver_sm from the device's number.  Alerts (a SIM
swap, say) are raised the same way.  Nothing here touches the database: the
MEPL sees the fleet only through SMPP, exactly like real handsets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from blobstore.pool import Clock
from signing.alerts import make_alert
from signing.errors import FrameRejected
from signing.handset import Handset
from signing.keys import SigningKey, device_key_id
from signing.provisioning import ProvisioningBundle
from signing.transport import DEVICE_PORT, SERVER_PORT
from sms_gateway.errors import UdhError
from sms_gateway.smpp.codec import ESM_UDHI, TAG_MESSAGE_PAYLOAD
from sms_gateway.smpp.simulator import SmscSimulator, SubmittedMessage
from sms_gateway.udh import Udh, split_user_data

log = Logger()


@dataclass
class SimulatedDevice:
    """One handset with its phone number, IMSI and counters of what it saw.

    ``slots`` lists the (server key id, counter) of every command it executed,
    in order (a repeat answered from its stored reply is a duplicate, not an
    execution).  While ``offline`` the messages sent to it are lost (counted
    in ``missed``), as for a handset switched off when the SMSC gives up.
    """

    msisdn: str
    imsi: str
    handset: Handset
    executed: int = 0
    rejected: int = 0
    duplicates: int = 0
    slots: list[tuple[int, int]] = field(default_factory=list)
    offline: bool = False
    missed: int = 0

    @property
    def imei(self) -> str:
        """The device's IMEI (bound into every frame it accepts)."""
        return self.handset.imei

    @property
    def public_key(self) -> bytes:
        """The device's raw Ed25519 public key (registered at enrolment)."""
        return self.handset.device_key.public.raw


def make_device(bundle: ProvisioningBundle, msisdn: str, imsi: str) -> SimulatedDevice:
    """Provision a new simulated handset from ``bundle`` with a fresh device key."""
    fresh = SigningKey.generate(1)
    key = SigningKey(device_key_id(fresh.public.raw), fresh.private_key)
    return SimulatedDevice(msisdn, imsi, Handset.from_bundle(bundle, key))


class SimulatedFleet:
    """Connects simulated handsets to an :class:`SmscSimulator`.

    ``reply_copies`` > 1 makes every handset send each reply that many times
    (as a handset that resends when it sees no acknowledgement).  Replies and
    alerts go back through the SMSC as deliver_sm, or through ``uplink``
    (``uplink(sender, frame)``, an HTTP gateway stand-in, say) when it is set.
    """

    def __init__(self, simulator: SmscSimulator, clock: Clock, server_number: str, *,
                 reply_delay: float = 0.01, reply_copies: int = 1) -> None:
        if reply_copies < 1:
            raise ValueError("a handset sends each reply at least once")
        self.simulator = simulator
        self.clock = clock
        self.server_number = server_number
        self.reply_delay = reply_delay
        self.reply_copies = reply_copies
        self.uplink: Callable[[str, bytes], Deferred[Any]] | None = None
        self.devices: dict[str, SimulatedDevice] = {}
        self._parts: dict[tuple[str, int], dict[int, bytes]] = {}
        simulator.add_submit_observer(self._on_submit)

    def add(self, device: SimulatedDevice) -> None:
        """Attach ``device`` at its phone number."""
        self.devices[device.msisdn] = device

    def raise_alert(self, msisdn: str, alert_name: str, /, *, new_msisdn: str | None = None,
                    **args: Any) -> Deferred[Any]:
        """Have the device at ``msisdn`` send a signed alert (from ``new_msisdn`` if given:
        a swapped SIM arrives from a number the server does not know yet)."""
        device = self.devices[msisdn]
        frame = device.handset.alert(make_alert(alert_name, **args), self.clock.seconds())
        if new_msisdn is not None:
            del self.devices[msisdn]
            device.msisdn = new_msisdn
            self.devices[new_msisdn] = device
        return self._send(device.msisdn, frame)

    def _send(self, sender: str, frame: bytes) -> Deferred[Any]:
        if self.uplink is not None:
            return self.uplink(sender, frame)
        return self.simulator.inject_mo(sender, self.server_number, frame, 0x04,
                                        Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT))

    def _on_submit(self, submitted: SubmittedMessage) -> None:
        sm = submitted.sm
        device = self.devices.get("+" + sm.destination_addr.lstrip("+"))
        if device is None:
            return
        if device.offline:
            device.missed += 1
            return
        data = sm.short_message or sm.tlv(TAG_MESSAGE_PAYLOAD) or b""
        frame = data
        if sm.esm_class & ESM_UDHI:
            try:
                udh, frame = split_user_data(data)
            except UdhError:
                device.rejected += 1
                return
            if udh.concat is not None:
                whole = self._collect(device.msisdn, udh, frame)
                if whole is None:
                    return
                frame = whole
        self.clock.callLater(self.reply_delay, self._execute, device, frame,
                             "+" + sm.source_addr.lstrip("+"))

    def _collect(self, msisdn: str, udh: Udh, part: bytes) -> bytes | None:
        assert udh.concat is not None
        key = (msisdn, udh.concat.reference)
        parts = self._parts.setdefault(key, {})
        parts[udh.concat.seq] = part
        if len(parts) < udh.concat.total:
            return None
        del self._parts[key]
        return b"".join(parts[i] for i in range(1, udh.concat.total + 1))

    def _execute(self, device: SimulatedDevice, frame: bytes, sender: str) -> None:
        try:
            outcome = device.handset.receive(frame, sender, self.clock.seconds())
        except FrameRejected:
            device.rejected += 1  # a rejected frame is never answered
            return
        if outcome.duplicate:
            device.duplicates += 1
        else:
            device.executed += 1
            device.slots.append((outcome.frame.key_id, outcome.frame.counter))
        for _ in range(self.reply_copies):
            self._send(device.msisdn, outcome.reply_frame).addErrback(
                lambda f: log.warn("reply from simulated device not delivered: {e}",
                                   e=f.getErrorMessage()))
