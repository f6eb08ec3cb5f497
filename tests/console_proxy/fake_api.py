"""A stand-in admin API on a UNIX socket that VERIFIES the proxy's assertion per the contract.

It checks the Ed25519 signature under assertion.pub, v == 1, m/p/bh against the
request it actually got, |now - iat| <= 30 s, rid and nonce never seen before
and X-Request-Id == rid; a failure answers 401 and is recorded in
``rejected``.  Accepted requests are recorded in ``seen`` (the proxy's own
ones, role proxy) or ``forwarded`` (admins').  Routes: the OpenAPI document,
``POST /v1/proxy/audit`` (status settable), ``GET /v1/events`` (server-sent
events the test pushes), and an echo for everything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from twisted.internet import defer, reactor, task
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

DESTRUCTIVE = {"wipe": "admin", "rotate_key": "admin", "set_restrictions": "admin",
               "set_geofence": "admin", "set_trusted_numbers": "admin"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "MEPL admin API", "version": "1"},
    "paths": {
        "/v1/openapi.json": {"get": {"x-mepl-role": "viewer"}},
        "/v1/whoami": {"get": {"x-mepl-role": "viewer"}},
        "/v1/devices": {"get": {"x-mepl-role": "viewer"}, "post": {"x-mepl-role": "admin"}},
        "/v1/devices/retire": {"post": {"x-mepl-role": "admin"}},
        "/v1/devices/{identifier}": {"get": {"x-mepl-role": "viewer"}},
        "/v1/devices/{identifier}/retire": {"post": {"x-mepl-role": "admin"}},
        "/v1/commands": {
            "get": {"x-mepl-role": "viewer"},
            "post": {"x-mepl-role": "operator", "x-mepl-audit-action": "command.send",
                     "x-mepl-role-by-body": {"field": "command", "roles": DESTRUCTIVE}}},
        "/v1/commands/{id}/cancel": {"post": {"x-mepl-role": "operator"}},
        "/v1/events": {"get": {"x-mepl-role": "viewer"}},
        "/v1/audit": {"get": {"x-mepl-role": "admin"}},
        "/v1/proxy/audit": {"post": {"x-mepl-role": "proxy"}},
    },
}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Got:
    """One accepted request."""

    claims: dict[str, Any]
    method: str
    target: str
    body: bytes
    headers: dict[str, list[str]]


@dataclass
class FakeApi:
    """The stand-in API and what it saw."""

    public_key: ed25519.Ed25519PublicKey
    audit_status: int = 201
    max_skew_s: float = 30.0
    seen: list[Got] = field(default_factory=list)
    forwarded: list[Got] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    streams: list[Any] = field(default_factory=list)
    stream_closed: list[str] = field(default_factory=list)
    _rids: set[str] = field(default_factory=set)
    _nonces: set[str] = field(default_factory=set)
    _audit_waiters: list[defer.Deferred[dict[str, Any]]] = field(default_factory=list)
    _stream_waiters: list[defer.Deferred[Any]] = field(default_factory=list)
    factory: Any = None

    @classmethod
    def listen(cls, pki_dir: Path, socket: Path) -> tuple[FakeApi, Any]:
        key = load_pem_public_key((pki_dir / "assertion.pub").read_bytes())
        assert isinstance(key, ed25519.Ed25519PublicKey)
        api = cls(key)
        api.factory = WrappingFactory(Site(_Root(api)))
        port = reactor.listenUNIX(str(socket), api.factory)  # type: ignore[attr-defined]
        return api, port

    async def settle(self) -> None:
        """Wait (reactor turns, at most ~2 s) until no connection to the fake is open."""
        for _ in range(400):
            if not self.factory.protocols:
                return
            await task.deferLater(reactor, 0.005, lambda: None)

    def verify(self, request: Any, body: bytes) -> dict[str, Any] | str:
        header = request.getHeader(b"mepl-assertion")
        if not header:
            return "no assertion"
        payload, _, signature = header.decode("ascii").partition(".")
        try:
            self.public_key.verify(_unb64(signature), payload.encode("ascii"))
        except (InvalidSignature, ValueError):
            return "bad signature"
        claims: dict[str, Any] = json.loads(_unb64(payload))
        expected = json.dumps(claims, separators=(",", ":"), sort_keys=True,
                              ensure_ascii=False).encode("utf-8")
        if _unb64(payload) != expected:
            return "payload not compact sorted JSON"
        checks = [
            (claims.get("v") == 1, "version"),
            (claims.get("m") == request.method.decode(), "method"),
            (claims.get("p") == request.uri.decode(), "path"),
            (claims.get("bh") == hashlib.sha256(body).hexdigest(), "body hash"),
            (abs(time.time() - float(claims.get("iat", 0))) <= self.max_skew_s, "skew"),
            (claims.get("rid") not in self._rids, "replayed rid"),
            (claims.get("nonce") not in self._nonces, "replayed nonce"),
            (len(str(claims.get("rid"))) == 32, "rid format"),
            (len(_unb64(str(claims.get("nonce")))) == 16, "nonce size"),
            (request.getHeader(b"x-request-id") == str(claims.get("rid")).encode(), "x-request-id"),
            (set(claims) == {"v", "iss", "sub", "fp", "role", "rid", "iat", "nonce", "m", "p",
                             "bh", "src"}, "claim names"),
        ]
        for ok, what in checks:
            if not ok:
                return what
        self._rids.add(claims["rid"])
        self._nonces.add(claims["nonce"])
        return claims

    def next_audit(self) -> defer.Deferred[dict[str, Any]]:
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._audit_waiters.append(d)
        d.addTimeout(10, reactor)
        return d

    def next_stream(self) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self._stream_waiters.append(d)
        d.addTimeout(10, reactor)
        return d


def _json(request: Any, status: int, value: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value).encode()


class _Root(Resource):
    isLeaf = True  # noqa: N815

    def __init__(self, api: FakeApi) -> None:
        super().__init__()
        self.api = api

    def render(self, request: Any) -> Any:
        api = self.api
        body = request.content.read()
        claims = api.verify(request, body)
        if isinstance(claims, str):
            api.rejected.append(claims)
            return _json(request, 401, {"error": {"code": "unauthenticated", "message": "no",
                                                  "hint": "no"}})
        got = Got(claims, request.method.decode(), request.uri.decode(), body,
                  {k.decode().lower(): [x.decode() for x in v]
                   for k, v in request.requestHeaders.getAllRawHeaders()})
        path = request.path.decode()
        if claims["role"] == "proxy":
            api.seen.append(got)
            if path == "/v1/openapi.json":
                return _json(request, 200, OPENAPI)
            if path == "/v1/proxy/audit":
                record = json.loads(body)
                if api.audit_status < 300:
                    api.audits.append(record)
                for waiter in api._audit_waiters[:]:
                    api._audit_waiters.remove(waiter)
                    waiter.callback(record)
                return _json(request, api.audit_status, {"recorded": api.audit_status < 300})
            return _json(request, 403, {"error": {"code": "forbidden"}})
        api.forwarded.append(got)
        if path == "/v1/events":
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b": hello\n\n")
            api.streams.append(request)
            request.notifyFinish().addErrback(lambda _: api.stream_closed.append(claims["rid"]))
            for waiter in api._stream_waiters[:]:
                api._stream_waiters.remove(waiter)
                waiter.callback(request)
            return NOT_DONE_YET
        status = 201 if request.method == b"POST" else 200
        request.setHeader(b"x-upstream", b"yes")
        request.setHeader(b"keep-alive", b"timeout=5")
        return _json(request, status, {"claims": claims, "body": body.decode()})
