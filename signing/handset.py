"""The reference handset: verify, check the counter window, persist, execute, reply.

``Handset.receive(frame, sender, now)`` applies, in this order: sender filter
(trusted numbers, when any are set), envelope and key id, signature, not-after,
argument decoding, duplicate (an executed counter with the same frame hash
re-sends the stored reply without executing), counter window, then it marks
the counter and calls ``persist`` *before* executing; after execution it signs
the reply, stores it and calls ``persist`` again.  A rejected frame raises
:class:`FrameRejected`, is counted in ``rejected`` (then ``persist`` is called)
and gets no signed output.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from signing.alerts import Alert, AlertType
from signing.commands import Command, Opcode, ReplyStatus
from signing.counters import DEFAULT_WINDOW, CounterWindow
from signing.device import DeviceModel
from signing.errors import FrameRejected, Reason
from signing.fields import Field, Kind, get_int, normalise
from signing.frames import CommandFrame, open_command, seal_alert, seal_reply
from signing.keys import SigningKey, VerifyKey
from signing.provisioning import ProvisioningBundle
from signing.wire import Instant, Tlv, check_imei, check_server_id

STATE_FORMAT = "mepl-handset-state/1"

log = Logger(namespace="signing.handset")
_OWN_NUMBER = Field(0, "msisdn", Kind.NUMBER)


def normalise_number(number: str) -> str:
    """Digits only, without a leading ``+`` or ``00`` (how numbers are compared)."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits[2:] if number.strip().startswith("00") else digits


def mask_number(number: str) -> str:
    """A phone number for logs: country prefix and last two digits."""
    return number[:3] + "*" * max(len(number) - 5, 0) + number[-2:] if len(number) > 5 else "***"


@dataclass(frozen=True)
class Outcome:
    """An accepted frame: the command, the signed reply to send, and whether it
    was a duplicate (reply re-sent from storage, nothing executed)."""

    frame: CommandFrame
    reply_frame: bytes
    duplicate: bool = False

    @property
    def command(self) -> Command:
        """The decoded command."""
        return self.frame.command


@dataclass
class Executed:
    """What the handset remembers of an executed command."""

    command_sha256: bytes
    reply: bytes


