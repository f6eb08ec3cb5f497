"""The HTTP gateway callbacks: the whole handler, form and JSON bodies, query and headers.

Contract (:class:`sms_gateway.http.handler.CallbackHandler`): whatever an
authenticated or unauthenticated client sends, the answer is decided at
once and is never a 500 (a 500 means a parser bug, and the gateway retries
it for ever); every callback acknowledged as stored (200) parses again from
the bytes stored for it (the recovery path after a restart) into the same
event, and the MO part row the inbound worker stores from it holds no NUL in
a text column; stored rows hold no credentials.  The request is what twisted.web
can hand over: a target without spaces or line breaks, latin-1 header
values, any body.  Most inputs carry the gateway's valid credentials (for
JSON, a valid HMAC of the fuzzed body) so that the parsers are reached.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, instrumented, run

with instrumented(__name__ == "__main__"):
    from prometheus_client import CollectorRegistry
    from twisted.internet.defer import Deferred, succeed

    from mepl.runtime.inbound_rows import part_row
    from sms_gateway.events import DeliveryReceipt, InboundMessage
    from sms_gateway.http import (
        CallbackHandler,
        HttpConfig,
        HttpGatewayConfig,
        HttpMetrics,
        RawCallback,
        StoredCallback,
    )
    from sms_gateway.http.auth import sign_body
    from sms_gateway.http.callback import CallbackRequest

TARGET = "http_callback"
TOKEN = "kannel-token-0123456789"
USER, PASSWORD = "jasmin", "jasmin-password-xyz"
SECRET = "json-hmac-secret-0123456789abcdef"
NOW = 1_767_225_600.0
GATEWAYS = ("kannel1", "jasmin1", "json1", "nosuch")
ENDPOINTS = ("inbound", "receipt", "inbound", "receipt", "other")
METHODS = ("GET", "POST", "POST", "PUT")
HEADER_NAMES = ("content-type", "x-kannel-from", "x-kannel-to", "x-kannel-coding",
                "x-kannel-udh", "x-kannel-smsc", "x-kannel-time", "user-agent", "authorization",
                "x-mepl-token", "x-mepl-signature", "x-forwarded-for", "date")
CONTENT_TYPES = ("application/x-www-form-urlencoded", "application/json",
                 "text/plain; charset=UTF-16BE", "application/json; charset=utf-8", "",
                 "text/plain; charset=\"latin-1\"")
ALLOWED_STATUSES = {200, 400, 401, 403, 404, 405, 413, 429}
SECRETS = (TOKEN.encode(), PASSWORD.encode(), SECRET.encode(),
           base64.b64encode(f"{USER}:{PASSWORD}".encode()))


class Clock:
    """A fixed clock."""

    def seconds(self) -> float:
        """The fuzz run's now."""
        return NOW


class MemoryStore:
    """Stores every raw callback in a list; answers at once."""

    def __init__(self) -> None:
        self.raws: list[RawCallback] = []

    def store(self, raw: RawCallback) -> Deferred[StoredCallback]:
        """Keep ``raw``."""
        self.raws.append(raw)
        return succeed(StoredCallback(len(self.raws), False))


CONFIG = HttpConfig(port=0, gateways={
    "kannel1": HttpGatewayConfig(name="kannel1", format="kannel", auth="token", secret=TOKEN,
                                 default_region="GB", max_body_bytes=2048),
    "jasmin1": HttpGatewayConfig(name="jasmin1", format="jasmin", auth="basic", username=USER,
                                 password=PASSWORD, default_region="GB"),
    "json1": HttpGatewayConfig(name="json1", format="json", auth="hmac", secret=SECRET),
})


def _wire_safe(text: str) -> str:
    """What twisted.web passes on: no spaces or line breaks in a target, stripped values."""
    return text.translate({0x20: None, 0x0D: None, 0x0A: None})


