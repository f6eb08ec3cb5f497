"""The values that flow through the callback endpoints, and the store contract.

A request is reduced to a :class:`CallbackRequest` (plain data, no Twisted),
the pure parsers turn it into a :class:`ParsedCallback`, and the endpoint
hands a :class:`RawCallback` to the injected :class:`CallbackStore` before it
answers.  ``sms_gateway`` never imports the database layer: the composition
root adapts its message store to :class:`CallbackStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Literal, Protocol
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred

from sms_gateway.errors import RemoteError
from sms_gateway.events import DeliveryReceipt, InboundMessage

CallbackKind = Literal["mo", "dlr", "malformed"]
Endpoint = Literal["inbound", "receipt"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


class MalformedCallbackError(RemoteError):
    """A callback could not be parsed: a field is missing or has a bad value."""


class StoreUnavailableError(RemoteError):
    """The callback store could not commit the callback (the gateway must retry)."""


@dataclass(frozen=True)
class CallbackRequest:
    """One HTTP request as plain data: what the pure parsers see.

    ``headers`` has lower-case names.  ``target`` is the request target as
    received (path and query string).
    """

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    body: bytes = b""
    remote: str = ""

    @property
    def path(self) -> str:
        """The path without the query string."""
        return self.target.split("?", 1)[0]

    @cached_property
    def query(self) -> tuple[tuple[bytes, bytes], ...]:
        """Query parameters, percent-decoded to bytes (Kannel's %b is binary)."""
        if "?" not in self.target:
            return ()
        return parse_query_bytes(self.target.split("?", 1)[1].encode("latin-1", "replace"))

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def content_type_param(self, name: str) -> str | None:
        """A parameter of the Content-Type header (e.g. ``charset``), or None."""
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"')
        return None


def parse_query_bytes(raw: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """``a=1&b=%FF`` to ``((b"a", b"1"), (b"b", b"\\xff"))``: binary-safe, ``+`` is a space."""
    pairs: list[tuple[bytes, bytes]] = []
    for item in raw.split(b"&"):
        if not item:
            continue
        if b"+" in item:
            item = item.replace(b"+", b" ")
        key, _, value = item.partition(b"=")
        if b"%" in value:
            value = unquote_to_bytes(value)
        if b"%" in key:
            key = unquote_to_bytes(key)
        pairs.append((key, value))
    return tuple(pairs)


@dataclass(frozen=True)
class ParsedCallback:
    """A parser's result: the event and the gateway's id used to spot duplicates."""

    event: InboundMessage | DeliveryReceipt
    external_id: str | None


@dataclass(frozen=True)
class RawCallback:
    """What is stored for every authenticated callback, before it is acknowledged.

    ``kind`` is ``'mo'``, ``'dlr'`` or ``'malformed'`` (then ``error`` says
    why).  ``target`` has secrets (a ``token`` query value) redacted;
    ``headers`` holds only the relevant ones, never ``Authorization``.
    ``external_id`` is the gateway's id for this callback: the store treats a
    second callback with the same (gateway, kind, external_id) as a duplicate.
    """

    gateway: str
    kind: CallbackKind
    endpoint: Endpoint
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    remote: str
    received_at: datetime
    external_id: str | None = None
    error: str | None = None

    def wire_bytes(self) -> bytes:
        """The request as one BLOB, in HTTP/1.1 form: request line, kept headers, body.

        The request line carries the redacted target, so no secret is stored.
        """
        head = [f"{self.method} {self.target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace") + self.body


@dataclass(frozen=True)
class StoredCallback:
    """The store's answer: the message row id, and whether it was already there."""

    message_id: int
    duplicate: bool = False


class CallbackStore(Protocol):
    """Commits a raw callback; the Deferred fires only once it is durable."""

    def store(self, raw: RawCallback) -> Deferred[StoredCallback]:
        """Store ``raw``; fails (any exception) when the store is unavailable."""


def request_from_wire(wire: bytes, remote: str = "") -> CallbackRequest:
    """Rebuild the request a stored callback was parsed from (inverse of
    :meth:`RawCallback.wire_bytes`), so it can be parsed again after a restart.

    Raises :class:`MalformedCallbackError` when ``wire`` is not in that form.
    """
    head, sep, body = wire.partition(b"\r\n\r\n")
    if not sep:
        raise MalformedCallbackError("stored callback has no header/body separator")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise MalformedCallbackError("stored callback has no request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(": ")
        if not colon:
            raise MalformedCallbackError("stored callback has a malformed header line")
        headers[name.lower()] = value
    return CallbackRequest(method=parts[0], target=parts[1],
                           headers=MappingProxyType(headers), body=body, remote=remote)
