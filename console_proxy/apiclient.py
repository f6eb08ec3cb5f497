"""The proxy's own calls to the admin API, as role ``proxy``.

``GET /v1/openapi.json`` (the policy, fetched at start and on reload) and
``POST /v1/proxy/audit`` (a refusal only the proxy saw: TLS, role, rate
limit).  Both carry an assertion whose subject is the proxy itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from twisted.logger import Logger
from twisted.web.http_headers import Headers

from console_proxy.assertion import HEADER, AssertionSigner, Subject
from console_proxy.upstream import Upstream, read_all

OPENAPI_PATH = "/v1/openapi.json"
AUDIT_PATH = "/v1/proxy/audit"

log = Logger(namespace="console_proxy.apiclient")


class UpstreamError(Exception):
    """The API could not be reached or answered with an error."""


@dataclass(frozen=True)
class Refusal:
    """A refusal the proxy saw, in the shape ``POST /v1/proxy/audit`` takes."""

    event: str
    reason: str
    source: str
    subject: str | None = None
    fingerprint: str | None = None
    method: str | None = None
    path: str | None = None


class ApiClient:
    """Signs and sends the proxy's own requests."""

    def __init__(self, upstream: Upstream, signer: AssertionSigner) -> None:
        self.upstream = upstream
        self.signer = signer

    async def _call(self, method: str, target: str, body: bytes, source: str) -> tuple[int, bytes]:
        signed = self.signer.sign(Subject(self.signer.issuer, "proxy"), method, target, body,
                                  source)
        headers = Headers({HEADER: [signed.header], "X-Request-Id": [signed.request_id]})
        if body:
            headers.setRawHeaders("Content-Type", ["application/json"])
        try:
            response = await self.upstream.request(method, target, headers, body)
            content = await read_all(response)
        except Exception as exc:
            raise UpstreamError(f"{method} {target}: {exc.__class__.__name__}: {exc}") from exc
        return response.code, content

    async def fetch_openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document."""
        code, content = await self._call("GET", OPENAPI_PATH, b"", "")
        if code != 200:
            raise UpstreamError(f"GET {OPENAPI_PATH} answered {code}")
        try:
            doc: dict[str, Any] = json.loads(content)
        except ValueError:
            raise UpstreamError(f"GET {OPENAPI_PATH} did not return JSON") from None
        return doc

    async def record_refusal(self, refusal: Refusal) -> bool:
        """Send ``refusal`` to the audit; True once the API confirmed the write."""
        body = json.dumps(asdict(refusal), separators=(",", ":")).encode("utf-8")
        try:
            code, _ = await self._call("POST", AUDIT_PATH, body, refusal.source)
        except UpstreamError as exc:
            log.error("audit of a refusal failed: {error}", error=str(exc),
                      event_name=refusal.event, reason=refusal.reason)
            return False
        if not 200 <= code < 300:
            log.error("audit of a refusal answered {status}", status=code,
                      event_name=refusal.event, reason=refusal.reason)
            return False
        return True
