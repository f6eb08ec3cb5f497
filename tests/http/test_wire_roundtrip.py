"""A stored callback can be turned back into the request it was parsed from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sms_gateway.http.callback import MalformedCallbackError, RawCallback, request_from_wire


def test_stored_wire_bytes_rebuild_the_same_request() -> None:
    raw = RawCallback(gateway="k", kind="mo", endpoint="inbound", method="POST",
                      target="/gateways/k/inbound?from=%2B447700900123&token=REDACTED",
                      headers=(("content-type", "application/x-www-form-urlencoded"),
                               ("x-kannel-from", "+447700900123")),
                      body=b"\x00binary\r\n\r\nbody", remote="10.0.0.1",
                      received_at=datetime(2026, 11, 22, tzinfo=UTC))
    request = request_from_wire(raw.wire_bytes())
    assert (request.method, request.target, request.body) == (raw.method, raw.target, raw.body)
    assert dict(request.headers) == dict(raw.headers)


@pytest.mark.parametrize("wire", [b"", b"GET /x HTTP/1.1", b"GET /x\r\n\r\n",
                                  b"GET /x HTTP/1.1\r\nbroken header\r\n\r\n"])
def test_bytes_not_in_stored_form_are_refused(wire: bytes) -> None:
    with pytest.raises(MalformedCallbackError):
        request_from_wire(wire)