@dataclass
class Handset:
    """Reference handset state and logic (serialise with :meth:`to_json`).

    ``msisdn`` is the number of the device's current SIM as the device knows
    it (``"+"`` and the E.164 digits), or ``None``: a ``sim_changed`` alert
    sets it to the alert's signed ``msisdn`` (``None`` when the alert has none).
    """

    imei: str
    server_id: bytes
    device_key: SigningKey
    trusted_keys: dict[int, VerifyKey]
    trusted_numbers: tuple[str, ...] = ()
    msisdn: str | None = None
    window_size: int = DEFAULT_WINDOW
    windows: dict[int, CounterWindow] = field(default_factory=dict)
    retire: dict[int, int] = field(default_factory=dict)
    executed: dict[tuple[int, int], Executed] = field(default_factory=dict)
    alert_counter: int = 0
    device: DeviceModel = field(default_factory=DeviceModel)
    rejected: dict[str, int] = field(default_factory=dict)
    persist: Callable[[Handset], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_imei(self.imei)
        check_server_id(self.server_id)
        if self.msisdn is not None:
            normalise(_OWN_NUMBER, self.msisdn)

    @classmethod
    def from_bundle(cls, bundle: ProvisioningBundle, device_key: SigningKey,
                    msisdn: str | None = None) -> Handset:
        """A fresh handset for ``bundle`` (call ``bundle.verify()`` first); ``msisdn``
        is its own number if known."""
        return cls(imei=bundle.imei, server_id=bundle.server_id, device_key=device_key,
                   trusted_keys={k.key_id: k for k in bundle.keys},
                   trusted_numbers=bundle.trusted_numbers, msisdn=msisdn)

    def receive(self, frame: bytes, sender: str, now: Instant) -> Outcome:
        """Process one command frame from ``sender``; raises :class:`FrameRejected`."""
        try:
            return self._receive(bytes(frame), sender, now)
        except FrameRejected as exc:
            self.rejected[exc.reason.value] = self.rejected.get(exc.reason.value, 0) + 1
            log.warn("frame rejected: {reason} from {sender}", reason=exc.reason.value,
                     sender=mask_number(normalise_number(sender)))
            self._save()
            raise

    def _receive(self, frame: bytes, sender: str, now: Instant) -> Outcome:
        if self.trusted_numbers:
            wanted = normalise_number(sender)
            if not any(normalise_number(n) == wanted for n in self.trusted_numbers):
                raise FrameRejected(Reason.UNTRUSTED_SENDER)
        opened = open_command(frame, keys=self.trusted_keys, server_id=self.server_id,
                              imei=self.imei, now=now)
        slot = (opened.key_id, opened.counter)
        digest = hashlib.sha256(frame).digest()
        done = self.executed.get(slot)
        if done is not None and hmac.compare_digest(done.command_sha256, digest):
            return Outcome(opened, done.reply, duplicate=True)
        window = self.windows.get(opened.key_id) or CounterWindow(self.window_size)
        window.check(opened.counter)
        window.mark(opened.counter)
        self.windows[opened.key_id] = window
        self._retire_predecessor(opened.key_id)
        self._save()
        status, items = self._execute(opened)
        reply = seal_reply(frame, status, items, device_key=self.device_key,
                           server_id=self.server_id, imei=self.imei)
        self.executed[slot] = Executed(digest, reply)
        self._prune(opened.key_id)
        self._save()
        return Outcome(opened, reply)

    def _execute(self, opened: CommandFrame) -> tuple[ReplyStatus, list[Tlv]]:
        command = opened.command
        if command.opcode is Opcode.SET_TRUSTED_NUMBERS:
            numbers = command.args["numbers"]
            assert isinstance(numbers, tuple)
            self.trusted_numbers = numbers
            return ReplyStatus.OK, []
        if command.opcode is Opcode.ROTATE_KEY:
            next_id = get_int(command.args, "next_key_id")
            raw = command.args["next_public_key"]
            assert isinstance(raw, bytes)
            known = self.trusted_keys.get(next_id)
            if next_id == opened.key_id or (known is not None and known.raw != raw):
                return ReplyStatus.FAILED, []
            self.trusted_keys[next_id] = VerifyKey.from_raw(next_id, raw)
            self.retire[next_id] = opened.key_id
            return ReplyStatus.OK, []
        return self.device.apply(command)

    def _retire_predecessor(self, key_id: int) -> None:
        old = self.retire.pop(key_id, None)
        if old is None:
            return
        self.trusted_keys.pop(old, None)
        self.windows.pop(old, None)
        self.executed = {k: v for k, v in self.executed.items() if k[0] != old}
        self.retire = {n: o for n, o in self.retire.items() if o != old}

    def _prune(self, key_id: int) -> None:
        window = self.windows[key_id]
        floor = window.high - window.size
        self.executed = {k: v for k, v in self.executed.items()
                         if k[0] != key_id or k[1] > floor}

    def _save(self) -> None:
        if self.persist is not None:
            self.persist(self)

    def alert(self, alert: Alert, now: Instant) -> bytes:
        """Sign an alert under the next alert counter (persisted before signing).

        A ``sim_changed`` alert also records its ``msisdn`` (or its absence)
        as the handset's own number."""
        self.alert_counter += 1
        if alert.alert_type is AlertType.SIM_CHANGED:
            number = alert.args.get("msisdn")
            self.msisdn = number if isinstance(number, str) else None
        self._save()
        return seal_alert(alert, counter=self.alert_counter, raised_at=now,
                          device_key=self.device_key, server_id=self.server_id, imei=self.imei)

    def to_json(self) -> dict[str, Any]:
        """The state as JSON; the device's private key is NOT included."""
        return {
            "format": STATE_FORMAT,
            "imei": self.imei,
            "server_id": self.server_id.hex(),
            "device_key_id": self.device_key.key_id,
            "device_public_key": self.device_key.public.raw.hex(),
            "trusted_keys": {str(k): v.raw.hex() for k, v in sorted(self.trusted_keys.items())},
            "trusted_numbers": list(self.trusted_numbers),
            "msisdn": self.msisdn,
            "window_size": self.window_size,
            "windows": {str(k): w.to_json() for k, w in sorted(self.windows.items())},
            "retire": {str(k): v for k, v in self.retire.items()},
            "executed": [
                {"key_id": k[0], "counter": k[1], "command_sha256": e.command_sha256.hex(),
                 "reply": e.reply.hex()}
                for k, e in sorted(self.executed.items())
            ],
            "alert_counter": self.alert_counter,
            "device": self.device.to_json(),
            "rejected": dict(sorted(self.rejected.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], device_key: SigningKey) -> Handset:
        """Inverse of :meth:`to_json`, given the device key loaded separately."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} document")
        if data["device_public_key"] != device_key.public.raw.hex():
            raise ValueError("the device key does not match the handset state")
        return cls(
            imei=data["imei"],
            server_id=bytes.fromhex(data["server_id"]),
            device_key=device_key,
            trusted_keys=trusted_keys_from_hex(data["trusted_keys"]),
            trusted_numbers=tuple(data.get("trusted_numbers", ())),
            msisdn=data.get("msisdn"),
            window_size=int(data.get("window_size", DEFAULT_WINDOW)),
            windows={int(k): CounterWindow.from_json(v) for k, v in data["windows"].items()},
            retire={int(k): int(v) for k, v in data.get("retire", {}).items()},
            executed={
                (int(e["key_id"]), int(e["counter"])): Executed(
                    bytes.fromhex(e["command_sha256"]), bytes.fromhex(e["reply"]))
                for e in data.get("executed", [])
            },
            alert_counter=int(data.get("alert_counter", 0)),
            device=DeviceModel.from_json(data.get("device", {})),
            rejected={str(k): int(v) for k, v in data.get("rejected", {}).items()},
        )


def trusted_keys_from_hex(keys: Mapping[str, str] | Iterable[tuple[int, str]]) -> dict[
        int, VerifyKey]:
    """``{"1": "<64 hex>"}`` to ``{1: VerifyKey}``."""
    pairs = keys.items() if isinstance(keys, Mapping) else keys
    return {int(k): VerifyKey.from_raw(int(k), bytes.fromhex(v)) for k, v in pairs}
