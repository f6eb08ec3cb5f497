"""Loading tests/vectors/signed-sms-v1.json and building what its cases describe."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from signing.counters import CounterWindow
from signing.handset import Handset
from signing.keys import SigningKey

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "signed-sms-v1.json"


@cache
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def cases(section: str) -> list[dict[str, Any]]:
    return list(document()[section])


def key(name: str) -> SigningKey:
    entry = document()["keys"][name]
    return SigningKey.from_seed(entry["key_id"], bytes.fromhex(entry["seed"]))


def server_id() -> bytes:
    return bytes.fromhex(document()["server_id"])


def handset(spec: dict[str, Any]) -> Handset:
    device = document()["devices"][spec["device"]]
    trusted = {key(n).key_id: key(n).public for n in spec["trusted_keys"]}
    return Handset(imei=device["imei"], server_id=server_id(), device_key=key(device["key"]),
                   trusted_keys=trusted, trusted_numbers=tuple(spec["trusted_numbers"]),
                   windows={int(k): CounterWindow.from_json(v)
                            for k, v in spec["windows"].items()})
