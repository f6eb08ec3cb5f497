"""A stand-in for the console proxy, for the client and mdm-console tests.

A real TLS server on 127.0.0.1 that requires and verifies client
certificates against a test admin CA (and a CRL), maps the certificate to
an admin (CN = name, OU = role) as the proxy does, and answers the
contract's routes (docs: /work/admin-contract.md, issue 10) with
contract-shaped JSON and errors; it records every request and streams
server-sent events, and can drop the stream to test resumption.  The test
PKI is built here with ``cryptography`` (not with console_proxy.pki).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSPHRASE = "correct horse battery staple"
ORG = "Test Fleet"


@dataclass
class Issued:
    """A certificate, its key, and files holding them."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path
    key_file: Path

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(cn: str, ou: str | None = None, org: str = ORG) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _write(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey,
           cert: x509.Certificate) -> Issued:
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Issued(key, cert, cert_file, key_file)


class TestPki:
    """A deployment CA, a foreign CA, the proxy's server certificate and admins' identities."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.now = datetime.now(UTC)
        self.ca = self._ca("Test Fleet admin CA", "ca")
        self.foreign_ca = self._ca("Someone else's CA", "foreign-ca")
        self.server = self.issue("localhost", stem="server", server=True)
        self.revoked: list[x509.Certificate] = []

    def _ca(self, cn: str, stem: str) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(self.now - timedelta(days=1))
                .not_valid_after(self.now + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return _write(self.dir, stem, key, cert)

    def issue(self, cn: str, role: str | None = None, *, stem: str | None = None,
              server: bool = False, ca: Issued | None = None,
              not_before: datetime | None = None, not_after: datetime | None = None) -> Issued:
        issuer = ca or self.ca
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(cn, role))
                   .issuer_name(issuer.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before or self.now - timedelta(hours=1))
                   .not_valid_after(not_after or self.now + timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(issuer.key, hashes.SHA256())
        return _write(self.dir, stem or cn, key, cert)

    def pkcs12(self, issued: Issued, passphrase: str = PASSPHRASE) -> Path:
        path = self.dir / f"{issued.cert_file.stem}.p12"
        path.write_bytes(pkcs12.serialize_key_and_certificates(
            issued.cert_file.stem.encode(), issued.key, issued.cert, [self.ca.cert],
            serialization.BestAvailableEncryption(passphrase.encode())))
        return path

    def revoke(self, issued: Issued) -> None:
        self.revoked.append(issued.cert)

    def crl_file(self) -> Path:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca.cert.subject)
                   .last_update(self.now - timedelta(hours=1))
                   .next_update(self.now + timedelta(days=1)))
        for cert in self.revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(self.now - timedelta(minutes=5)).build())
        path = self.dir / "ca.crl"
        path.write_bytes(builder.sign(self.ca.key, hashes.SHA256())
                         .public_bytes(serialization.Encoding.PEM))
        return path


@dataclass
class Recorded:
    """One request the fake proxy received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    admin: str
    role: str

    @property
    def target(self) -> str:
        return self.path + (("?" + "&".join(f"{k}={v[0]}" for k, v in self.query.items()))
                            if self.query else "")


DEVICES = [
    {"id": 1, "imei": "356938035643809", "imsi": "234150999999999", "msisdn": "+447700900123",
     "state": "active", "key_id": 7, "groups": ["north"], "last_seen_at":
     "2026-05-01T10:00:00.123456+00:00", "created_at": "2026-04-01T09:00:00+00:00",
     "identity_history": [{"kind": "imsi", "old": "234150888888888", "new": "234150999999999",
                           "changed_at": "2026-04-20T08:00:00+00:00", "source": "reply"}]},
    {"id": 2, "imei": "490154203237518", "imsi": None, "msisdn": "+447700900456",
     "state": "lost", "key_id": 7, "groups": [], "last_seen_at": None,
     "created_at": "2026-04-02T09:00:00+00:00"},
]


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def find_device(identifier: str) -> dict[str, Any] | None:
    wanted = _digits(identifier)
    for device in DEVICES:
        for value in (device["imei"], device["imsi"], device["msisdn"]):
            if value and wanted and _digits(value).endswith(wanted.lstrip("0")):
                return device
    return None


def error(status: int, code: str, message: str, hint: str, **extra: Any) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message, "hint": hint, **extra}}


