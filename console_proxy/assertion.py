"""The signed assertion the proxy puts on every request it forwards (``MEPL-Assertion``).

``<payload>.<signature>``: the payload is base64url (no padding) of the compact,
key-sorted UTF-8 JSON object of the contract (docs/console-proxy.md); the
signature is base64url (no padding) of the Ed25519 signature over the ASCII
bytes of the payload.  A fresh request id (``uuid4().hex``) and a 16-byte nonce
go into every assertion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

HEADER = "MEPL-Assertion"
VERSION = 1


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Subject:
    """Who a request is made for: an admin, or the proxy itself (role ``proxy``)."""

    name: str
    role: str
    fingerprint: str = ""


@dataclass(frozen=True)
class Signed:
    """One assertion: the header value and the request id it carries."""

    header: str
    request_id: str


class AssertionSigner:
    """Signs assertions with the proxy's Ed25519 key."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, issuer: str,
                 seconds: Callable[[], float],
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._key = key
        self.issuer = issuer
        self._seconds = seconds
        self._random = random_bytes

    def sign(self, subject: Subject, method: str, target: str, body: bytes, source: str,
             request_id: str | None = None) -> Signed:
        """The assertion for ``method target`` with ``body`` from ``source`` (``ip:port``)."""
        rid = request_id or uuid.uuid4().hex
        claims = {
            "v": VERSION, "iss": self.issuer, "sub": subject.name, "fp": subject.fingerprint,
            "role": subject.role, "rid": rid, "iat": self._seconds(),
            "nonce": b64url(self._random(16)), "m": method, "p": target,
            "bh": hashlib.sha256(body).hexdigest(), "src": source,
        }
        payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True,
                                    ensure_ascii=False).encode("utf-8"))
        signature = b64url(self._key.sign(payload.encode("ascii")))
        return Signed(f"{payload}.{signature}", rid)


def load_assertion_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """Read the proxy's Ed25519 private key (PKCS#8 PEM, unencrypted, mode 0600)."""
    key = load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key
