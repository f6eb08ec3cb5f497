"""Small fixtures shared by the signing tests: one server, two devices."""

from __future__ import annotations

import hashlib

from signing.commands import Command
from signing.frames import seal_command
from signing.handset import Handset
from signing.keys import SigningKey, device_key_id

NOW = 1767225600
SERVER_ID = hashlib.sha256(b"unit test deployment").digest()
IMEI_A = "490154203237518"
IMEI_B = "356938035643809"
SERVER_NUMBER = "+447700900123"
SERVER_KEY = SigningKey.from_seed(1, hashlib.sha256(b"unit server 1").digest())
NEXT_KEY = SigningKey.from_seed(2, hashlib.sha256(b"unit server 2").digest())


def device_key(label: str) -> SigningKey:
    raw = SigningKey.from_seed(1, hashlib.sha256(label.encode()).digest())
    return SigningKey(device_key_id(raw.public.raw), raw.private_key)


DEVICE_A = device_key("unit device a")
DEVICE_B = device_key("unit device b")


def make_handset(imei: str = IMEI_A, key: SigningKey = DEVICE_A,
                 numbers: tuple[str, ...] = (SERVER_NUMBER,)) -> Handset:
    return Handset(imei=imei, server_id=SERVER_ID, device_key=key,
                   trusted_keys={SERVER_KEY.key_id: SERVER_KEY.public}, trusted_numbers=numbers)


def seal(command: Command, counter: int, *, imei: str = IMEI_A, key: SigningKey = SERVER_KEY,
         not_after: int = NOW + 3600, server_id: bytes = SERVER_ID) -> bytes:
    return seal_command(command, key=key, server_id=server_id, imei=imei, counter=counter,
                        not_after=not_after)
