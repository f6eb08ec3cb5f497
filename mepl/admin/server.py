"""The admin API over HTTP: the twisted.web resource and its listener.

:class:`AdminResource` reads each request (its body capped), hands it to
:class:`~mepl.admin.api.AdminApi` and writes the JSON answer; ``GET
/v1/events`` becomes an :class:`~mepl.admin.events.EventStream` once the
request is authorised and audited.  :class:`AdminListener` listens on the
UNIX socket (directory 0750, socket 0660) or, when ``admin.listen`` is set,
on TCP with TLS and the proxy's client certificate required (signed by
``admin.client_ca`` and with OU ``proxy``, as ``mepl pki issue-proxy`` issues
it); never on the gateway or metrics port.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from blobstore.pool import InteractionRunner
from mepl.admin.api import AdminApi, Incoming, Outgoing, Refusal
from mepl.admin.assertion import AssertionVerifier, load_public_keys
from mepl.admin.config import AdminConfig
from mepl.admin.errors import ApiError
from mepl.admin.events import EventHub, EventStream, parse_last_event_id
from mepl.admin.handlers import HANDLERS, KeyRotator
from mepl.admin.routes import find_route
from mepl.app.approvals import ApprovalsConfig

log = Logger()


class AdminResource(Resource):
    """Every admin API request (a leaf: routing is the route table's)."""

    isLeaf = True  # noqa: N815 - Twisted API

    def __init__(self, api: AdminApi, config: AdminConfig, hub: EventHub) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.api = api
        self.config = config
        self.hub = hub

    def render(self, request: Request) -> Any:  # type: ignore[override]
        """Answer asynchronously (the audit row is written first)."""
        incoming = self._incoming(request)
        if isinstance(incoming, Outgoing):
            _write(request, incoming)
            return NOT_DONE_YET
        found = find_route(incoming.method, incoming.path)
        if found is not None and found[0].stream:
            self._stream(request, incoming)
        else:
            self.api.handle(incoming).addCallback(lambda out: _write(request, out))
        return NOT_DONE_YET

    def _incoming(self, request: Request) -> Incoming | Outgoing:
        content = request.content
        body = content.read(self.config.max_body_bytes + 1) if content is not None else b""
        if len(body) > self.config.max_body_bytes:
            error = ApiError("invalid_request", f"the body is over "
                             f"{self.config.max_body_bytes} bytes", field="body")
            return Outgoing(error.status, error.body())
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        peer = request.getClientAddress()
        host = getattr(peer, "host", None)
        source = f"{host}:{getattr(peer, 'port', '')}" if host else "unix"
        return Incoming(method=request.method.decode("ascii", "replace"),
                        target=request.uri.decode("ascii", "replace"), headers=headers,
                        body=body, peer=source)

    def _stream(self, request: Request, incoming: Incoming) -> None:
        api = self.api
        try:
            call = api.authorise(incoming)
        except Refusal as refusal:
            api.refuse(incoming, refusal).addCallback(lambda out: _write(request, out))
            return
        cursor = parse_last_event_id(incoming.headers.get("last-event-id"))
        handler = api.handlers[call.route.name]
        d = api.runner.run_interaction("admin events", api._txn, handler, call)

        def started(answer: Any) -> None:
            if request.finished or getattr(request, "_disconnected", False):
                return
            request.setHeader(b"x-request-id", call.identity.request_id.encode("ascii"))
            EventStream(request, runner=api.runner, clock=api.clock, hub=self.hub,
                        device_id=answer.body["device_id"], cursor=cursor,
                        keepalive_s=self.config.keepalive_s, poll_s=self.config.poll_s,
                        max_paused_s=self.config.max_paused_s).start()

        def failed(failure: Failure) -> None:
            result: Deferred[Any] = maybeDeferred(api._failed, failure, incoming, call)
            result.addCallback(lambda out: _write(request, out))

        d.addCallbacks(started, failed)


def _write(request: Request, out: Outgoing) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    body = out.encoded()
    request.setResponseCode(out.status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    for name, value in out.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    request.write(body)
    request.finish()


def build_admin(config: AdminConfig, *, runner: InteractionRunner, reactor: Any,
                approvals: ApprovalsConfig, region: str | None,
                keys: KeyRotator | None = None) -> tuple[AdminApi, EventHub, Site]:
    """The API, its event hub and the site serving it (the keys are read here)."""
    verifier = AssertionVerifier(load_public_keys(config.assertion_keys), clock=reactor,
                                 max_skew_s=config.max_skew_s)
    api = AdminApi(runner=runner, clock=reactor, verifier=verifier, handlers=HANDLERS,
                   approvals=approvals, region=region,
                   services={"keys": keys} if keys is not None else {})
    hub = EventHub()
    site = Site(AdminResource(api, config, hub), reactor=reactor)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return api, hub, site


PROXY_OU = "proxy"
"""The OU of the proxy's client certificate (``mepl pki issue-proxy``)."""


def _proxy_certificate_only(connection: Any, cert: crypto.X509, errno: int, depth: int,
                            ok: int) -> bool:
    """TLS verification on ``admin.listen``: the chain must verify, and the client
    certificate must be a proxy's (OU ``proxy``), not an admin's of the same CA."""
    if not ok or depth != 0:
        return bool(ok)
    units = cert.to_cryptography().subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)
    if [unit.value for unit in units] != [PROXY_OU]:
        log.warn("admin API refused a TLS client certificate that is not a proxy's: "
                 "{subject}", subject=cert.to_cryptography().subject.rfc4514_string())
        return False
    return True


class AdminListener(Service):
    """Listens for the admin API: the UNIX socket, or TCP with mutual TLS."""

    def __init__(self, config: AdminConfig, site: Site, *, reactor: Any,
                 state_dir: Path) -> None:
        self.config = config
        self.site = site
        self.reactor = reactor
        self.socket_path = config.socket_path(state_dir)
        self.port: Any = None

    def startService(self) -> None:  # noqa: N802 - Twisted API
        """Start listening (raises what the bind raises)."""
        super().startService()  # type: ignore[no-untyped-call]
        tcp = self.config.tcp
        if tcp is not None:
            self.port = self.reactor.listenSSL(tcp[1], self.site, self._tls(),
                                               interface=tcp[0])
            log.info("admin API listening on TLS {address}", address=self.config.listen)
            return
        directory = self.socket_path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.chmod(directory, 0o750)  # noqa: S103 - owner and group only, as documented
        if self.socket_path.is_socket():
            self.socket_path.unlink()  # left by a process that died
        self.port = self.reactor.listenUNIX(str(self.socket_path), self.site, mode=0o660)
        log.info("admin API listening on {path}", path=str(self.socket_path))

    def _tls(self) -> Any:
        config = self.config
        assert config.tls_cert and config.tls_key and config.client_ca
        key = config.tls_key.read_text()
        certificate = ssl.PrivateCertificate.loadPEM(config.tls_cert.read_text() + key)
        authority = ssl.Certificate.loadPEM(config.client_ca.read_bytes())
        options = certificate.options(authority)  # verify=True, requireCertificate=True
        context = options.getContext()
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
                           | SSL.VERIFY_CLIENT_ONCE, _proxy_certificate_only)
        return options

    def stopService(self) -> Any:  # noqa: N802 - Twisted API
        """Stop listening."""
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        if port is None:
            return None
        return port.stopListening()

    @property
    def address(self) -> Any:
        """Where it listens (after start)."""
        return self.port.getHost() if self.port is not None else None