ROLE_ORDER = {"viewer": 0, "operator": 1, "admin": 2}


@dataclass
class FakeApi:
    """The routes' answers, the recorded requests and the event feed."""

    requests: list[Recorded] = field(default_factory=list)
    overrides: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    drop_stream_after: int | None = None
    stream_connections: int = 0
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closing: bool = False

    def add_event(self, event_id: str, kind: str, data: dict[str, Any]) -> None:
        with self.cond:
            self.events.append((event_id, kind, data))
            self.cond.notify_all()

    def of(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def answer(self, req: Recorded) -> tuple[int, Any]:
        key = (req.method, req.path)
        if key in self.overrides:
            return self.overrides[key]
        role = ROLE_ORDER.get(req.role, -1)
        parts = [unquote(p) for p in req.path.strip("/").split("/")]
        q = {k: v[0] for k, v in req.query.items()}
        m = req.method
        if parts[:1] != ["v1"]:
            return error(404, "not_found", f"no route {req.path}", "see /v1/openapi.json")
        rest = parts[1:]
        if m == "GET" and rest == ["whoami"]:
            return 200, {"name": req.admin, "role": req.role, "fingerprint": req.headers.get(
                "x-test-fingerprint", "")}
        if m == "GET" and rest == ["devices"]:
            items = [d for d in DEVICES if (not q.get("state") or d["state"] == q["state"])
                     and (not q.get("group") or q["group"] in d["groups"])]
            return 200, {"items": items, "next": "c2" if q.get("limit") == "1" else None}
        if rest[:1] == ["devices"] and len(rest) >= 2:
            device = find_device(rest[1])
            if device is None:
                return error(404, "not_found", f"no device matches {rest[1]!r}",
                             "check the IMEI, IMSI or phone number")
            if m == "GET" and len(rest) == 2:
                return 200, device
            if m == "GET" and rest[2:] == ["messages"]:
                return 200, {"items": MESSAGES, "next": None}
        if m == "POST" and rest == ["commands"]:
            return self._send(req, role)
        if m == "GET" and rest == ["commands"]:
            return 200, {"items": [COMMAND], "next": None}
        if m == "GET" and rest[:1] == ["commands"] and len(rest) == 2:
            if rest[1] != "42":
                return error(404, "not_found", f"no command {rest[1]}", "list commands")
            return 200, {"command": COMMAND, "imei": DEVICES[0]["imei"], "history": HISTORY}
        if m == "POST" and rest[:1] == ["commands"] and rest[2:] == ["cancel"]:
            if role < 1:
                return error(403, "forbidden", "role viewer may not cancel commands",
                             "ask an operator or an admin")
            if rest[1] != "42":
                return error(409, "conflict", f"command {rest[1]} was already sent",
                             "a sent command cannot be withdrawn")
            return 200, {"cancelled": {"command_id": 42, "opcode": "lock",
                                       "imei": DEVICES[0]["imei"]}}
        if m == "GET" and rest == ["fanouts", "9"]:
            return 200, {"id": 9, "total": 10, "done": 7, "failed": 1,
                         "states": {"done": 6, "failed": 1, "queued": 2, "delivered": 1}}
        if m == "GET" and rest == ["alerts"]:
            return 200, {"items": ALERTS, "next": None}
        if m == "GET" and rest == ["pdus"]:
            if not q.get("link") and not q.get("message"):
                return error(400, "invalid_request", "give a link or a message",
                             "add link or message", field="link")
            if q.get("link") == "carier-a":
                return 200, {"link": "carier-a", "since": "2026-05-01T09:00:00+00:00",
                             "until": "2026-05-01T09:10:00+00:00", "rows_read": 0,
                             "items": [], "next": None, "other_links": ["carrier-a"]}
            return 200, {"link": "carrier-a", "since": "2026-05-01T09:00:00+00:00",
                         "until": "2026-05-01T09:10:00+00:00", "rows_read": 2,
                         "items": PDUS, "next": "1746090000000000.7.1"}
        if m == "GET" and rest == ["approvals"]:
            items = [a for a in self.approvals.values()
                     if not q.get("status") or a["status"] == q["status"]]
            return 200, {"items": items, "next": None}
        if m == "GET" and rest[:1] == ["approvals"] and len(rest) == 2:
            if rest[1] not in self.approvals:
                return error(404, "not_found", f"no approval {rest[1]}", "approvals list")
            return 200, {"approval": self.approvals[rest[1]]}
        if m == "POST" and rest[:1] == ["approvals"] and len(rest) == 3:
            return self._decide(req, role, rest[1], rest[2])
        if m == "GET" and rest == ["audit"]:
            if role < 2:
                return error(403, "forbidden", f"role {req.role} may not read the audit",
                             "ask an admin")
            return 200, {"items": AUDIT, "next": None}
        return error(404, "not_found", f"no route {m} {req.path}", "see /v1/openapi.json")

    def _send(self, req: Recorded, role: int) -> tuple[int, Any]:
        body = req.body if isinstance(req.body, dict) else {}
        command, target = body.get("command"), body.get("target") or {}
        if role < 1:
            return error(403, "forbidden", f"role {req.role} may not send {command}",
                         "ask an operator or an admin")
        if command == "wipe" and role < 2:
            return error(403, "forbidden", f"role {req.role} may not send wipe",
                         "ask an admin")
        if "device" in target and find_device(str(target["device"])) is None:
            return error(404, "not_found", f"no device matches {target['device']!r}",
                         "check the IMEI, IMSI or phone number", field="target")
        if command == "wipe" or (command == "lock" and "device" not in target):
            approval_id = f"ap{len(self.approvals) + 1}"
            approval = {"id": approval_id, "action": "command.wipe" if command == "wipe"
                        else "command.lock.group" if "group" in target else
                        "command.lock.fleet", "request": body,
                        "requested_by": {"name": req.admin, "fingerprint": "ff"},
                        "requested_at": "2026-05-01T10:00:00+00:00",
                        "expires_at": "2026-05-01T11:00:00+00:00", "status": "pending",
                        "decided_by": None, "decided_at": None, "result": None}
            self.approvals[approval_id] = approval
            return 202, {"approval": approval}
        fan = "device" not in target
        return 201, {"queued": {"command": command, "target": target, "count": 3 if fan else 1,
                                "command_id": None if fan else 42,
                                "fanout_id": 9 if fan else None}}

    def _decide(self, req: Recorded, role: int, approval_id: str,
                verb: str) -> tuple[int, Any]:
        if role < 2:
            return error(403, "forbidden", f"role {req.role} may not {verb} approvals",
                         "ask an admin")
        approval = self.approvals.get(approval_id)
        if approval is None:
            return error(404, "not_found", f"no approval {approval_id}", "approvals list")
        if approval["requested_by"]["name"] == req.admin:
            return error(409, "conflict", "you requested this yourself: a different admin "
                         "must approve it", "ask another admin to approve it")
        approval = {**approval, "status": "approved" if verb == "approve" else "rejected",
                    "decided_by": {"name": req.admin, "fingerprint": "ee"},
                    "decided_at": "2026-05-01T10:05:00+00:00"}
        if verb == "approve":
            approval["result"] = {"queued": {
                "command": approval["request"]["command"], "target": approval["request"]["target"],
                "count": 3, "command_id": None, "fanout_id": 9}}
        self.approvals[approval_id] = approval
        return 200, {"approval": approval}


MESSAGES = [
    {"id": 12, "at": "2026-05-01T10:00:05.5+00:00", "direction": "in", "channel": "smpp",
     "kind": "reply", "command_id": 42, "summary": "reply to lock: ok", "verdict": "verified",
     "details": {"status": "ok"}, "octets": 96, "sha256": "ab"},
    {"id": 11, "at": "2026-05-01T10:00:01+00:00", "direction": "out", "channel": "smpp",
     "kind": "command", "command_id": 42, "summary": "lock emergency_dialer=yes",
     "verdict": "signed", "details": {"receipt": "delivered"}, "octets": 120, "sha256": "cd"},
]
COMMAND = {"id": 42, "device_id": 1, "opcode": "lock",
           "arguments": {}, "state": "done", "priority": 0, "attempts": 1,
           "requested_by": "alice", "created_at": "2026-05-01T10:00:00+00:00",
           "not_after": "2026-05-02T10:00:00+00:00", "result": {"status": "ok"},
           "last_error": None}
HISTORY = [
    {"at": "2026-05-01T10:00:00+00:00", "from": None, "to": "queued", "event": "queued",
     "actor": "alice", "details": {}},
    {"at": "2026-05-01T10:00:01+00:00", "from": "queued", "to": "sent", "event": "submitted",
     "actor": "dispatcher", "details": {"message_id": "m1"}},
    {"at": "2026-05-01T10:00:05+00:00", "from": "sent", "to": "done", "event": "replied",
     "actor": "worker", "details": {}},
]
ALERTS = [{"id": 5, "imei": "356938035643809", "kind": "sim_swap",
           "at": "2026-05-01T09:00:00+00:00", "details": {"old_imsi": "234150888888888"}}]
PDUS = [{"cursor": "1746090000000000.7.0", "at": "2026-05-01T09:00:00+00:00",
         "direction": "out", "link": "carrier-a", "message_id": 7, "command": "submit_sm",
         "sequence": 12, "status": "0x00000000 ESME_ROK (no error)", "reference": "cmd-42",
         "smsc_message_id": None, "receipt_for": None, "source": "447700900000",
         "destination": "447700900123", "octets": 151, "note": None, "hex": "00"},
        {"cursor": "1746090000000000.7.1", "at": "2026-05-01T09:00:00.012000+00:00",
         "direction": "in", "link": "carrier-a", "message_id": 8,
         "command": "submit_sm_resp", "sequence": 12,
         "status": "0x00000000 ESME_ROK (no error)", "reference": "cmd-42",
         "smsc_message_id": "0A1B2C", "receipt_for": None, "source": None,
         "destination": None, "octets": 25, "note": None, "hex": "00"}]
AUDIT = [{"id": 77, "at": "2026-05-01T10:00:00+00:00", "actor": "alice", "role": "admin",
          "action": "command.send", "target": "356938035643809",
          "details": {"outcome": "ok", "request_id": "r1", "status": 201}}]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self, body: Any) -> Recorded:
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        cert = x509.load_der_x509_certificate(der)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers["x-test-fingerprint"] = hashlib.sha256(der).hexdigest()
        req = Recorded(self.command, parts.path, parse_qs(parts.query), headers, body,
                       str(cn), str(ou[0].value) if ou else "")
        self.server.api.requests.append(req)
        return req

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        req = self._record(None)
        if req.path == "/v1/events":
            self._stream(req)
            return
        self._reply(*self.server.api.answer(req))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        req = self._record(body)
        self._reply(*self.server.api.answer(req))

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, req: Recorded) -> None:
        api = self.server.api
        if ("GET", "/v1/events") in api.overrides:
            self._reply(*api.overrides[("GET", "/v1/events")])
            return
        with api.cond:
            api.stream_connections += 1
            connection = api.stream_connections
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        self.end_headers()
        self._chunk(": keep-alive\n\n")
        last = req.headers.get("last-event-id")
        ids = [e[0] for e in api.events]
        position = ids.index(last) + 1 if last in ids else 0
        sent = 0
        while True:
            with api.cond:
                while position >= len(api.events) and not api.closing:
                    api.cond.wait()
                if api.closing:
                    return
                event_id, kind, data = api.events[position]
            self._chunk(f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
            position += 1
            sent += 1
            if connection == 1 and api.drop_stream_after is not None and \
                    sent >= api.drop_stream_after:
                self.close_connection = True
                return  # no last chunk: the connection just drops


class FakeProxy(ThreadingHTTPServer):
    """The TLS server: client certificate required, verified against the test CA and CRL."""

    daemon_threads = True

    def __init__(self, pki: TestPki, api: FakeApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(pki.server.cert_file, pki.server.key_file)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(pki.ca.cert_file))
        context.load_verify_locations(cafile=str(pki.crl_file()))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self.context = context
        self.api = api
        self.refusals: list[str] = []
        self.handshakes = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.refusals.append(str(getattr(exc, "reason", exc)))
            return
        self.handshakes += 1
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path)


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def proxy_factory(pki: TestPki, fake_api: FakeApi) -> Iterator[Callable[[], FakeProxy]]:
    servers: list[FakeProxy] = []

    def start() -> FakeProxy:
        server = FakeProxy(pki, fake_api)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return server

    yield start
    with fake_api.cond:
        fake_api.closing = True
        fake_api.cond.notify_all()
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(proxy_factory: Callable[[], FakeProxy]) -> FakeProxy:
    return proxy_factory()
