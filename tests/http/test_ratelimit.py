"""Failed authentications are limited per source address and per gateway.

The limiter itself is pure (times are passed in); the handler tests drive it
with ``task.Clock``.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mepl.config import ConfigError, build
from sms_gateway.http import (
    CallbackHandler,
    CallbackRequest,
    HttpConfig,
    HttpMetrics,
    MemoryCallbackStore,
    Reply,
)
from sms_gateway.http.ratelimit import AuthFailureLimiter, source_key
from tests.http.helpers import JASMIN_PASSWORD, JASMIN_USER, TOKEN, gateways


def limiter(**overrides: Any) -> AuthFailureLimiter:
    settings: dict[str, Any] = {"per_source": 3, "per_gateway": 100, "window_seconds": 60.0,
                                "lockout_seconds": 300.0}
    return AuthFailureLimiter(**{**settings, **overrides})


def test_a_source_is_locked_out_after_n_failures_within_the_window() -> None:
    lim = limiter()
    for now in (0.0, 1.0):
        assert lim.record_failure("k", "192.0.2.1", now) is None
        assert lim.retry_after("k", "192.0.2.1", now) is None
    assert lim.record_failure("k", "192.0.2.1", 2.0) == "source"
    assert lim.retry_after("k", "192.0.2.1", 2.0) == 300.0
    assert lim.retry_after("k", "192.0.2.1", 301.5) == pytest.approx(0.5)
    assert lim.retry_after("k", "192.0.2.1", 302.0) is None


def test_failures_spread_wider_than_the_window_never_lock_out() -> None:
    lim = limiter()
    for step in range(20):
        assert lim.record_failure("k", "192.0.2.1", step * 31.0) is None
        assert lim.retry_after("k", "192.0.2.1", step * 31.0) is None


def test_another_source_and_another_gateway_are_unaffected() -> None:
    lim = limiter()
    for now in (0.0, 1.0, 2.0):
        lim.record_failure("k", "192.0.2.1", now)
    assert lim.retry_after("k", "192.0.2.1", 3.0) is not None
    assert lim.retry_after("k", "192.0.2.2", 3.0) is None
    assert lim.retry_after("j", "192.0.2.1", 3.0) is None


def test_a_success_forgets_the_sources_earlier_failures() -> None:
    lim = limiter()
    lim.record_failure("k", "192.0.2.1", 0.0)
    lim.record_failure("k", "192.0.2.1", 1.0)
    lim.record_success("k", "192.0.2.1")
    assert lim.record_failure("k", "192.0.2.1", 2.0) is None
    assert lim.retry_after("k", "192.0.2.1", 2.0) is None


def test_a_gateway_wide_burst_refuses_the_sources_that_failed_and_no_other() -> None:
    lim = limiter(per_source=10, per_gateway=5)
    events = [lim.record_failure("k", f"198.51.100.{i}", float(i)) for i in range(5)]
    assert events == [None, None, None, None, "gateway"]
    for i in range(5):  # each failed only once, but the gateway is under attack
        wait = lim.retry_after("k", f"198.51.100.{i}", 5.0)
        assert wait is not None and 0 < wait <= 300
    assert lim.retry_after("k", "192.0.2.50", 5.0) is None  # a clean source is checked as usual
    lim.record_failure("k", "192.0.2.50", 6.0)
    assert lim.retry_after("k", "192.0.2.50", 6.0) is not None  # one failure is enough now
    assert lim.retry_after("j", "198.51.100.0", 6.0) is None  # other gateways: no alert
    assert lim.retry_after("k", "198.51.100.0", 306.0) is None  # alert over, failures expired


def test_ipv6_sources_count_per_64_prefix_and_mapped_ipv4_as_ipv4() -> None:
    assert source_key("2001:db8:1:2::5") == source_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::5") != source_key("2001:db8:1:2::5")
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_key("192.0.2.1") == "192.0.2.1"
    assert source_key("not an address") == "not an address"
    lim = limiter()
    for i in range(3):
        lim.record_failure("k", f"2001:db8:1:2::{i + 1}", float(i))
    assert lim.retry_after("k", "2001:db8:1:2::abcd", 3.0) is not None


def test_the_table_of_sources_stays_bounded() -> None:
    lim = limiter(max_sources=100)
    for i in range(1000):
        lim.record_failure("k", f"10.0.{i // 256}.{i % 256}", float(i) / 100)
    assert lim.tracked_sources <= 100
    assert lim.record_failure("k", "10.0.3.231", 10.0) is None  # the newest are kept
    assert lim.record_failure("k", "10.0.3.231", 10.0) == "source"


@pytest.mark.parametrize("key, value", [
    ("auth_failures_per_source", 0), ("auth_failures_per_gateway", 0),
    ("auth_failure_window_seconds", 0), ("auth_lockout_seconds", -1),
])
def test_limiter_settings_must_be_positive(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        build(HttpConfig, {key: value}, "http")


BASIC = "Basic " + base64.b64encode(f"{JASMIN_USER}:{JASMIN_PASSWORD}".encode()).decode()


class HandlerLimiterTest(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_795_330_800)
        self.registry = CollectorRegistry()
        self.store = MemoryCallbackStore()
        config = HttpConfig(port=0, gateways=gateways(), auth_failures_per_source=3,
                            auth_failures_per_gateway=6, auth_failure_window_seconds=60,
                            auth_lockout_seconds=300)
        self.handler = CallbackHandler(config, self.store, clock=self.clock,
                                       metrics=HttpMetrics(self.registry))
        self.sequence = 0

    def kannel(self, remote: str, token: str = TOKEN) -> Reply:
        self.sequence += 1
        target = (f"/gateways/kannel1/inbound?token={token}&id=m{self.sequence}"
                  "&from=447700900123&to=1234&text=hi")
        return self.successResultOf(self.handler.handle(
            "kannel1", "inbound", CallbackRequest("GET", target, remote=remote)))

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def test_after_n_bad_tokens_the_source_gets_429_even_with_the_right_one(self) -> None:
        statuses = [self.kannel("192.0.2.1", "x" * 20).status for _ in range(3)]
        self.assertEqual(statuses, [401, 401, 401])
        locked = self.kannel("192.0.2.1")
        self.assertEqual((locked.status, locked.body), (429, b""))
        self.assertIn(("Retry-After", "300"), locked.headers)
        self.assertEqual(self.kannel("192.0.2.2").status, 200)  # another source: unaffected
        self.clock.advance(299)
        self.assertEqual(self.kannel("192.0.2.1").status, 429)
        self.assertIn(("Retry-After", "1"), self.kannel("192.0.2.1").headers)
        self.clock.advance(1)
        self.assertEqual(self.kannel("192.0.2.1").status, 200)
        self.assertEqual(self.metric("mepl_http_callbacks_total", gateway="kannel1",
                                     endpoint="inbound", outcome="rate_limited"), 3)
        self.assertEqual(self.metric("mepl_http_auth_failures_total", gateway="kannel1",
                                     reason="rate_limited"), 3)
        self.assertEqual(self.metric("mepl_http_auth_failures_total", gateway="kannel1",
                                     reason="bad_credentials"), 3)
        self.assertEqual(len(self.store.rows), 2)  # only the two accepted callbacks

    def test_a_locked_out_source_is_not_checked_so_guesses_cost_nothing(self) -> None:
        for _ in range(3):
            self.kannel("192.0.2.1", "x" * 20)
        for _ in range(50):
            self.assertEqual(self.kannel("192.0.2.1", "y" * 20).status, 429)
        self.assertEqual(self.metric("mepl_http_auth_failures_total", gateway="kannel1",
                                     reason="bad_credentials"), 3)

    def test_a_gateway_wide_burst_spares_a_correct_credential_from_a_clean_source(self) -> None:
        for i in range(6):  # six sources, one failure each: the gateway-wide limit
            self.assertEqual(self.kannel(f"198.51.100.{i}", "x" * 20).status, 401)
        self.assertEqual(self.kannel("198.51.100.0").status, 429)
        self.assertEqual(self.kannel("192.0.2.9").status, 200)

    def test_limits_are_per_gateway(self) -> None:
        for _ in range(3):
            self.kannel("192.0.2.1", "x" * 20)
        self.assertEqual(self.kannel("192.0.2.1").status, 429)
        reply = self.successResultOf(self.handler.handle(
            "jasmin1", "receipt", CallbackRequest(
                "POST", "/gateways/jasmin1/receipt",
                {"authorization": BASIC,
                 "content-type": "application/x-www-form-urlencoded"},
                b"id=j&message_status=ESME_ROK&level=1", remote="192.0.2.1")))
        self.assertEqual((reply.status, reply.body), (200, b"ACK/Jasmin"))

    def test_a_jasmin_429_says_why_in_its_body(self) -> None:
        request = CallbackRequest("POST", "/gateways/jasmin1/receipt",
                                  {"authorization": "Basic " + base64.b64encode(
                                      b"jasmin:wrong").decode()}, b"id=j", remote="192.0.2.7")
        for _ in range(3):
            self.successResultOf(self.handler.handle("jasmin1", "receipt", request))
        reply = self.successResultOf(self.handler.handle("jasmin1", "receipt", request))
        self.assertEqual(reply.status, 429)
        self.assertIn(b"too many failed authentications", reply.body)
