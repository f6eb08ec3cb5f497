"""Encrypted PKCS#8 (RFC 5958 / RFC 8018 PBES2) written with a strong KDF, and read back.

``cryptography``'s ``BestAvailableEncryption`` writes PBES2 with only 2,048
PBKDF2 iterations and offers no way to raise them for PKCS#8, so new private
key files are assembled here from standard parts: PBES2 with
PBKDF2-HMAC-SHA256 (:data:`PBKDF2_ITERATIONS` iterations, 16-octet random
salt) and AES-256-CBC (16-octet random IV), exactly the structure OpenSSL
writes with ``openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256
-iter 600000``.  Any PKCS#8 reader (``cryptography``, OpenSSL, Java, Go)
loads them; loading itself is left to ``cryptography``.

:func:`kdf_of` reads the key-derivation parameters of an existing encrypted
file so that weaker ones (the old 2,048-iteration files) can be reported.
No function here sees a file, and none logs.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PBKDF2_ITERATIONS: Final = 600_000
"""PBKDF2-HMAC-SHA256 iterations for new files (OWASP's 2023 figure); also the minimum
below which an existing file is reported as weak."""

SCRYPT_MIN_COST: Final = 1 << 14
"""The smallest scrypt ``N`` not reported as weak (OpenSSL's ``-scrypt`` default)."""

PEM_LABEL: Final = b"ENCRYPTED PRIVATE KEY"

_PBES2: Final = "1.2.840.113549.1.5.13"
_PBKDF2: Final = "1.2.840.113549.1.5.12"
_SCRYPT: Final = "1.3.6.1.4.1.11591.4.11"
_HMAC_SHA1: Final = "1.2.840.113549.2.7"
_PRF_NAMES: Final = {_HMAC_SHA1: "sha1", "1.2.840.113549.2.9": "sha256",
                     "1.2.840.113549.2.10": "sha384", "1.2.840.113549.2.11": "sha512"}
_STRONG_PRFS: Final = frozenset({"sha256", "sha384", "sha512"})
_AES256_CBC: Final = "2.16.840.1.101.3.4.1.42"

_SEQUENCE, _INTEGER, _OCTETS, _NULL, _OID = 0x30, 0x02, 0x04, 0x05, 0x06


@dataclass(frozen=True)
class KdfInfo:
    """How an encrypted PKCS#8 file derives its key.

    ``scheme`` is ``"pbkdf2"``, ``"scrypt"`` or ``"other"`` (PBES1, PKCS#12
    PBE, or anything not understood); ``prf`` is the PBKDF2 hash;
    ``iterations`` the PBKDF2 count or the scrypt cost ``N``.
    """

    scheme: str
    iterations: int | None = None
    prf: str | None = None

    @property
    def weak(self) -> bool:
        """True unless PBKDF2 with a SHA-2 PRF and >= 600,000 iterations, or scrypt N >= 2^14."""
        if self.scheme == "pbkdf2":
            return (self.prf not in _STRONG_PRFS or self.iterations is None
                    or self.iterations < PBKDF2_ITERATIONS)
        if self.scheme == "scrypt":
            return self.iterations is None or self.iterations < SCRYPT_MIN_COST
        return True

    def describe(self) -> str:
        """E.g. ``"PBKDF2-HMAC-SHA256, 2048 iterations"`` (no secret in it)."""
        if self.scheme == "pbkdf2":
            return f"PBKDF2-HMAC-{(self.prf or '?').upper()}, {self.iterations} iterations"
        if self.scheme == "scrypt":
            return f"scrypt, N={self.iterations}"
        return "a legacy or unknown encryption scheme"


def encrypt(plain_der: bytes, passphrase: bytes, *,
            iterations: int = PBKDF2_ITERATIONS) -> bytes:
    """PEM ``ENCRYPTED PRIVATE KEY`` of the unencrypted PKCS#8 DER ``plain_der``."""
    salt = os.urandom(16)
    iv = os.urandom(16)
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    prf = _seq(_oid("1.2.840.113549.2.9"), _der(_NULL, b""))
    kdf = _seq(_oid(_PBKDF2), _seq(_der(_OCTETS, salt), _int(iterations), prf))
    cipher = _seq(_oid(_AES256_CBC), _der(_OCTETS, iv))
    info = _seq(_seq(_oid(_PBES2), _seq(kdf, cipher)), _der(_OCTETS, encrypted))
    return _pem(info)


def kdf_of(pem: bytes) -> KdfInfo:
    """The key derivation of an ``ENCRYPTED PRIVATE KEY`` PEM (``other`` if not understood)."""
    try:
        return _kdf_of(_unpem(pem))
    except (ValueError, IndexError):
        return KdfInfo("other")


def _kdf_of(der: bytes) -> KdfInfo:
    (info,) = _items(der)
    algorithm = _items(_expect(_items(_expect(info, _SEQUENCE))[0], _SEQUENCE))
    if _oid_text(algorithm[0]) != _PBES2:
        return KdfInfo("other")
    kdf, _cipher = _items(_expect(algorithm[1], _SEQUENCE))
    kdf_oid, params = _items(_expect(kdf, _SEQUENCE))
    fields = _items(_expect(params, _SEQUENCE))
    if _oid_text(kdf_oid) == _SCRYPT:
        return KdfInfo("scrypt", _int_value(fields[1]))
    if _oid_text(kdf_oid) != _PBKDF2:
        return KdfInfo("other")
    prf = _HMAC_SHA1  # the default when the PRF is absent
    for item in fields[2:]:
        if item[0] == _SEQUENCE:
            prf = _oid_text(_items(item[1])[0])
    return KdfInfo("pbkdf2", _int_value(fields[1]), _PRF_NAMES.get(prf, prf))


# --- DER, just what PKCS#8 encryption needs ---------------------------------------------


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        head = bytes((size,))
    else:
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        head = bytes((0x80 | len(octets),)) + octets
    return bytes((tag,)) + head + content


def _seq(*parts: bytes) -> bytes:
    return _der(_SEQUENCE, b"".join(parts))


def _int(value: int) -> bytes:
    return _der(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _der(_OID, bytes(out))


def _items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) elements one after the other in ``data``."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, size = data[pos], data[pos + 1]
        pos += 2
        if size & 0x80:
            count = size & 0x7F
            if not 1 <= count <= 4:
                raise ValueError("unsupported DER length")
            size = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if pos + size > len(data):
            raise ValueError("truncated DER")
        out.append((tag, data[pos:pos + size]))
        pos += size
    return out


def _expect(item: tuple[int, bytes], tag: int) -> bytes:
    if item[0] != tag:
        raise ValueError(f"expected DER tag 0x{tag:02x}")
    return item[1]


def _oid_text(item: tuple[int, bytes]) -> str:
    content = _expect(item, _OID)
    arcs: list[int] = []
    value = 0
    for octet in content:
        value = value << 7 | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _int_value(item: tuple[int, bytes]) -> int:
    return int.from_bytes(_expect(item, _INTEGER), "big")


def _pem(der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return (b"-----BEGIN " + PEM_LABEL + b"-----\n" + b"\n".join(lines)
            + b"\n-----END " + PEM_LABEL + b"-----\n")


def _unpem(pem: bytes) -> bytes:
    begin = b"-----BEGIN " + PEM_LABEL + b"-----"
    end = b"-----END " + PEM_LABEL + b"-----"
    start = pem.index(begin) + len(begin)
    return base64.b64decode(b"".join(pem[start:pem.index(end, start)].split()), validate=True)
