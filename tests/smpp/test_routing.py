from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred

from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.errors import ChannelUnavailableError, NoRouteError, SubmitError
from sms_gateway.routing import Route, Router, destination_facts


@dataclass
class FakeChannel:
    name: str
    is_up: bool = True
    error: Exception | None = None
    sent: list[OutboundMessage] = field(default_factory=list)

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        if self.error is not None:
            return defer.fail(self.error)
        self.sent.append(message)
        return defer.succeed(SubmitResult(self.name, ("id",)))


def router(**channels: FakeChannel) -> Router:
    routes = [Route(("uk_prefix", "backup"), prefix="+447"),
              Route(("fr",), country="FR"),
              Route(("de_voda",), country="DE", carrier="Vodafone"),
              Route(("backup",))]
    return Router(routes, channels)


def chans(**down: bool) -> dict[str, FakeChannel]:
    names = ["uk_prefix", "fr", "de_voda", "backup"]
    return {n: FakeChannel(n, is_up=not down.get(n, False)) for n in names}


def test_longest_prefix_then_country_then_catch_all() -> None:
    r = router(**chans())
    assert r.choose("+447700900123").name == "uk_prefix"
    assert r.choose("+33612345678").name == "fr"
    assert r.choose("+12025550123").name == "backup"


def test_carrier_route_uses_phonenumbers_carrier_data() -> None:
    country, carrier = destination_facts("+491721234567")
    assert country == "DE" and carrier is not None and "vodafone" in carrier.lower()
    assert router(**chans()).choose("+491721234567").name == "de_voda"
    assert router(**chans()).choose("+491511234567").name == "backup"  # Telekom: no carrier route


def test_down_link_falls_back_to_the_next_one() -> None:
    r = router(**chans(uk_prefix=True))
    assert r.choose("+447700900123").name == "backup"
    assert r.choose("+33612345678").name == "fr"
    assert router(**chans(fr=True)).choose("+33612345678").name == "backup"


def test_no_link_up_raises_no_route() -> None:
    with pytest.raises(NoRouteError, match="down"):
        router(**chans(uk_prefix=True, backup=True)).choose("+447700900123")
    with pytest.raises(NoRouteError, match="no route"):
        Router([Route(("a",), prefix="33")], {"a": FakeChannel("a")}).choose("+44")


def test_route_to_unknown_link_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown link"):
        Router([Route(("nope",))], {})


def test_submit_fails_over_when_a_channel_turns_out_unavailable() -> None:
    channels = chans()
    channels["uk_prefix"].error = ChannelUnavailableError("stopping", link="uk_prefix")
    result = router(**channels).submit(OutboundMessage("+447700900123", b"x"))
    assert result.result.link == "backup"  # type: ignore[attr-defined]
    assert len(channels["backup"].sent) == 1


def test_submit_does_not_fail_over_after_the_peer_refused() -> None:
    channels = chans()
    channels["uk_prefix"].error = SubmitError("refused", temporary=False)
    failures: list[BaseException] = []
    router(**channels).submit(OutboundMessage("+447700900123", b"x")).addErrback(
        lambda f: failures.append(f.value))
    assert isinstance(failures[0], SubmitError) and channels["backup"].sent == []


def test_bad_routes_are_refused() -> None:
    with pytest.raises(ValueError):
        Route(())
    with pytest.raises(ValueError):
        Route(("a",), prefix="44x")
    with pytest.raises(ValueError):
        Route(("a",), carrier="Vodafone")
