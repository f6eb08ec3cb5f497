"""The HTTP send channel: :class:`sms_gateway.channel.OutboundChannel` over a gateway's API.

``submit()`` has the SMPP bind's contract: it fires with a
:class:`SubmitResult` holding one id per submitted part (Kannel: our own
per-part references, which come back in the receipts' ``ref``; Jasmin: the
id Jasmin returns, one per message since Jasmin splits itself), or fails
with :class:`SubmitError` (``temporary`` for HTTP 5xx, timeouts and
connection errors; permanent for 4xx and unexpected answers) or
:class:`MessageTooLongError` (nothing sent).  Parts of a Kannel message are
sent in order; a failure after the first part fails the whole submit (the
parts already accepted are logged).

After a temporary failure the channel reports ``is_up = False`` for
``down_after_failure_seconds`` so routing can prefer another link.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from zope.interface import implementer  # type: ignore[import-untyped]

from sms_gateway.addresses import mask_msisdn
from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.errors import MessageTooLongError, SubmitError
from sms_gateway.http import sendreq
from sms_gateway.http.config import HttpGatewayConfig

log = Logger()


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory (no cooperator, no global reactor)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause: the body is written at once."""

    def resumeProducing(self) -> None:  # noqa: N802
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802
        """Nothing to stop."""


class _BodyCollector(Protocol):
    """Collects a response body (at most ``limit`` octets are kept)."""

    def __init__(self, finished: Deferred[bytes], limit: int) -> None:
        self._finished = finished
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        """Keep the data while under the limit."""
        if self._size < self._limit:
            self._chunks.append(data[: self._limit - self._size])
        self._size += len(data)

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]  # noqa: N802
        """Fire with the body, or fail if the response was cut short."""
        if reason.check(ResponseDone, PotentialDataLoss):  # type: ignore[no-untyped-call]
            self._finished.callback(b"".join(self._chunks))
        else:
            self._finished.errback(reason)


def read_body(response: Any, limit: int = 64 * 1024) -> Deferred[bytes]:
    """The body of an Agent response (without ``readBody``'s deprecated transport path)."""
    finished: Deferred[bytes] = Deferred()
    response.deliverBody(_BodyCollector(finished, limit))
    return finished


class HttpSendChannel:
    """Sends SMS through Kannel's ``sendsms`` or Jasmin's ``/send``."""

    def __init__(self, config: HttpGatewayConfig, *, reactor: Any,
                 agent: IAgent | None = None,
                 new_reference: Callable[[], str] | None = None,
                 concat_reference: Callable[[], int] | None = None) -> None:
        if not config.can_send or config.format not in ("kannel", "jasmin"):
            raise ValueError(f"gateway {config.name!r} has no Kannel/Jasmin send_url")
        self._config = config
        self._clock: Any = reactor
        self._pool: Any = None
        if agent is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
            self._agent: Any = Agent(reactor, pool=self._pool)  # type: ignore[no-untyped-call]
        else:
            self._agent = agent
        self._new_reference = new_reference or (lambda: uuid.uuid4().hex)
        self._concat_reference = concat_reference or (lambda: secrets.randbelow(256))
        self._down_until = 0.0

    @property
    def name(self) -> str:
        """The configured gateway name."""
        return self._config.name

    @property
    def is_up(self) -> bool:
        """False for a while after a temporary failure, else True."""
        return bool(self._clock.seconds() >= self._down_until)

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections (when the channel made its own Agent)."""
        if self._pool is None:
            return succeed(None)
        d: Deferred[None] = self._pool.closeCachedConnections()
        return d

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        """Send ``message``; fires with one id per part or fails with SubmitError."""
        try:
            if self._config.format == "jasmin":
                body = sendreq.jasmin_send_form(self._config, message)
                return Deferred.fromCoroutine(self._submit_jasmin(message, body))
            parts = sendreq.segment(message, max_parts=self._config.max_parts,
                                    reference=self._concat_reference())
        except (SubmitError, MessageTooLongError) as exc:
            return fail(exc)
        return Deferred.fromCoroutine(self._submit_kannel(message, parts))

    async def _submit_kannel(self, message: OutboundMessage,
                             parts: list[sendreq.HttpPart]) -> SubmitResult:
        ids: list[str] = []
        for part in parts:
            ref = self._new_reference()
            url = sendreq.kannel_sendsms_url(self._config, message, part, ref)
            code, body = await self._fetch(b"GET", url, None)
            try:
                sendreq.parse_kannel_response(code, body, self.name)
            except SubmitError:
                if ids:
                    log.warn("{gateway}: part {n} of {total} to {to} refused after {sent} "
                             "were accepted", gateway=self.name, n=len(ids) + 1,
                             total=len(parts), to=mask_msisdn(message.destination),
                             sent=len(ids))
                raise
            ids.append(ref)
        return self._succeeded(message, ids)

    async def _submit_jasmin(self, message: OutboundMessage, body: bytes) -> SubmitResult:
        assert self._config.send_url is not None
        code, answer = await self._fetch(b"POST", self._config.send_url, body)
        return self._succeeded(message, [sendreq.parse_jasmin_response(code, answer,
                                                                       self.name)])

    def _succeeded(self, message: OutboundMessage, ids: list[str]) -> SubmitResult:
        self._down_until = 0.0
        log.info("{gateway}: submitted {parts} part(s) to {to} (reference {reference})",
                 gateway=self.name, parts=len(ids), to=mask_msisdn(message.destination),
                 reference=message.reference)
        return SubmitResult(self.name, tuple(ids))

    async def _fetch(self, method: bytes, url: str, body: bytes | None) -> tuple[int, bytes]:
        headers = Headers({b"user-agent": [b"mepl-sms-gateway"]})
        producer = None
        if body is not None:
            headers.addRawHeader(b"content-type", b"application/x-www-form-urlencoded")
            producer = _BytesProducer(body)
        timeout = self._config.send_timeout_seconds
        try:
            request = self._agent.request(method, url.encode("ascii"), headers, producer)
            response = await request.addTimeout(timeout, self._clock)
            content = await read_body(response).addTimeout(timeout, self._clock)
        except Exception as exc:  # connection refused, reset, timeout, DNS...
            self._down_until = self._clock.seconds() + self._config.down_after_failure_seconds
            raise SubmitError(f"{self.name}: request failed: {type(exc).__name__}",
                              temporary=True, link=self.name) from None
        if response.code >= 500:
            self._down_until = self._clock.seconds() + self._config.down_after_failure_seconds
        return int(response.code), content
