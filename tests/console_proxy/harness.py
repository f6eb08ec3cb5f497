"""A real proxy on 127.0.0.1 (real TLS) in front of the verifying fake API, and clients."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, ssl
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from console_proxy.config import config_from_dict
from console_proxy.service import ProxyService
from console_proxy.upstream import BytesProducer, read_all
from tests.console_proxy.fake_api import FakeApi
from tests.console_proxy.pkihelp import Pki

R: Any = reactor


@implementer(IPolicyForHTTPS)
class _Identity:
    def __init__(self, ca: Path, cert: Path | None, key: Path | None) -> None:
        client = (ssl.PrivateCertificate.loadPEM(key.read_bytes() + cert.read_bytes())
                  if cert and key else None)
        self.options = ssl.optionsForClientTLS(
            "localhost", trustRoot=ssl.Certificate.loadPEM(ca.read_bytes()),
            clientCertificate=client)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self.options


class Client:
    """An admin's HTTPS client with a client certificate (or none)."""

    def __init__(self, case: TestCase, base: str, ca: Path, cert: Path | None,
                 key: Path | None, persistent: bool = False) -> None:
        self.pool = HTTPConnectionPool(R, persistent=persistent)
        self.agent = Agent(R, contextFactory=_Identity(ca, cert, key), pool=self.pool)
        self.base = base
        case.addCleanup(self.pool.closeCachedConnections)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> defer.Deferred[Any]:
        hdrs = Headers({k: [v] for k, v in (headers or {}).items()})
        d = self.agent.request(method.encode(), (self.base + path).encode(), hdrs,
                               BytesProducer(body) if body is not None else None)
        d.addTimeout(10, R)
        return d

    async def fetch(self, method: str, path: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        response = await self.request(method, path, body, headers)
        return response.code, response.headers, await read_all(response)


class Chunks(Protocol):
    """Collects a streamed body; ``wait_for(n)`` fires once n chunks arrived."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.waiters: list[tuple[int, defer.Deferred[None]]] = []
        self.lost: defer.Deferred[Any] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        for n, d in self.waiters[:]:
            if b"".join(self.chunks).count(b"\n\n") >= n:
                self.waiters.remove((n, d))
                d.callback(None)

    def wait_for(self, events: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.waiters.append((events, d))
        self.dataReceived(b"")
        d.addTimeout(10, R)
        return d

    def connectionLost(self, reason: Any = None) -> None:
        self.reason = reason
        self.lost.callback(None)


class ProxyHarness:
    """PKI + fake API on a UNIX socket + the proxy on 127.0.0.1:0."""

    def __init__(self, case: TestCase, **overrides: Any) -> None:
        self.case = case
        self.root = Path(tempfile.mkdtemp(prefix="mepl-proxy-"))
        case.addCleanup(shutil.rmtree, self.root, True)
        self.pki = Pki.create(self.root)
        self.server_cert, self.server_key = self.pki.server()
        self.socket = self.root / "admin.sock"
        self.api, self.api_port = FakeApi.listen(self.pki.dir, self.socket)
        case.addCleanup(self.api_port.stopListening)
        self.clock = Clock()
        proxy: dict[str, Any] = {
            "name": "proxy-test", "listen": "127.0.0.1:0",
            "server_cert": str(self.server_cert), "server_key": str(self.server_key),
            "client_ca": str(self.pki.ca), "crl": str(self.pki.crl),
            "assertion_key": str(self.pki.dir / "assertion.key"), "reload_check_s": 2.0}
        proxy.update(overrides.pop("proxy", {}))
        raw = {"proxy": proxy, "upstream": {"socket": str(self.socket)},
               "rate_limit": overrides.pop("rate_limit", {"rate_per_s": 5.0, "burst": 50})}
        self.config = config_from_dict(raw, self.root)
        self.service = ProxyService(self.config, R, self.clock)

    async def start(self) -> ProxyHarness:
        port = await self.service.start()
        async def stop() -> None:
            await self.service.stop()
            await self.api.settle()

        self.case.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))
        self.base = f"https://127.0.0.1:{port.getHost().port}"
        return self

    def client(self, name: str | None, role: str = "viewer", *, persistent: bool = False,
               pki: Pki | None = None, expired: bool = False) -> Client:
        if name is None:
            return Client(self.case, self.base, self.pki.ca, None, None)
        issuer = pki or self.pki
        cert, key = (issuer.expired_admin(name, role) if expired else issuer.admin(name, role))
        return Client(self.case, self.base, self.pki.ca, cert, key, persistent=persistent)
