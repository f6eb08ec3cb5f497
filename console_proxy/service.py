"""The proxy assembled from its configuration: listener, policy, reloads.

:class:`ProxyService` builds every part, listens (TLS on TCP), fetches the
API's OpenAPI document (retried on the reload tick until it succeeds), and
reloads: the TLS files when they change (checked every ``reload_check_s``
on the injected clock) and, on :meth:`reload` (SIGHUP), the TLS files and the
OpenAPI document.  After a TLS reload, connections whose certificate is now
revoked or expired are closed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from console_proxy.apiclient import ApiClient, UpstreamError
from console_proxy.assertion import AssertionSigner, load_assertion_key
from console_proxy.config import ProxyConfig
from console_proxy.front import ProxySite
from console_proxy.policy import Policy, PolicyError
from console_proxy.proxy import Proxy
from console_proxy.ratelimit import RateLimiter
from console_proxy.reload import FileWatcher
from console_proxy.tlsfront import TlsFiles, TlsFront, TlsLoadError
from console_proxy.upstream import Upstream

log = Logger(namespace="console_proxy.service")

CRL_WARNING = timedelta(days=1)


class ProxyService:
    """One running proxy.  ``reactor`` does the I/O and the wall clock (assertion times,
    certificate expiry); ``clock`` drives rate limits and reload checks."""

    def __init__(self, config: ProxyConfig, reactor: Any, clock: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.signer = AssertionSigner(load_assertion_key(config.assertion_key), config.name,
                                      reactor.seconds)
        self.upstream = Upstream(reactor, config.upstream)
        self.api = ApiClient(self.upstream, self.signer)
        self.tls = TlsFront(TlsFiles(config.server_cert, config.server_key, config.client_ca,
                                     config.crl))
        self.proxy = Proxy(tls=self.tls, api=self.api, upstream=self.upstream,
                           signer=self.signer, seconds=reactor.seconds,
                           limiter=RateLimiter(config.rate_per_s, config.burst, clock.seconds))
        self.site = ProxySite(self.proxy, max_body=config.max_body_bytes, reactor=reactor)
        self.watcher = FileWatcher(self.tls.files.paths())
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self.port: Any = None
        self._warned_crl: datetime | None = None

    async def start(self) -> Any:
        """Listen and fetch the policy (a failure to fetch is retried); returns the port."""
        factory = TLSMemoryBIOFactory(self.tls, False, self.site)  # type: ignore[arg-type]
        listen = self.config.listen
        self.port = self.reactor.listenTCP(listen.port, factory, interface=listen.host)
        self._loop.start(self.config.reload_check_s, now=False)
        self.check_crl_expiry()
        await self.refresh_policy()
        return self.port

    async def stop(self) -> None:
        """Stop listening and checking; close idle upstream connections."""
        if self._loop.running:
            self._loop.stop()
        if self.port is not None:
            await self.port.stopListening()
        for channel in list(self.site.live):
            transport: Any = channel.transport
            transport.loseConnection()
        for pending in list(self.site.tls_refusals):
            await pending
        await self.upstream.close()

    async def refresh_policy(self) -> bool:
        """Fetch the OpenAPI document and use it; False (and the old policy kept) on error."""
        try:
            policy = Policy.from_openapi(await self.api.fetch_openapi())
        except (UpstreamError, PolicyError) as exc:
            log.error("cannot read the API's operations: {error}", error=str(exc))
            return False
        self.proxy.policy = policy
        log.info("policy loaded: {count} operations", count=len(policy.operations))
        return True

    def reload_tls(self) -> bool:
        """Reload the TLS files; on error keep the previous ones.  Drops invalidated peers."""
        try:
            self.tls.reload()
        except TlsLoadError as exc:
            log.error("TLS reload failed, keeping the previous files: {error}", error=str(exc))
            return False
        dropped = self.site.drop_invalid(self.reactor.seconds())
        log.info("TLS files reloaded ({revoked} revoked serials, {dropped} connections closed)",
                 revoked=len(self.tls.state.revoked), dropped=dropped)
        self.check_crl_expiry()
        return True

    def reload(self) -> Deferred[bool]:
        """SIGHUP: reload the TLS files and the OpenAPI document."""
        self.reload_tls()
        return Deferred.fromCoroutine(self.refresh_policy())

    def check_crl_expiry(self) -> None:
        """Warn (once per CRL) when the CRL's next-update is near or past."""
        next_update = self.tls.state.crl_next_update
        now = datetime.fromtimestamp(self.reactor.seconds(), UTC)
        if next_update is None or next_update - now > CRL_WARNING:
            return
        if self._warned_crl != next_update:
            self._warned_crl = next_update
            log.warn("the CRL's next-update is {next_update}: regenerate it with `mepl pki crl` "
                     "(an expired CRL refuses every admin)", next_update=next_update.isoformat())

    def tick(self) -> None:
        """Every check interval: reload changed TLS files, warn of a CRL running out, retry
        the policy if it never loaded."""
        if self.watcher.check():
            self.reload_tls()
        self.check_crl_expiry()
        if self.proxy.policy is None:
            Deferred.fromCoroutine(self.refresh_policy())
