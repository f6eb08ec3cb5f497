"""Throughput of the signed-SMS core, per core (one process, one thread).

    .venv/bin/python bench/bench_signing.py --runs 5

Figures: seal (encode + sign) command frames/s (``seal``: one command sealed for
many devices, as in a fan-out; ``seal_from_json``: the command rebuilt from its
JSON each time), open + verify reply frames/s,
handset receive (verify + window + execute + sign reply) frames/s, and the raw
Ed25519 sign/verify rates for comparison: libsodium's (what ``signing`` uses)
and OpenSSL's through ``cryptography``.  Medians over ``--runs``.
Targets: seal >= 20,000/s, open reply >= 10,000/s.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable

from signing.commands import Command, ReplyStatus, make_command
from signing.frames import open_reply, seal_command, seal_reply
from signing.handset import Handset
from signing.keys import SigningKey, device_key_id

SERVER_ID = hashlib.sha256(b"bench").digest()
IMEI = "490154203237518"
NOW = 1767225600
TARGETS = {"seal": 20_000, "open_reply": 10_000}


def interleaved(fns: dict[str, Callable[[int], None]], count: int,
                chunk: int = 250) -> dict[str, float]:
    """Rates (ops/s) of each fn, measured in alternating chunks so that load from
    other processes falls on all of them alike."""
    spent = dict.fromkeys(fns, 0.0)
    done = 0
    while done < count:
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(chunk)
            spent[name] += time.perf_counter() - start
        done += chunk
    return {name: done / seconds for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000, help="operations per run")
    args = parser.parse_args()

    server = SigningKey.from_seed(1, hashlib.sha256(b"bench server").digest())
    raw = SigningKey.from_seed(1, hashlib.sha256(b"bench device").digest())
    device = SigningKey(device_key_id(raw.public.raw), raw.private_key)
    command = make_command("set_geofence", fence_id=1, lat_e7=515007000, lon_e7=-1246000,
                           radius_m=5000)
    frame = seal_command(command, key=server, server_id=SERVER_ID, imei=IMEI, counter=1,
                         not_after=NOW + 3600)
    reply = seal_reply(frame, ReplyStatus.OK, [(1, b"\x01")], device_key=device,
                       server_id=SERVER_ID, imei=IMEI)
    device_public = device.public
    signed = b"x" * 120
    signature = server.sign(signed)
    server_verify = server.public
    server_openssl = server.private_key.public_key()

    def seal_n(n: int) -> None:
        for counter in range(1, n + 1):
            seal_command(command, key=server, server_id=SERVER_ID, imei=IMEI, counter=counter,
                         not_after=NOW + 3600)

    as_json = command.to_json()

    def seal_json_n(n: int) -> None:
        for counter in range(1, n + 1):
            seal_command(Command.from_json(as_json), key=server, server_id=SERVER_ID, imei=IMEI,
                         counter=counter, not_after=NOW + 3600)

    def open_n(n: int) -> None:
        for _ in range(n):
            open_reply(reply, device_key=device_public, server_id=SERVER_ID, imei=IMEI,
                       command_frame=frame)

    def handset_n(n: int) -> None:
        handset = Handset(imei=IMEI, server_id=SERVER_ID, device_key=device,
                          trusted_keys={1: server.public})
        frames = [seal_command(make_command("wake"), key=server, server_id=SERVER_ID,
                               imei=IMEI, counter=c, not_after=NOW + 3600)
                  for c in range(1, n + 1)]
        start = time.perf_counter()
        for f in frames:
            handset.receive(f, "+447700900123", NOW)
        elapsed.append(time.perf_counter() - start)

    def sign_n(n: int) -> None:
        for _ in range(n):
            server.sign(signed)

    def verify_n(n: int) -> None:
        for _ in range(n):
            server_verify.verify(signature, signed)

    def openssl_sign_n(n: int) -> None:
        for _ in range(n):
            server.private_key.sign(signed)

    def openssl_verify_n(n: int) -> None:
        for _ in range(n):
            server_openssl.verify(signature, signed)

    elapsed: list[float] = []
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):
        rates = interleaved({"seal": seal_n, "seal_from_json": seal_json_n,
                             "ed25519_sign": sign_n, "open_reply": open_n,
                             "ed25519_verify": verify_n, "openssl_sign": openssl_sign_n,
                             "openssl_verify": openssl_verify_n}, args.count)
        handset_n(args.count // 4)
        rates["handset_receive"] = args.count // 4 / elapsed[-1]
        for name, value in rates.items():
            results.setdefault(name, []).append(value)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"frame sizes: command {len(frame)} octets, reply {len(reply)} octets")
    print(f"medians over {args.runs} runs of {args.count} operations (one core):")
    for name, value in medians.items():
        target = TARGETS.get(name)
        verdict = f"  target {target:,}/s: {'met' if value >= target else 'MISSED'}" if target \
            else ""
        print(f"  {name:16s} {value:10,.0f} /s{verdict}")
    seal_share = medians["seal"] / medians["ed25519_sign"]
    open_share = medians["open_reply"] / medians["ed25519_verify"]
    print(f"rate relative to bare Ed25519 (measured interleaved, so load cancels out): "
          f"seal {seal_share:.2f}, open_reply {open_share:.2f}")
    print("projected on an unloaded core (reference Ed25519: 47k sign/s, 16k verify/s): "
          f"seal {47_000 * seal_share:,.0f} /s, open_reply {16_000 * open_share:,.0f} /s")


if __name__ == "__main__":
    main()
