"""HTTP side of the SMS gateway: Kannel, Jasmin and JSON callbacks; the HTTP send channel.

Public API (see docs/http-gateways.md):

- :class:`HttpConfig`, :class:`HttpGatewayConfig`: the ``[http]`` section;
- :class:`CallbackStore` (protocol), :class:`RawCallback`, :class:`StoredCallback`:
  the storage contract the composition root implements over the message store;
- :class:`CallbackHandler` and :func:`build_site`: the callback listener (with
  request deadlines against slow clients, and
  :class:`sms_gateway.http.ratelimit.AuthFailureLimiter` against credential guessing);
- :class:`BatchingCallbackStore`, :class:`MemoryCallbackStore`: group commit
  in front of a batch store, and an in-memory store;
- :class:`HttpSendChannel`: :class:`sms_gateway.channel.OutboundChannel` over
  Kannel's sendsms or Jasmin's send API.
"""

from __future__ import annotations

from sms_gateway.http.callback import (
    CallbackRequest,
    CallbackStore,
    MalformedCallbackError,
    ParsedCallback,
    RawCallback,
    StoredCallback,
    StoreUnavailableError,
)
from sms_gateway.http.config import HttpConfig, HttpGatewayConfig
from sms_gateway.http.handler import CallbackHandler, Reply
from sms_gateway.http.metrics import HttpMetrics
from sms_gateway.http.resource import build_site
from sms_gateway.http.send import HttpSendChannel
from sms_gateway.http.store import BatchingCallbackStore, MemoryCallbackStore

__all__ = [
    "BatchingCallbackStore",
    "CallbackHandler",
    "CallbackRequest",
    "CallbackStore",
    "HttpConfig",
    "HttpGatewayConfig",
    "HttpMetrics",
    "HttpSendChannel",
    "MalformedCallbackError",
    "MemoryCallbackStore",
    "ParsedCallback",
    "RawCallback",
    "Reply",
    "StoreUnavailableError",
    "StoredCallback",
    "build_site",
]