def request_from(r: Reader) -> tuple[str, str, CallbackRequest]:
    """Gateway, endpoint and request the fuzz bytes describe."""
    gateway = r.pick(GATEWAYS)
    endpoint = r.pick(ENDPOINTS)
    method = r.pick(METHODS)
    creds = r.u8() % 8  # 0: none, 1: wrong, else right
    query = _wire_safe(r.text())
    headers: dict[str, str] = {}
    for _ in range(r.u8() % 5):
        name = r.pick(HEADER_NAMES)
        # twisted.web refuses a header value with NUL, CR or LF; it strips blanks.
        headers[name] = r.text(64).translate({0x00: None, 0x0D: None, 0x0A: None}).strip(" \t")
    if r.flag():
        headers["content-type"] = r.pick(CONTENT_TYPES)
    body = r.rest() if method != "GET" else b""
    target = f"/gateways/{gateway}/{endpoint}" + (f"?{query}" if query else "")
    if creds == 1:
        headers["authorization"] = "Basic " + base64.b64encode(b"jasmin:wrong").decode()
        headers["x-mepl-signature"] = f"t={int(NOW)},v1=00"
        target += "&token=wrong" if "?" in target else "?token=wrong"
    elif creds >= 2:
        if gateway == "kannel1":
            target += f"&token={TOKEN}" if "?" in target else f"?token={TOKEN}"
        elif gateway == "jasmin1":
            headers["authorization"] = "Basic " + base64.b64encode(
                f"{USER}:{PASSWORD}".encode()).decode()
        else:
            headers["x-mepl-signature"] = sign_body(SECRET, body, int(NOW))
            headers.setdefault("content-type", "application/json")
    return gateway, endpoint, CallbackRequest(method, target, headers, body, "127.0.0.1")


def one_input(data: bytes) -> None:
    """One request through a fresh handler; check the answer and what was stored."""
    gateway, endpoint, request = request_from(Reader(data))
    store = MemoryStore()
    handed: list[Any] = []
    handler = CallbackHandler(CONFIG, store, clock=Clock(),
                              metrics=HttpMetrics(CollectorRegistry()),
                              on_inbound=lambda event, _: handed.append(event),
                              on_receipt=lambda event, _: handed.append(event))
    replies: list[Any] = []
    handler.handle(gateway, endpoint, request).addBoth(replies.append)
    (reply,) = replies
    assert reply.status in ALLOWED_STATUSES, (reply.status, reply.body)
    for raw in store.raws:
        wire = raw.wire_bytes()
        if raw.kind == "malformed":
            assert raw.error is not None and "\0" not in raw.error
            raw.error.encode("utf-8")
            continue
        for secret in SECRETS:
            assert secret not in wire.split(b"\r\n\r\n", 1)[0], "a credential was stored"
        assert raw.external_id is None or "\0" not in raw.external_id
        (event,) = handed
        if isinstance(event, InboundMessage):  # the part row the inbound worker stores
            row = part_row(event, callback=1)
            assert "\0" not in (row.peer or ""), "NUL in a text column"
        again = handler.reparse(gateway, raw.kind, wire, raw.received_at)
        assert type(again) is type(event)
        if isinstance(event, InboundMessage):
            assert isinstance(again, InboundMessage)
            assert (again.sender, again.receiver, again.payload, again.udh, again.text) == (
                event.sender, event.receiver, event.payload, event.udh, event.text)
        else:
            assert isinstance(again, DeliveryReceipt) and isinstance(event, DeliveryReceipt)
            assert (again.message_id, again.status) == (event.message_id, event.status)


def _seed(gateway: int, endpoint: int, method: int, query: bytes, headers: list[tuple[int,
          bytes]], body: bytes = b"", content_type: int | None = None) -> bytes:
    out = bytes((gateway, endpoint, method, 2, len(query))) + query + bytes((len(headers),))
    for name, value in headers:
        out += bytes((name, len(value))) + value
    out += bytes((1, content_type)) if content_type is not None else b"\0"
    return out + body


def seeds() -> list[bytes]:
    """A valid callback of each kind (Kannel GET/POST MO and DLR, Jasmin MO and DLR, JSON)."""
    return [
        _seed(0, 0, 0, b"id=1&from=%2B447700900123&to=84433&text=M1%3AEgE&coding=0"
                       b"&udh=0605040b8423f0&time=1767225600", []),
        _seed(0, 0, 1, b"id=2", [(1, b"+447700900123"), (2, b"84433"), (4, b"%06%05%04%0B%84"
                                                                        b"%23%F0")],
              b"\x12\x01hello", 2),
        _seed(0, 1, 0, b"ref=77&type=2&answer=id%3A1+stat%3AEXPIRED+err%3A045&ts=1767225600",
              []),
        _seed(1, 0, 1, b"", [], b"id=abc&from=447700900123&to=84433&coding=8&content=%00h%00i"
                                 b"&binary=00680069", 0),
        _seed(1, 1, 1, b"", [], b"id=abc&message_status=DELIVRD&level=2&subdate=2601011200"
                                 b"&donedate=2601011201&err=000&text=hi", 0),
        _seed(2, 0, 1, b"", [], b'{"id":"e1","from":"+447700900123","to":"84433",'
                                 b'"payload_hex":"1201","udh_hex":"0605040b8423f0"}', 1),
        _seed(2, 1, 1, b"", [], b'{"id":"e2","message_id":"m1","status":"delivered",'
                                 b'"done_at":"2026-01-01T00:00:00Z"}', 1),
    ]


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
