"""Concatenation: UDH parsing, and reassembly of parts in any order, duplicated, absurd.

Contract: :func:`~sms_gateway.udh.split_user_data` raises only
:class:`~sms_gateway.errors.UdhError` and a parsed header re-encodes to a
header that parses to the same values; :class:`sms_gateway.reassembly.Reassembler`
raises only ValueError (part outside 1..total) and ConflictingPartError,
completes a set exactly when every part has arrived, joins the parts in
order, and holds at most ``max_sets`` sets after :meth:`expire`;
:class:`signing.transport.Reassembler` raises only FrameRejected and holds no
set past its timeout.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, expect, instrumented, run

with instrumented(__name__ == "__main__"):
    from signing.errors import FrameRejected
    from signing.transport import Reassembler as FrameReassembler
    from sms_gateway.errors import UdhError
    from sms_gateway.reassembly import ConflictingPartError, PartKey, Reassembler
    from sms_gateway.udh import Concat, Udh, encode_udh, split_user_data

TARGET = "reassembly"
MAX_SETS = 3
ORIGINATORS = ("+447700900123", "+447700900124", "84433")


def udh_round_trip(user_data: bytes) -> None:
    """Parse a UDH; what parsed re-encodes and parses back to the same values."""
    split = expect(lambda: split_user_data(user_data), UdhError)
    if split is None:
        return
    udh, payload = split
    assert user_data.endswith(payload)
    again, rest = split_user_data(encode_udh(udh) + payload) if encode_udh(udh) else (Udh(),
                                                                                     payload)
    assert rest == payload
    assert (again.dest_port, again.concat, again.other) == (udh.dest_port, udh.concat,
                                                           udh.other)


def reassemble(r: Reader) -> None:
    """A stream of parts for a few sets, in the fuzzer's order, with the fuzzer's clock."""
    reassembler: Reassembler[int] = Reassembler(timeout=50.0, max_sets=MAX_SETS)
    frames = FrameReassembler(timeout=50.0)
    got: dict[PartKey, dict[int, bytes]] = {}
    now = 0.0
    for item in range(r.u8() % 64):
        if not r.left:
            break
        op = r.u8()
        now += op >> 5
        total = r.pick((1, 2, 3, 255, 0, 2)) if op & 1 else r.u8()
        key = PartKey("a", r.pick(ORIGINATORS), r.u8() % 3, r.pick((8, 16)), total)
        seq = r.u8() % (total + 2)
        payload = r.chunk(4)
        try:
            done = reassembler.add(key, seq, payload, item, now)
        except ValueError:
            assert not 1 <= seq <= total, (seq, total)
            done = None
        except ConflictingPartError:
            assert got.get(key, {}).get(seq, payload) != payload
            done = None
        else:
            assert 1 <= seq <= total
            if total > 1:
                got.setdefault(key, {}).setdefault(seq, payload)
        if done is not None:
            parts = got.pop(key, {seq: payload})
            assert done.payload == b"".join(parts[i] for i in range(1, total + 1))
            assert len(done.items) == total
        if op & 2:
            for expired in reassembler.expire(now):
                got.pop(expired.key, None)
            assert reassembler.pending() <= MAX_SETS
        def add_frame_part(k: PartKey = key, s: int = seq, p: bytes = payload,
                           t: float = now) -> bytes | None:
            return frames.add(k.originator, k.reference, k.total, s, p, t)

        frame = expect(add_frame_part, FrameRejected)
        assert frame is None or isinstance(frame, bytes)
        assert all(now - s.started <= 50.0 for s in frames.sets.values())


def one_input(data: bytes) -> None:
    """First octet: a UDH to parse (even) or a stream of parts (odd)."""
    r = Reader(data)
    if r.u8() & 1:
        reassemble(r)
    else:
        udh_round_trip(r.rest())


def seeds() -> list[bytes]:
    """Headers with ports and both concatenation forms; part streams in and out of order."""
    headers = [encode_udh(Udh(dest_port=16411, src_port=16410, concat=Concat(7, 3, 2))),
               encode_udh(Udh(concat=Concat(300, 2, 1, 16))),
               bytes.fromhex("0605040b8423f0"), bytes.fromhex("0a00030102010401020305")]
    streams = [bytes((1, 3, 1, 0, 0, 2, 1, 2, 0x41, 0x42, 3, 1, 0, 0, 1, 1, 1, 0x43,
                      3, 1, 0, 0, 2, 1, 2, 0x41, 0x42, 2, 1, 0, 0, 3, 1, 0x44))]
    return [b"\0" + h + b"payload" for h in headers] + streams


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
