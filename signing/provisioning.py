"""The provisioning bundle a device receives at enrolment, as JSON or a QR string.

JSON (``mepl-provisioning/1``) carries the CA certificate, the server signing
keys with ids and certificates, the trusted server numbers, the server id and
the device's IMEI.  The QR string is ``MEPLP1:`` plus unpadded base32 (QR
alphanumeric mode) of a compact binary form without certificates::

    version(1)=1 server_id(32) imei_bcd(8) n_keys(1) {key_id(2) public(32)}*
    n_numbers(1) {n_digits(1) bcd}*
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from signing.certs import cert_from_pem, server_id_of, verify_signing_cert
from signing.errors import BundleError, EncodingError
from signing.fields import Field, Kind, decode_value, encode_value, normalise
from signing.keys import VerifyKey
from signing.wire import bcd_decode, check_imei, check_server_id, imei_bcd

BUNDLE_FORMAT: Final = "mepl-provisioning/1"
QR_PREFIX: Final = "MEPLP1:"
_NUMBERS = Field(0, "trusted_numbers", Kind.NUMBERS)


@dataclass(frozen=True)
class ProvisioningBundle:
    """What a device needs to trust its server."""

    server_id: bytes
    imei: str
    keys: tuple[VerifyKey, ...]
    trusted_numbers: tuple[str, ...] = ()
    ca_cert_pem: str | None = None
    key_certs_pem: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_server_id(self.server_id)
        check_imei(self.imei)
        if not self.keys:
            raise BundleError("a bundle needs at least one server key")
        normalise(_NUMBERS, self.trusted_numbers)

    def verify(self, now: datetime | None = None) -> None:
        """Check the certificates (when present) against the CA and the server id."""
        if self.ca_cert_pem is None:
            return
        ca = cert_from_pem(self.ca_cert_pem)
        if server_id_of(ca) != self.server_id:
            raise BundleError("server_id is not the hash of the CA key")
        for key in self.keys:
            pem = self.key_certs_pem.get(key.key_id)
            if pem is None:
                raise BundleError(f"no certificate for key {key.key_id}")
            verify_signing_cert(ca, cert_from_pem(pem), key, now)

    def to_json(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "format": BUNDLE_FORMAT,
            "server_id": self.server_id.hex(),
            "imei": self.imei,
            "trusted_numbers": list(self.trusted_numbers),
            "ca_cert": self.ca_cert_pem,
            "keys": [
                {"key_id": k.key_id, "public_key": k.raw.hex(),
                 "cert": self.key_certs_pem.get(k.key_id)}
                for k in self.keys
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProvisioningBundle:
        """Parse the JSON document (call :meth:`verify` to check certificates)."""
        if data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a {BUNDLE_FORMAT} document")
        try:
            keys = tuple(VerifyKey.from_raw(int(k["key_id"]), bytes.fromhex(k["public_key"]))
                         for k in data["keys"])
            certs = {int(k["key_id"]): k["cert"] for k in data["keys"] if k.get("cert")}
            return cls(bytes.fromhex(data["server_id"]), data["imei"], keys,
                       tuple(data.get("trusted_numbers", ())), data.get("ca_cert"), certs)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bad bundle: {exc}") from None

    def to_qr(self) -> str:
        """The compact printable form (certificates left out)."""
        out = bytearray((1,)) + self.server_id + imei_bcd(self.imei) + bytes((len(self.keys),))
        for key in self.keys:
            out += key.key_id.to_bytes(2, "big") + key.raw
        out += bytes((len(self.trusted_numbers),))
        out += encode_value(Kind.NUMBERS, self.trusted_numbers)
        return QR_PREFIX + base64.b32encode(bytes(out)).decode("ascii").rstrip("=")

    @classmethod
    def from_qr(cls, text: str) -> ProvisioningBundle:
        """Parse the QR string."""
        body = text.strip()
        if not body.startswith(QR_PREFIX):
            raise BundleError("not a provisioning QR string")
        body = body[len(QR_PREFIX) :]
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
            if raw[0] != 1:
                raise BundleError("unsupported QR bundle version")
            server_id, imei = raw[1:33], bcd_decode(raw[33:41])
            count, pos = raw[41], 42
            keys = []
            for _ in range(count):
                key_id = int.from_bytes(raw[pos : pos + 2], "big")
                keys.append(VerifyKey.from_raw(key_id, raw[pos + 2 : pos + 34]))
                pos += 34
            numbers = decode_value(_NUMBERS, raw[pos + 1 :])
            assert isinstance(numbers, tuple)
            if len(numbers) != raw[pos]:
                raise BundleError("trusted number count mismatch")
            return cls(server_id, imei, tuple(keys), numbers)
        except (binascii.Error, IndexError, ValueError, EncodingError) as exc:
            raise BundleError(f"bad QR bundle: {exc}") from None


def parse_bundle(text: str) -> ProvisioningBundle:
    """A bundle from either its JSON text or its QR string."""
    stripped = text.strip()
    if stripped.startswith(QR_PREFIX):
        return ProvisioningBundle.from_qr(stripped)
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        raise BundleError("neither JSON nor a QR string") from None
    return ProvisioningBundle.from_json(data)
