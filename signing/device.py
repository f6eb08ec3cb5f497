"""The simulated device behind the reference handset: what commands change and report.

Security state (trusted keys, numbers, counters) lives in
:class:`signing.handset.Handset`; this model holds what a real device would
do with a command (lock screen, sleep, restrictions...), so the reference
handset gives meaningful replies.  Reply items it produces (tags per opcode):
``lock_status`` 0x01 state (0 unlocked, 1 locked, 2 locked with emergency
dialer); ``locate`` 0x01 lat_e7, 0x02 lon_e7 (i32), 0x03 accuracy metres (u16);
``status_query`` one item per feature, tag = feature code, UTF-8 text value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from signing.commands import Command, Opcode, ReplyStatus
from signing.fields import FEATURES, get_int
from signing.wire import Tlv

MAX_NOTIFICATIONS = 5


@dataclass
class DeviceModel:
    """Simulated device state; JSON round-trips through :meth:`to_json`/:meth:`from_json`."""

    locked: bool = False
    emergency_dialer: bool = True
    sleeping: bool = False
    sleep_minutes: int = 0
    wiped: bool = False
    restrictions: list[str] = field(default_factory=list)
    geofences: dict[str, list[int]] = field(default_factory=dict)
    notifications: list[str] = field(default_factory=list)
    position: list[int] | None = None
    battery: int = 80

    def apply(self, command: Command) -> tuple[ReplyStatus, list[Tlv]]:
        """Carry out ``command``; returns the reply status and items."""
        op, args = command.opcode, command.args
        items: list[Tlv] = []
        if op is Opcode.LOCK:
            self.locked, self.emergency_dialer = True, bool(args["emergency_dialer"])
        elif op is Opcode.UNLOCK:
            self.locked = False
        elif op is Opcode.LOCK_STATUS:
            state = (2 if self.emergency_dialer else 1) if self.locked else 0
            items.append((0x01, bytes((state,))))
        elif op is Opcode.SLEEP:
            self.sleeping, self.sleep_minutes = True, get_int(args, "minutes")
        elif op is Opcode.WAKE:
            self.sleeping, self.sleep_minutes = False, 0
        elif op is Opcode.NOTIFY:
            text = str(args.get("text", args.get("text_gsm7", "")))
            self.notifications = [*self.notifications, text][-MAX_NOTIFICATIONS:]
        elif op is Opcode.LOCATE:
            if self.position is None:
                return ReplyStatus.UNAVAILABLE, items
            lat, lon, accuracy = self.position
            items += [(0x01, lat.to_bytes(4, "big", signed=True)),
                      (0x02, lon.to_bytes(4, "big", signed=True)),
                      (0x03, min(accuracy, 0xFFFF).to_bytes(2, "big"))]
        elif op is Opcode.WIPE:
            self.wiped = True
        elif op is Opcode.SET_RESTRICTIONS:
            self.restrictions = list(args["restrictions"])  # type: ignore[arg-type]
        elif op is Opcode.SET_GEOFENCE:
            fence = str(args["fence_id"])
            if args["radius_m"] == 0:
                self.geofences.pop(fence, None)
            else:
                self.geofences[fence] = [get_int(args, "lat_e7"), get_int(args, "lon_e7"),
                                         get_int(args, "radius_m")]
        elif op is Opcode.STATUS_QUERY:
            features = args["features"]
            assert isinstance(features, tuple)
            for name in sorted(features, key=FEATURES.index):
                items.append((FEATURES.index(name) + 1, self._feature(name).encode()))
        return ReplyStatus.OK, items

    def _feature(self, name: str) -> str:
        values = {
            "battery": str(self.battery),
            "lock_state": "locked" if self.locked else "unlocked",
            "restrictions": ",".join(self.restrictions),
            "geofence": ",".join(sorted(self.geofences)),
            "sleep_state": "sleeping" if self.sleeping else "awake",
        }
        return values.get(name, "n/a")

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceModel:
        """Inverse of :meth:`to_json`."""
        return cls(**data)
