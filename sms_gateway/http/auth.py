"""Callback authentication: source allow-list, HMAC signature, HTTP basic, token.

All secret comparisons are constant-time (:func:`hmac.compare_digest`).
Failures are values (:class:`AuthFailure`) carrying the HTTP status (401 for
missing or wrong credentials, 403 for a source outside the allow-list) and a
short reason used as a metrics label; they never contain secrets.

The JSON format's signature header::

    X-Mepl-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>." + body>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from sms_gateway.http.callback import CallbackRequest
from sms_gateway.http.config import HttpGatewayConfig

SIGNATURE_HEADER = "x-mepl-signature"
TOKEN_HEADER = "x-mepl-token"  # noqa: S105 (a header name)
TOKEN_PARAM = "token"  # noqa: S105 (a parameter name)
_SECRET_NAMES = frozenset((b"token", b"password", b"pass", b"secret", b"key"))
_MAX_NAME_DECODINGS = 4
_MAX_TIMESTAMP_DIGITS = 12  # UNIX seconds until the year 33658
_KEPT_HEADERS = ("content-type", "content-length", "user-agent", "date", "x-forwarded-for",
                 SIGNATURE_HEADER)
_KANNEL_SECRETS = ("x-kannel-username", "x-kannel-password")


@dataclass(frozen=True)
class AuthFailure:
    """Why a callback was refused: HTTP status, metrics reason, text for the reply."""

    status: int
    reason: str
    message: str


def sign_body(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Mepl-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body,
                   hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class GatewayAuth:
    """The checks configured for one gateway, with its secrets prepared once."""

    def __init__(self, config: HttpGatewayConfig) -> None:
        self._config = config
        self._networks = tuple(ipaddress.ip_network(c, strict=False)
                               for c in config.allowed_sources)
        self._secret = config.secret.encode("utf-8")
        self._username = config.username.encode("utf-8")
        self._password = config.password.encode("utf-8")

    @property
    def needs_body(self) -> bool:
        """True when the credentials cover the body (HMAC)."""
        return self._config.auth == "hmac"

    def check_source(self, remote: str) -> AuthFailure | None:
        """Refuse (403) a peer outside ``allowed_sources`` (when one is configured)."""
        if not self._networks:
            return None
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return AuthFailure(403, "source", "source address not allowed")
        if any(address in network for network in self._networks):
            return None
        return AuthFailure(403, "source", "source address not allowed")

    def check(self, request: CallbackRequest, now: float) -> AuthFailure | None:
        """Check the request's credentials; None when they are good."""
        mode = self._config.auth
        if mode == "token":
            return self._check_token(request)
        if mode == "basic":
            return self._check_basic(request.headers)
        return self._check_signature(request, now)

    def _check_token(self, request: CallbackRequest) -> AuthFailure | None:
        presented = None
        for key, value in request.query:
            if key == TOKEN_PARAM.encode():
                presented = value
                break
        if presented is None:
            header = request.headers.get(TOKEN_HEADER)
            auth = request.headers.get("authorization", "")
            if header:
                presented = header.strip().encode("utf-8")
            elif auth[:7].lower() == "bearer ":
                presented = auth[7:].strip().encode("utf-8")
        if presented is None:
            return AuthFailure(401, "missing_credentials", "authentication required")
        if not hmac.compare_digest(presented, self._secret):
            return AuthFailure(401, "bad_credentials", "authentication failed")
        return None

    def _check_basic(self, headers: Mapping[str, str]) -> AuthFailure | None:
        auth = headers.get("authorization", "")
        if auth[:6].lower() != "basic ":
            return AuthFailure(401, "missing_credentials", "authentication required")
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return AuthFailure(401, "bad_credentials", "authentication failed")
        user, _, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._username)
        password_ok = hmac.compare_digest(password, self._password)
        if not (user_ok and password_ok):
            return AuthFailure(401, "bad_credentials", "authentication failed")
        return None

    def _check_signature(self, request: CallbackRequest, now: float) -> AuthFailure | None:
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            return AuthFailure(401, "missing_credentials", "X-Mepl-Signature header required")
        timestamp: int | None = None
        macs: list[str] = []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                value = value.strip()
                # ASCII digits only: int() would take "+1", "1_0", Arabic-Indic digits, and
                # 400 digits that overflow a float below (a crash before authentication).
                ok = value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS
                timestamp = int(value) if ok else None
            elif key == "v1":
                macs.append(value.strip().lower())
        if timestamp is None or not macs:
            return AuthFailure(401, "bad_signature", "X-Mepl-Signature must be t=<unix>,v1=<hex>")
        if abs(now - timestamp) > self._config.replay_window_seconds:
            return AuthFailure(401, "stale_timestamp", "signature timestamp outside the window")
        expected = hmac.new(self._secret, f"{timestamp}.".encode("ascii") + request.body,
                            hashlib.sha256).hexdigest()
        matched = False
        for mac in macs:
            matched |= hmac.compare_digest(mac.encode("ascii", "replace"),
                                           expected.encode("ascii"))
        if not matched:
            return AuthFailure(401, "bad_signature", "signature does not match")
        return None


def is_secret_name(name: bytes) -> bool:
    """True when a query or form parameter ``name`` is a secret's, after percent-decoding.

    ``%74oken`` is ``token`` to every URL parser, so it is matched as ``token``;
    a name encoded several times, with ``+`` or spaces around it, or in any
    letter case is matched too.
    """
    for _ in range(_MAX_NAME_DECODINGS):
        if b"%" not in name and b"+" not in name:
            break
        name = unquote_to_bytes(name.replace(b"+", b" "))
    return name.strip().lower() in _SECRET_NAMES


def redact_form(form: bytes) -> bytes:
    """``a=1&token=x`` with every secret parameter's value replaced by ``REDACTED``.

    The other parameters are kept byte for byte (binary-safe, still encoded).
    """
    parts = form.split(b"&")
    changed = False
    for index, part in enumerate(parts):
        name, sep, _ = part.partition(b"=")
        if sep and is_secret_name(name):
            parts[index] = name + b"=REDACTED"
            changed = True
    return b"&".join(parts) if changed else form


def redact_target(target: str) -> str:
    """The request target with secret query values replaced by ``REDACTED``."""
    if "?" not in target:
        return target
    path, query = target.split("?", 1)
    return path + "?" + redact_form(query.encode("latin-1", "replace")).decode("latin-1")


def relevant_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The headers kept with a stored callback: never Authorization, cookies or tokens."""
    return tuple(sorted((name, value) for name, value in headers.items()
                        if name in _KEPT_HEADERS or (name.startswith("x-kannel-")
                                                     and name not in _KANNEL_SECRETS)))
