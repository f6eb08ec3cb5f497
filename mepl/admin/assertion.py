"""The console proxy's signed assertion, checked on every admin API request.

``MEPL-Assertion: <payload>.<signature>``: base64url (no padding) of a
compact JSON object with sorted keys, and of its Ed25519 signature by the
proxy (docs/admin-api.md has the fields).  Checked in this order: the
signature under one of the configured proxy keys, the format version, the
method, request target and body hash against the actual request, the time
within ``max_skew_s``, and the request id and nonce never seen before (here
for the skew window; across processes the unique ``audit.request_id`` refuses
a replay).  Every refusal is the same :class:`AssertionRefused` to the
caller's eyes; its ``reason`` is for the audit and the log only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

HEADER = "MEPL-Assertion"
ROLES = ("viewer", "operator", "admin", "proxy")
_RID = re.compile(r"[0-9a-f]{32}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")


class Clock(Protocol):
    """Anything with ``seconds()`` (the reactor, ``task.Clock``)."""

    def seconds(self) -> float:
        """Now, in UNIX seconds."""
        ...


class AssertionRefused(Exception):  # noqa: N818 - reads as what happened
    """The assertion is missing or not valid; ``reason`` says why (never sent back).

    ``claimed`` holds what the payload said, when it could be read (for the audit).
    """

    def __init__(self, reason: str, claimed: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed = claimed or {}


@dataclass(frozen=True)
class Identity:
    """Who the proxy vouches for: name, role, certificate fingerprint, request id, source."""

    name: str
    role: str
    fingerprint: str
    request_id: str
    source: str
    issuer: str


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not _B64.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def body_hash(body: bytes) -> str:
    """Lowercase hex SHA-256 of a request body (the ``bh`` field)."""
    return hashlib.sha256(body).hexdigest()


def load_public_keys(paths: Iterable[Path]) -> tuple[Ed25519PublicKey, ...]:
    """The proxy's assertion public keys from PEM files; ValueError names a bad one."""
    keys = []
    for path in paths:
        try:
            key = load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read an assertion public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: the assertion key must be Ed25519")
        keys.append(key)
    return tuple(keys)


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "v": int, "iss": str, "sub": str, "fp": str, "role": str, "rid": str,
    "iat": (int, float), "nonce": str, "m": str, "p": str, "bh": str, "src": str}


class AssertionVerifier:
    """Checks assertions against the proxy's public keys and remembers those seen."""

    def __init__(self, keys: Sequence[Ed25519PublicKey], *, clock: Clock,
                 max_skew_s: float = 30.0) -> None:
        if not keys:
            raise ValueError("at least one assertion public key is needed")
        self._keys = tuple(keys)
        self._clock = clock
        self._skew = max_skew_s
        self._seen_rids: dict[str, float] = {}
        self._seen_nonces: dict[str, float] = {}

    def verify(self, header: str | None, *, method: str, target: str,
               body: bytes) -> Identity:
        """The identity the assertion ``header`` carries for this request, or raise
        :class:`AssertionRefused`."""
        if not header:
            raise AssertionRefused("no assertion")
        payload_text, sep, signature_text = header.strip().partition(".")
        try:
            if not sep:
                raise ValueError("no signature")
            signature = _unb64url(signature_text)
            payload_bytes = _unb64url(payload_text)
        except (ValueError, binascii.Error):
            raise AssertionRefused("malformed assertion") from None
        if not self._signed(payload_text.encode("ascii"), signature):
            raise AssertionRefused("bad signature", _peek(payload_bytes))
        claims = _claims(payload_bytes)
        if claims["v"] != 1:
            raise AssertionRefused(f"unknown assertion version {claims['v']!r}", claims)
        if claims["m"] != method or claims["p"] != target:
            raise AssertionRefused("assertion for another request", claims)
        if claims["bh"] != body_hash(body):
            raise AssertionRefused("body hash mismatch", claims)
        now = self._clock.seconds()
        if abs(now - float(claims["iat"])) > self._skew:
            raise AssertionRefused("assertion expired or from the future", claims)
        self._forget(now)
        if claims["rid"] in self._seen_rids or claims["nonce"] in self._seen_nonces:
            raise AssertionRefused("replayed assertion", claims)
        keep_until = float(claims["iat"]) + self._skew
        self._seen_rids[claims["rid"]] = keep_until
        self._seen_nonces[claims["nonce"]] = keep_until
        return Identity(name=claims["sub"], role=claims["role"], fingerprint=claims["fp"],
                        request_id=claims["rid"], source=claims["src"], issuer=claims["iss"])

    def _signed(self, payload: bytes, signature: bytes) -> bool:
        for key in self._keys:
            try:
                key.verify(signature, payload)
            except InvalidSignature:
                continue
            return True
        return False

    def _forget(self, now: float) -> None:
        for seen in (self._seen_rids, self._seen_nonces):
            for value in [v for v, until in seen.items() if until < now]:
                del seen[value]


def _peek(payload: bytes) -> dict[str, Any]:
    """What an unverified payload claims (for the audit), or nothing."""
    try:
        data = json.loads(payload)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("sub", "role", "rid", "fp", "src", "iss")
            if isinstance(data.get(k), str)}


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise AssertionRefused("payload is not JSON") from None
    if not isinstance(data, dict):
        raise AssertionRefused("payload is not an object")
    for name, kind in _FIELDS.items():
        value = data.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise AssertionRefused(f"field {name} missing or of the wrong type", _peek(payload))
    if data["role"] not in ROLES or not _RID.fullmatch(data["rid"]) or not data["nonce"]:
        raise AssertionRefused("bad role, request id or nonce", _peek(payload))
    if not data["sub"]:
        raise AssertionRefused("no subject", _peek(payload))
    return data


def make_assertion(private_key: Any, claims: dict[str, Any]) -> str:
    """Sign ``claims`` as the proxy does (compact JSON, sorted keys): the header value.

    For tests and tools; ``private_key`` is an Ed25519 private key.
    """
    payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True)
                     .encode("utf-8"))
    return f"{payload}.{b64url(private_key.sign(payload.encode('ascii')))}"
