"""Generate tests/vectors/signed-sms-v1.json (run by hand; tests never run this).

    /tmp/v/bin/python tests/vectors/generate.py

Keys come from fixed seeds (SHA-256 of a label) and Ed25519 is deterministic,
so regenerating gives the same file unless the wire format or the reference
handset changed: review the diff before committing it.  The format is
documented in docs/wire-format.md ("Test vectors").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from signing.alerts import make_alert
from signing.commands import Command, make_command
from signing.counters import CounterWindow
from signing.errors import FrameRejected
from signing.frames import seal_alert, seal_command, seal_reply
from signing.handset import Handset
from signing.keys import SigningKey, VerifyKey, device_key_id
from signing.wire import (
    DOMAIN_ALERT,
    DOMAIN_COMMAND,
    DOMAIN_REPLY,
    SIGNATURE_LEN,
    command_signed_bytes,
    u16,
)

OUT = Path(__file__).with_name("signed-sms-v1.json")
NOW = 1767225600  # 2026-01-01T00:00:00Z
NOT_AFTER = NOW + 3600
SERVER_ID = hashlib.sha256(b"mepl test deployment").digest()
OTHER_SERVER_ID = hashlib.sha256(b"another deployment").digest()
SERVER_NUMBER = "+447700900123"


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


SERVER_KEYS = {
    "server_key_1": SigningKey.from_seed(1, seed("mepl test server key 1")),
    "server_key_2": SigningKey.from_seed(2, seed("mepl test server key 2")),
    "server_key_3": SigningKey.from_seed(3, seed("mepl test server key 3")),
    "attacker_key_1": SigningKey.from_seed(1, seed("attacker key claiming id 1")),
}


def device_key(label: str) -> SigningKey:
    raw = SigningKey.from_seed(1, seed(label))
    return SigningKey(device_key_id(raw.public.raw), raw.private_key)


DEVICE_KEYS = {"device_key_a": device_key("mepl test device a"),
               "device_key_b": device_key("mepl test device b")}
DEVICES = {"device_a": ("490154203237518", "device_key_a"),
           "device_b": ("356938035643809", "device_key_b")}
ALL_KEYS = {**SERVER_KEYS, **DEVICE_KEYS}
IMEI_A = DEVICES["device_a"][0]
IMEI_B = DEVICES["device_b"][0]
K1 = SERVER_KEYS["server_key_1"]


def key_name(key: SigningKey) -> str:
    return next(n for n, k in ALL_KEYS.items() if k is key)


def handset_spec(windows: dict[str, Any] | None = None,
                 trusted: tuple[str, ...] = ("server_key_1", "server_key_2")) -> dict[str, Any]:
    return {"device": "device_a", "trusted_keys": list(trusted),
            "trusted_numbers": [SERVER_NUMBER], "windows": windows or {}}


def build_handset(spec: dict[str, Any]) -> Handset:
    imei, dev = DEVICES[spec["device"]]
    keys = {ALL_KEYS[n].key_id: ALL_KEYS[n].public for n in spec["trusted_keys"]}
    return Handset(imei=imei, server_id=SERVER_ID, device_key=DEVICE_KEYS[dev],
                   trusted_keys=keys, trusted_numbers=tuple(spec["trusted_numbers"]),
                   windows={int(k): CounterWindow.from_json(v)
                            for k, v in spec["windows"].items()})


def seal(command: Command, key: SigningKey = K1, imei: str = IMEI_A, counter: int = 1001,
         not_after: int = NOT_AFTER, server_id: bytes = SERVER_ID) -> bytes:
    return seal_command(command, key=key, server_id=server_id, imei=imei, counter=counter,
                        not_after=not_after)


def seal_raw(opcode: int, args: bytes, counter: int = 1001) -> bytes:
    body = (b"\x11" + u16(1, "key") + counter.to_bytes(6, "big")
            + (NOT_AFTER // 60).to_bytes(4, "big") + bytes((opcode,)) + args)
    return body + K1.sign(command_signed_bytes(SERVER_ID, IMEI_A.encode(), body))


def signature_check(signed: bytes | None, signature: bytes, key: VerifyKey | None) -> bool | None:
    if signed is None or key is None:
        return None
    try:
        key.public_key.verify(signature, signed)
    except InvalidSignature:
        return False
    return True


def command_case(name: str, description: str, frame: bytes, *, inputs: dict[str, Any] | None,
                 spec: dict[str, Any] | None = None, prior: list[dict[str, Any]] | None = None,
                 sender: str = SERVER_NUMBER, now: int = NOW) -> dict[str, Any]:
    spec = spec or handset_spec()
    handset = build_handset(spec)
    for step in prior or []:
        handset.receive(bytes.fromhex(step["frame"]), step["sender"], step["now"])
    receiver_imei = DEVICES[spec["device"]][0]
    long_enough = len(frame) >= 14 + SIGNATURE_LEN
    signed = (DOMAIN_COMMAND + SERVER_ID + receiver_imei.encode() + frame[:-SIGNATURE_LEN]
              if long_enough else None)
    verify_key = (handset.trusted_keys.get(int.from_bytes(frame[1:3], "big"))
                  if long_enough else None)
    case: dict[str, Any] = {
        "name": name, "description": description, "inputs": inputs, "handset": spec,
        "prior": prior or [], "sender": sender, "now": now, "frame": frame.hex(),
        "signed_bytes": signed.hex() if signed else None,
        "signature": frame[-SIGNATURE_LEN:].hex() if long_enough else None,
        "verify_key": key_name_of(verify_key),
        "signature_valid": signature_check(signed, frame[-SIGNATURE_LEN:], verify_key),
        "frame_is_sealed_inputs": inputs is not None and sealed_from(inputs) == frame,
    }
    try:
        outcome = handset.receive(frame, sender, now)
    except FrameRejected as exc:
        case.update(verdict="reject", reason=exc.reason.value)
    else:
        case.update(verdict="duplicate" if outcome.duplicate else "accept", reason=None,
                    decoded=outcome.frame.command.to_json(), reply=outcome.reply_frame.hex())
    return case


def sealed_from(inputs: dict[str, Any]) -> bytes:
    return seal_command(Command.from_json(inputs["command"]), key=ALL_KEYS[inputs["signer"]],
                        server_id=bytes.fromhex(inputs["server_id"]), imei=inputs["imei"],
                        counter=inputs["counter"], not_after=inputs["not_after"])


def key_name_of(key: VerifyKey | None) -> str | None:
    if key is None:
        return None
    return next(n for n, k in SERVER_KEYS.items() if k.public.raw == key.raw)


def step(frame: bytes, now: int = NOW) -> dict[str, Any]:
    return {"frame": frame.hex(), "sender": SERVER_NUMBER, "now": now}


def flip(frame: bytes, index: int, bit: int = 0) -> bytes:
    data = bytearray(frame)
    data[index] ^= 1 << bit
    return bytes(data)


VALID: list[tuple[str, dict[str, Any]]] = [
    ("lock", {"emergency_dialer": True}),
    ("unlock", {}),
    ("status_query", {"features": ["battery", "lock_state", "sleep_state"]}),
    ("lock_status", {}),
    ("sleep", {"minutes": 120}),
    ("wake", {}),
    ("notify", {"text": "Please return this device to the depot.", "encoding": "gsm7"}),
    ("notify", {"text": "Gerät bitte zurückgeben \u2013 danke", "encoding": "utf8"}),
    ("locate", {}),
    ("wipe", {"external_storage": True}),
    ("set_trusted_numbers", {"numbers": ["+447700900123", "+447700900456"]}),
    ("rotate_key", {"next_key_id": 3,
                    "next_public_key": SERVER_KEYS["server_key_3"].public.raw.hex()}),
    ("set_restrictions", {"restrictions": ["camera", "usb_data", "factory_reset"]}),
    ("set_geofence", {"fence_id": 1, "lat_e7": 515007000, "lon_e7": -1246000,
                      "radius_m": 25000}),
]


def inputs_of(command: Command, key: SigningKey = K1, imei: str = IMEI_A, counter: int = 1001,
              not_after: int = NOT_AFTER) -> dict[str, Any]:
    return {"signer": key_name(key), "server_id": SERVER_ID.hex(), "imei": imei,
            "counter": counter, "not_after": not_after, "command": command.to_json()}


def command_cases() -> list[dict[str, Any]]:
    cases = []
    for i, (opcode, args) in enumerate(VALID):
        command = make_command(opcode, **args)
        frame = seal(command, counter=1001 + i)
        cases.append(command_case(f"valid-{opcode}-{i}", f"a valid {opcode} command", frame,
                                  inputs=inputs_of(command, counter=1001 + i)))
    lock = make_command("lock", emergency_dialer=True)
    base = seal(lock)
    base_inputs = inputs_of(lock)
    fields = [("version-type", 0, 0), ("version-type-high", 0, 7), ("key-id", 2, 1),
              ("counter", 8, 0), ("not-after", 12, 0), ("opcode", 13, 1), ("argument", 16, 0),
              ("signature", 20, 3), ("signature-last", len(base) - 1, 7)]
    for label, index, bit in fields:
        cases.append(command_case(f"flip-{label}", f"bit {bit} of octet {index} flipped",
                                  flip(base, index, bit), inputs=base_inputs))
    cases.append(command_case("key-id-other-trusted-key", "key id changed to another trusted key",
                              base[:1] + u16(2, "k") + base[3:], inputs=base_inputs))
    cases.append(command_case("key-id-unknown", "key id changed to a key the device lacks",
                              base[:1] + u16(7, "k") + base[3:], inputs=base_inputs))
    cases.append(command_case("forged-with-other-key", "signed by a key claiming id 1",
                              seal(lock, key=SERVER_KEYS["attacker_key_1"]),
                              inputs=inputs_of(lock, key=SERVER_KEYS["attacker_key_1"])))
    cases.append(command_case("truncated-one-octet", "last octet removed", base[:-1],
                              inputs=base_inputs))
    cases.append(command_case("truncated-header", "only 10 octets", base[:10],
                              inputs=base_inputs))
    cases.append(command_case("extended-one-octet", "one octet appended", base + b"\x00",
                              inputs=base_inputs))
    cases.append(command_case("extended-argument", "a TLV inserted before the signature",
                              base[:-SIGNATURE_LEN] + b"\x02\x00" + base[-SIGNATURE_LEN:],
                              inputs=base_inputs))
    cases.append(command_case("other-device-imei", "sealed for device B, received by device A",
                              seal(lock, imei=IMEI_B), inputs=inputs_of(lock, imei=IMEI_B)))
    other = seal_command(lock, key=K1, server_id=OTHER_SERVER_ID, imei=IMEI_A, counter=1001,
                         not_after=NOT_AFTER)
    cases.append(command_case("other-server-identity", "sealed under another server id",
                              other, inputs={**base_inputs, "server_id": OTHER_SERVER_ID.hex()}))
    window = {"1": {"size": 64, "high": 1001, "seen": [1001]}}
    cases.append(command_case("replayed-counter", "counter already seen (not executed here)",
                              base, inputs=base_inputs, spec=handset_spec(window)))
    old = {"1": {"size": 64, "high": 1100, "seen": [1100]}}
    cases.append(command_case("counter-below-window", "counter 99 below the high-water mark",
                              base, inputs=base_inputs, spec=handset_spec(old)))
    inside = {"1": {"size": 64, "high": 1010, "seen": [1010, 1005]}}
    cases.append(command_case("counter-inside-window", "out-of-order arrival, not yet seen",
                              base, inputs=base_inputs, spec=handset_spec(inside)))
    cases.append(command_case("duplicate-resend", "the same frame again: stored reply re-sent",
                              base, inputs=base_inputs, prior=[step(base)]))
    cases.append(command_case("expired", "received one minute after not-after", base,
                              inputs=base_inputs, now=NOT_AFTER + 60))
    cases.append(command_case("at-not-after", "received exactly at not-after", base,
                              inputs=base_inputs, now=NOT_AFTER))
    cases.append(command_case("downgraded-version-0", "version nibble set to 0",
                              b"\x01" + base[1:], inputs=base_inputs))
    cases.append(command_case("version-2", "version nibble set to 2", b"\x21" + base[1:],
                              inputs=base_inputs))
    cases.append(command_case("untrusted-sender", "from a number not in the trusted list", base,
                              inputs=base_inputs, sender="+447700900999"))
    cases.append(command_case("oversized", "longer than 1024 octets", base + bytes(1000),
                              inputs=base_inputs))
    cases.append(command_case("signed-unknown-opcode", "validly signed, opcode 0x7f",
                              seal_raw(0x7F, b""), inputs=None))
    cases.append(command_case("signed-malformed-flag", "validly signed lock with flag 2",
                              seal_raw(0x01, b"\x01\x01\x02"), inputs=None))
    cases.append(command_case("signed-unordered-tlv", "validly signed, TLV tags descending",
                              seal_raw(0x0D, b"\x02\x04\x00\x00\x00\x01\x01\x01\x01"),
                              inputs=None))
    rotate = seal(make_command("rotate_key", next_key_id=3,
                               next_public_key=SERVER_KEYS["server_key_3"].public.raw), counter=5)
    under_3 = seal(make_command("wake"), key=SERVER_KEYS["server_key_3"], counter=1)
    cases.append(command_case("rotation-new-key-accepted", "first frame under the rotated key",
                              under_3, inputs=inputs_of(make_command("wake"),
                                                        key=SERVER_KEYS["server_key_3"],
                                                        counter=1),
                              prior=[step(rotate)]))
    cases.append(command_case("rotation-old-key-retired",
                              "key 1 is dropped after the first frame under key 3",
                              seal(lock, counter=6), inputs=inputs_of(lock, counter=6),
                              prior=[step(rotate), step(under_3)]))
    cases.append(command_case("rotation-overlap", "key 1 still accepted before key 3 is used",
                              seal(lock, counter=6), inputs=inputs_of(lock, counter=6),
                              prior=[step(rotate)]))
    numbers = seal(make_command("set_trusted_numbers", numbers=["+447700900777"]), counter=9)
    cases.append(command_case("trusted-numbers-changed", "old number refused after a signed "
                              "set_trusted_numbers", base, inputs=base_inputs,
                              prior=[step(numbers)]))
    return cases


def reply_case(name: str, description: str, frame: bytes, *, command_frame: bytes,
               imei: str = IMEI_A, device_key: str = "device_key_a",
               status: str | None = None) -> dict[str, Any]:
    from signing.frames import open_reply

    key = DEVICE_KEYS[device_key]
    long_enough = len(frame) >= 20 + SIGNATURE_LEN
    signed = (DOMAIN_REPLY + SERVER_ID + imei.encode() + hashlib.sha256(command_frame).digest()
              + frame[:-SIGNATURE_LEN]) if long_enough else None
    case: dict[str, Any] = {
        "name": name, "description": description, "command_frame": command_frame.hex(),
        "imei": imei, "device_key": device_key, "frame": frame.hex(),
        "signed_bytes": signed.hex() if signed else None,
        "signature": frame[-SIGNATURE_LEN:].hex() if long_enough else None,
        "signature_valid": signature_check(signed, frame[-SIGNATURE_LEN:], key.public),
    }
    try:
        reply = open_reply(frame, device_key=key.public, server_id=SERVER_ID, imei=imei,
                           command_frame=command_frame)
    except FrameRejected as exc:
        case.update(verdict="reject", reason=exc.reason.value)
    else:
        case.update(verdict="accept", reason=None, status=reply.status.name.lower(),
                    items=[{"tag": t, "value": v.hex()} for t, v in reply.items])
    return case


def reply_cases() -> list[dict[str, Any]]:
    from signing.commands import ReplyStatus

    key_a = DEVICE_KEYS["device_key_a"]
    command = seal(make_command("lock_status"), counter=2001)
    other = seal(make_command("unlock"), counter=2002)
    same_counter = seal(make_command("unlock"), counter=2001)
    items = [(0x01, b"\x01")]
    reply = seal_reply(command, ReplyStatus.OK, items, device_key=key_a, server_id=SERVER_ID,
                       imei=IMEI_A)
    cases = [reply_case("valid-reply", "reply to lock_status: locked", reply,
                        command_frame=command)]
    cases[0]["inputs"] = {"status": "ok", "items": [{"tag": 1, "value": "01"}]}
    for label, index in (("version-type", 0), ("imei", 3), ("device-key-id", 10),
                         ("command-counter", 18), ("status", 19), ("item", 22),
                         ("signature", len(reply) - 5)):
        cases.append(reply_case(f"reply-flip-{label}", f"octet {index} flipped",
                                flip(reply, index), command_frame=command))
    cases.append(reply_case("reply-moved-to-other-command", "checked against another command",
                            reply, command_frame=other))
    cases.append(reply_case("reply-moved-same-counter", "another command frame with the same "
                            "key id and counter", reply, command_frame=same_counter))
    cases.append(reply_case("reply-other-device", "checked as if from device B", reply,
                            command_frame=command, imei=IMEI_B, device_key="device_key_b"))
    forged = seal_reply(command, ReplyStatus.OK, items, device_key=SigningKey(
        key_a.key_id, DEVICE_KEYS["device_key_b"].private_key), server_id=SERVER_ID, imei=IMEI_A)
    cases.append(reply_case("reply-forged-other-key", "signed by device B's key under A's id",
                            forged, command_frame=command))
    cases.append(reply_case("reply-truncated", "last octet removed", reply[:-1],
                            command_frame=command))
    cases.append(reply_case("reply-extended", "one octet appended", reply + b"\x00",
                            command_frame=command))
    return cases


def alert_case(name: str, description: str, frame: bytes, *, window: dict[str, Any] | None,
               inputs: dict[str, Any] | None, imei: str = IMEI_A,
               device_key: str = "device_key_a") -> dict[str, Any]:
    from signing.frames import open_alert

    key = DEVICE_KEYS[device_key]
    long_enough = len(frame) >= 22 + SIGNATURE_LEN
    signed = (DOMAIN_ALERT + SERVER_ID + imei.encode() + frame[:-SIGNATURE_LEN]
              if long_enough else None)
    case: dict[str, Any] = {
        "name": name, "description": description, "inputs": inputs, "imei": imei,
        "device_key": device_key, "window": window, "frame": frame.hex(),
        "signed_bytes": signed.hex() if signed else None,
        "signature": frame[-SIGNATURE_LEN:].hex() if long_enough else None,
        "signature_valid": signature_check(signed, frame[-SIGNATURE_LEN:], key.public),
    }
    try:
        opened = open_alert(frame, device_key=key.public, server_id=SERVER_ID, imei=imei,
                            window=CounterWindow.from_json(window) if window else None)
    except FrameRejected as exc:
        case.update(verdict="reject", reason=exc.reason.value)
    else:
        case.update(verdict="accept", reason=None, decoded=opened.alert.to_json(),
                    counter=opened.header.counter)
    return case


def alert_cases() -> list[dict[str, Any]]:
    key_a = DEVICE_KEYS["device_key_a"]
    valid: list[tuple[str, dict[str, Any]]] = [
        ("sim_changed", {"imsi": "234150999999999", "iccid": "8944110068256270054"}),
        ("invalid_sim", {"imsi": "234150999999998"}),
        ("provisioning_defect", {"defect": 3, "detail": "no device admin"}),
        ("left_territory", {"fence_id": 1, "lat_e7": 489000000, "lon_e7": 23500000}),
        ("lost", {}),
        ("sim_changed", {"imsi": "234150999999999", "iccid": "8944110068256270054",
                         "msisdn": "+447700900789"}),
        ("invalid_sim", {"imsi": "234150999999998", "msisdn": "+12025550123"}),
    ]
    cases = []
    frames = []
    for i, (kind, args) in enumerate(valid):
        alert = make_alert(kind, **args)
        frame = seal_alert(alert, counter=10 + i, raised_at=NOW, device_key=key_a,
                           server_id=SERVER_ID, imei=IMEI_A)
        frames.append(frame)
        inputs = {"alert": alert.to_json(), "counter": 10 + i, "raised_at": NOW}
        name = f"valid-alert-{kind}" + ("-msisdn" if "msisdn" in args else "")
        cases.append(alert_case(name, f"a valid {kind} alert" + (
            " with the SIM's own number (signed)" if "msisdn" in args else ""), frame,
            window={"size": 64, "high": 9, "seen": [9]}, inputs=inputs))
    sim = frames[0]
    cases.append(alert_case("alert-replayed", "counter 10 already seen by the server", sim,
                            window={"size": 64, "high": 12, "seen": [12, 10]}, inputs=None))
    cases.append(alert_case("alert-counter-too-old", "counter 10 below the window", sim,
                            window={"size": 64, "high": 200, "seen": [200]}, inputs=None))
    for label, index in (("imei", 4), ("counter", 16), ("type", 21), ("argument", 25)):
        cases.append(alert_case(f"alert-flip-{label}", f"octet {index} flipped",
                                flip(sim, index), window=None, inputs=None))
    with_number = frames[5]
    number_at = len(with_number) - 64 - 3
    cases.append(alert_case("alert-flip-msisdn", f"octet {number_at} (a digit of the signed "
                            "msisdn) flipped", flip(with_number, number_at), window=None,
                            inputs=None))
    cases.append(alert_case("alert-other-device", "checked as device B's alert", sim,
                            window=None, inputs=None, imei=IMEI_B, device_key="device_key_b"))
    return cases


def main() -> None:
    document = {
        "format": "mepl-signed-sms-vectors/1",
        "spec": "docs/wire-format.md",
        "server_id": SERVER_ID.hex(),
        "server_number": SERVER_NUMBER,
        "domain_tags": {"command": DOMAIN_COMMAND.hex(), "reply": DOMAIN_REPLY.hex(),
                        "alert": DOMAIN_ALERT.hex()},
        "keys": {name: {"key_id": key.key_id, "seed": seed_of(name).hex(),
                        "public_key": key.public.raw.hex()} for name, key in ALL_KEYS.items()},
        "devices": {name: {"imei": imei, "key": key} for name, (imei, key) in DEVICES.items()},
        "commands": command_cases(),
        "replies": reply_cases(),
        "alerts": alert_cases(),
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(document['commands'])} command, {len(document['replies'])} reply, "
          f"{len(document['alerts'])} alert cases")


def seed_of(name: str) -> bytes:
    labels = {"server_key_1": "mepl test server key 1", "server_key_2": "mepl test server key 2",
              "server_key_3": "mepl test server key 3",
              "attacker_key_1": "attacker key claiming id 1",
              "device_key_a": "mepl test device a", "device_key_b": "mepl test device b"}
    return seed(labels[name])


if __name__ == "__main__":
    main()
