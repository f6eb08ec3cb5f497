"""Prometheus counters of the callback endpoints, on an injected registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter


class HttpMetrics:
    """Counters for callbacks by outcome, authentication failures, slow requests cut off
    (``phase`` ``headers`` or ``body``) and processing errors.

    ``gateway`` is the configured name; requests for unknown gateways are
    counted under ``gateway=""`` so a scanner cannot grow the label set.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.callbacks = Counter(
            "mepl_http_callbacks", "Gateway HTTP callbacks by outcome",
            ("gateway", "endpoint", "outcome"), registry=registry)
        self.auth_failures = Counter(
            "mepl_http_auth_failures", "Gateway HTTP callbacks refused by authentication",
            ("gateway", "reason"), registry=registry)
        self.connection_timeouts = Counter(
            "mepl_http_connection_timeouts",
            "Callback connections closed because a request's headers or body came too slowly",
            ("phase",), registry=registry)
        self.processing_failures = Counter(
            "mepl_http_processing_failures",
            "Stored callbacks whose hand-off to processing failed", ("gateway",),
            registry=registry)

        self._children: dict[tuple[str, str, str], Any] = {}

    def outcome(self, gateway: str, endpoint: str, outcome: str) -> None:
        """Count one callback with its final outcome."""
        key = (gateway, endpoint, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.callbacks.labels(gateway, endpoint, outcome)
        child.inc()
