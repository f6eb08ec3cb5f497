"""A real admin API for tests: embedded PostgreSQL, a real UNIX socket, real HTTP requests.

Assertions are signed here as the console proxy signs them (Ed25519 over the
base64url JSON payload, docs/admin-api.md), and every answer is validated
against the route table's schema for its status.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jsonschema import Draft202012Validator
from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from blobstore.pool import DatabasePool
from mepl.admin.assertion import b64url, make_assertion
from mepl.admin.config import AdminConfig
from mepl.admin.routes import find_route
from mepl.admin.server import AdminListener, build_admin
from mepl.app.approvals import ApprovalsConfig
from tests.support.pg import migrated_database

IMEIS = ("490154203237518", "356938035643809", "353918058450939", "357805023984942")
PROXY = "proxy-1"


class ShiftedClock:
    """The reactor, with ``seconds()`` moved by ``offset`` (to reach expiries without
    waiting); everything else is the reactor's."""

    def __init__(self) -> None:
        self.offset = 0.0

    def seconds(self) -> float:
        return float(reactor.seconds()) + self.offset  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


def fingerprint(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass
class Reply:
    status: int
    body: Any
    headers: Headers
    raw: bytes = b""


@dataclass
class Sink(Protocol):
    """Collects a streamed body as it arrives."""

    data: bytearray = field(default_factory=bytearray)
    waiters: list[tuple[bytes, Deferred[None]]] = field(default_factory=list)
    done: Deferred[None] = field(default_factory=Deferred)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for needle, d in list(self.waiters):
            if needle in self.data:
                self.waiters.remove((needle, d))
                d.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)

    def wait_for(self, needle: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if needle in self.data:
            d.callback(None)
        else:
            self.waiters.append((needle, d))
        return d

    def events(self) -> list[dict[str, str]]:
        out = []
        for block in bytes(self.data).decode().split("\n\n"):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if line.startswith(":") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key] = value.strip()
            if "event" in fields:
                out.append(fields)
        return out


class ApiWorld:
    """A migrated database, an admin API on a UNIX socket, and a signing proxy key."""

    def __init__(self, *, url: str | None = None, approvals: ApprovalsConfig | None = None,
                 key: Ed25519PrivateKey | None = None, keys: Any = None,
                 config: dict[str, Any] | None = None) -> None:
        self.url = url or migrated_database("adm")
        self.engine = create_engine(self.url)
        self.dir = Path(tempfile.mkdtemp(prefix="adm", dir="/tmp"))
        self.key = key or Ed25519PrivateKey.generate()
        pub = self.dir / "assertion.pub"
        pub.write_bytes(self.key.public_key().public_bytes(Encoding.PEM,
                                                           PublicFormat.SubjectPublicKeyInfo))
        self.config = AdminConfig(assertion_keys=(pub,), socket=self.dir / "admin" / "a.sock",
                                  **(config or {}))
        self.clock = ShiftedClock()
        self.pool = DatabasePool(self.engine, reactor, max_threads=3)
        self.api, self.hub, site = build_admin(
            self.config, runner=self.pool, reactor=self.clock,
            approvals=approvals or ApprovalsConfig(), region="GB", keys=keys)
        self.listener = AdminListener(self.config, site, reactor=reactor, state_dir=self.dir)
        self.agent = Agent.usingEndpointFactory(reactor, _Endpoints(self.config.socket))
        self.seen_routes: set[str] = set()

    def start(self) -> None:
        self.pool.start()
        self.listener.startService()

    @inlineCallbacks
    def stop(self) -> Any:
        yield self.listener.stopService()
        self.pool.stop()
        self.engine.dispose()

    # ------------------------------------------------------------ database
    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.scalar() if result.returns_rows else None

    def rows(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.begin() as conn:
            return list(conn.execute(text(statement), params).all())

    def add_devices(self, *imeis: str, group: str | None = None) -> None:
        for n, imei in enumerate(imeis):
            device = self.sql("INSERT INTO devices (imei, msisdn, state, public_key, key_id) "
                              "VALUES (:i, :m, 'provisioned', :k, 1) RETURNING id",
                              i=imei, m=f"+4477009001{n:02d}", k=os.urandom(32))
            if group:
                self.sql("INSERT INTO groups (name) VALUES (:g) ON CONFLICT DO NOTHING",
                         g=group)
                self.sql("INSERT INTO group_members (group_id, device_id) SELECT id, :d "
                         "FROM groups WHERE name = :g", d=device, g=group)

    # ------------------------------------------------------------ requests
    def assertion(self, method: str, target: str, body: bytes = b"", *, name: str = "alice",
                  role: str = "operator", **over: Any) -> str:
        claims = {"v": 1, "iss": PROXY, "sub": name,
                  "fp": "" if role == "proxy" else fingerprint(name), "role": role,
                  "rid": uuid.uuid4().hex, "iat": self.clock.seconds(),
                  "nonce": b64url(os.urandom(16)), "m": method, "p": target,
                  "bh": hashlib.sha256(body).hexdigest(), "src": "127.0.0.1:50000"}
        claims.update(over)
        return make_assertion(self.key, claims)

    @inlineCallbacks
    def request(self, method: str, target: str, body: Any = None, *, name: str = "alice",
                role: str = "operator", assertion: str | None = None,
                headers: dict[str, str] | None = None, raw_body: bytes | None = None,
                **over: Any) -> Any:
        data = raw_body if raw_body is not None else (
            b"" if body is None else json.dumps(body).encode())
        if assertion is None:
            assertion = self.assertion(method, target, data, name=name, role=role, **over)
        sent = Headers({"content-type": ["application/json"]})
        if assertion:
            sent.setRawHeaders("mepl-assertion", [assertion])
        for key, value in (headers or {}).items():
            sent.setRawHeaders(key, [value])
        producer = None
        if data:
            producer = FileBodyProducer(BytesIO(data))
        response = yield self.agent.request(method.encode(), b"http://admin" + target.encode(),
                                            sent, producer)
        raw = yield readBody(response)
        reply = Reply(response.code, json.loads(raw) if raw else None, response.headers, raw)
        self.check_schema(method, target, reply)
        return reply

    def check_schema(self, method: str, target: str, reply: Reply) -> None:
        found = find_route(method, target.split("?", 1)[0])
        if found is None:
            assert reply.status in (401, 404), reply.status
            return
        route = found[0]
        schema = route.responses.get(reply.status)
        assert schema is not None, f"{route.name} answered {reply.status}, not in its table"
        Draft202012Validator(schema).validate(reply.body)
        self.seen_routes.add(route.name)

    @inlineCallbacks
    def stream(self, target: str = "/v1/events", *, name: str = "alice",
               role: str = "viewer", last_event_id: str | None = None) -> Any:
        sent = Headers({"mepl-assertion": [self.assertion("GET", target, name=name,
                                                          role=role)]})
        if last_event_id:
            sent.setRawHeaders("last-event-id", [last_event_id])
        response = yield self.agent.request(b"GET", b"http://admin" + target.encode(), sent)
        sink = Sink()
        response.deliverBody(sink)
        return response, sink


class _Endpoints:
    def __init__(self, path: Path | None) -> None:
        self.path = str(path)

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(reactor, self.path)


def sleep(seconds: float) -> Deferred[None]:
    """Wait on the reactor (only for tests whose subject is real time across processes)."""
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d


__all__ = ["IMEIS", "ApiWorld", "Reply", "ShiftedClock", "sleep", "time"]
