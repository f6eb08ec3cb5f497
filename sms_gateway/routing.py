"""Choosing a channel for a destination: prefix routes, country/carrier routes, failover.

Pure apart from the channels' ``is_up``.  The most specific matching route
comes first (longest prefix, then country and carrier, then country, then
the catch-all); every matching route's links follow in order, so a down
link falls back to the next one and, at last, to less specific routes.
Works over any :class:`sms_gateway.channel.OutboundChannel` (SMPP binds, HTTP
send channels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import phonenumbers
from phonenumbers import carrier as pn_carrier
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from sms_gateway.channel import OutboundChannel, OutboundMessage, SubmitResult
from sms_gateway.errors import ChannelUnavailableError, NoRouteError


@dataclass(frozen=True)
class Route:
    """Destinations matching ``prefix`` or ``country``/``carrier`` go to ``links``.

    ``links`` are tried in order (later ones are fallbacks).  ``country`` is
    ISO 3166 alpha-2 (``"GB"``); ``carrier`` the phonenumbers carrier name
    (``"Vodafone"``, case-insensitive).  Neither prefix nor country: catch-all.
    """

    links: tuple[str, ...]
    prefix: str | None = None
    country: str | None = None
    carrier: str | None = None

    def __post_init__(self) -> None:
        if not self.links:
            raise ValueError("a route needs at least one link")
        if self.prefix is not None and not self.prefix.lstrip("+").isdigit():
            raise ValueError("route prefix must be digits, optionally after '+'")
        if self.carrier is not None and self.country is None:
            raise ValueError("a carrier route needs a country")
        if self.country is not None and (len(self.country) != 2 or not self.country.isalpha()):
            raise ValueError("route country must be an ISO 3166 two-letter code")

    def specificity(self) -> tuple[int, int]:
        """Sort key: prefixes by length first, then carrier, country, catch-all."""
        if self.prefix is not None:
            return (3, len(self.prefix.lstrip("+")))
        if self.carrier is not None:
            return (2, 0)
        if self.country is not None:
            return (1, 0)
        return (0, 0)


def destination_facts(destination: str) -> tuple[str | None, str | None]:
    """``(country, carrier)`` of an E.164 number per phonenumbers, each None if unknown."""
    try:
        number = phonenumbers.parse(destination if destination.startswith("+")
                                    else "+" + destination)
    except phonenumbers.NumberParseException:
        return None, None
    region = phonenumbers.region_code_for_number(number)
    name = pn_carrier.name_for_number(number, "en") or None
    return region, name


class Router:
    """Pick a channel for each destination and submit through it, with failover."""

    def __init__(self, routes: Sequence[Route], channels: Mapping[str, OutboundChannel]) -> None:
        for route in routes:
            for name in route.links:
                if name not in channels:
                    raise ValueError(f"route refers to unknown link {name!r}")
        self.routes = sorted(routes, key=lambda r: r.specificity(), reverse=True)
        self.channels = dict(channels)
        self._needs_facts = any(r.country is not None for r in routes)

    def _matches(self, route: Route, digits: str, country: str | None,
                 carrier: str | None) -> bool:
        if route.prefix is not None:
            return digits.startswith(route.prefix.lstrip("+"))
        if route.country is not None:
            if country != route.country.upper():
                return False
            if route.carrier is not None:
                return carrier is not None and carrier.lower() == route.carrier.lower()
            return True
        return True

    def candidates(self, destination: str) -> list[OutboundChannel]:
        """Every channel that may carry ``destination``, best first (up or not)."""
        digits = destination.lstrip("+")
        country, carrier = destination_facts(destination) if self._needs_facts else (None, None)
        names: list[str] = []
        for route in self.routes:
            if self._matches(route, digits, country, carrier):
                names.extend(n for n in route.links if n not in names)
        return [self.channels[n] for n in names]

    def choose(self, destination: str, exclude: Sequence[str] = ()) -> OutboundChannel:
        """The best channel that is up now; raises NoRouteError."""
        found = self.candidates(destination)
        for channel in found:
            if channel.is_up and channel.name not in exclude:
                return channel
        if not found:
            raise NoRouteError("no route matches the destination")
        raise NoRouteError("every link for the destination is down: "
                           + ", ".join(c.name for c in found))

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        """Submit through the best channel that is up; on ChannelUnavailableError try the next."""
        tried: list[str] = []
        result: Deferred[SubmitResult] = Deferred()

        def attempt() -> None:
            try:
                channel = self.choose(message.destination, tried)
            except NoRouteError as exc:
                result.errback(exc)
                return
            tried.append(channel.name)
            d = channel.submit(message)
            d.addCallbacks(result.callback, failed)

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, ChannelUnavailableError):
                attempt()
            else:
                result.errback(failure)

        attempt()
        return result
