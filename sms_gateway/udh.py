"""User Data Header (3GPP TS 23.040 9.2.3.24): application ports and concatenation.

Pure functions over bytes.  ``split_user_data`` separates a UDH-bearing user
data field into the parsed header and the payload; ``encode_udh`` does the
reverse.  Information elements other than ports and concatenation are kept
verbatim in :attr:`Udh.other`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sms_gateway.errors import UdhError

IEI_CONCAT_8 = 0x00
IEI_PORTS_8 = 0x04
IEI_PORTS_16 = 0x05
IEI_CONCAT_16 = 0x08


@dataclass(frozen=True)
class Concat:
    """One part of a concatenated message: ``seq`` of ``total`` (1-based) under ``reference``."""

    reference: int
    total: int
    seq: int
    ref_bits: int = 8

    def __post_init__(self) -> None:
        if self.ref_bits not in (8, 16):
            raise ValueError("ref_bits must be 8 or 16")
        if not 0 <= self.reference < (1 << self.ref_bits):
            raise ValueError("concatenation reference out of range")
        if not 1 <= self.seq <= self.total <= 255:
            raise ValueError("concatenation seq/total out of range")


@dataclass(frozen=True)
class Udh:
    """A parsed user data header."""

    dest_port: int | None = None
    src_port: int | None = None
    concat: Concat | None = None
    other: tuple[tuple[int, bytes], ...] = ()


def parse_udh(header: bytes) -> Udh:
    """Parse the information elements of a UDH (without its UDHL octet)."""
    dest = src = None
    concat = None
    ports_8 = False
    other: list[tuple[int, bytes]] = []
    i = 0
    while i < len(header):
        if i + 2 > len(header):
            raise UdhError("truncated information element header")
        iei, length = header[i], header[i + 1]
        data = header[i + 2 : i + 2 + length]
        if len(data) != length:
            raise UdhError("information element overruns the header")
        i += 2 + length
        try:
            if iei == IEI_CONCAT_8 and length == 3:
                concat = Concat(data[0], data[1], data[2], 8)
            elif iei == IEI_CONCAT_16 and length == 4:
                concat = Concat(int.from_bytes(data[:2], "big"), data[2], data[3], 16)
            elif iei == IEI_PORTS_16 and length == 4:
                dest = int.from_bytes(data[:2], "big")
                src = int.from_bytes(data[2:], "big")
            elif iei == IEI_PORTS_8 and length == 2:
                dest, src = data[0], data[1]
                ports_8 = True
            else:
                other.append((iei, bytes(data)))
        except ValueError as exc:
            raise UdhError(str(exc)) from None
    udh = Udh(dest, src, concat, tuple(other))
    # encode_udh writes ports as 16-bit: 2 octets more, which must still fit the UDHL octet
    # (a received part is stored re-encoded).
    if ports_8:
        try:
            encode_udh(udh)
        except ValueError:  # over 255 octets
            raise UdhError("user data header too long once its 8-bit ports are made "
                           "16-bit") from None
    return udh


def split_user_data(user_data: bytes) -> tuple[Udh, bytes]:
    """Split UDHI user data into ``(Udh, payload)``; the first octet is UDHL."""
    if not user_data:
        raise UdhError("empty user data with UDHI set")
    udhl = user_data[0]
    if 1 + udhl > len(user_data):
        raise UdhError("UDH length exceeds user data")
    return parse_udh(user_data[1 : 1 + udhl]), user_data[1 + udhl :]


def encode_udh(udh: Udh) -> bytes:
    """Encode ``udh`` with its UDHL octet; returns ``b""`` for an empty header."""
    body = bytearray()
    if udh.concat is not None:
        c = udh.concat
        if c.ref_bits == 8:
            body += bytes((IEI_CONCAT_8, 3, c.reference, c.total, c.seq))
        else:
            body += bytes((IEI_CONCAT_16, 4)) + c.reference.to_bytes(2, "big")
            body += bytes((c.total, c.seq))
    if udh.dest_port is not None:
        src = udh.src_port if udh.src_port is not None else 0
        body += bytes((IEI_PORTS_16, 4)) + udh.dest_port.to_bytes(2, "big")
        body += src.to_bytes(2, "big")
    for iei, data in udh.other:
        body += bytes((iei, len(data))) + data
    if not body:
        return b""
    return bytes((len(body),)) + bytes(body)
