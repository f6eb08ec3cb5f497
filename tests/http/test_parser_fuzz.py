"""Property: whatever a client sends, a parser returns a storable result or raises
MalformedCallbackError (a 400), never anything else (a 500 the gateway retries for ever)."""

from __future__ import annotations

import encodings.aliases
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sms_gateway.events import InboundMessage
from sms_gateway.http import jasmin, jsonformat, kannel
from sms_gateway.http.callback import CallbackRequest, MalformedCallbackError, ParsedCallback

KW: dict[str, Any] = {"link": "gw", "region": "GB", "now": datetime(2026, 11, 22, tzinfo=UTC)}
FORM_PARSERS = (kannel.parse_inbound, kannel.parse_receipt, jasmin.parse_inbound,
                jasmin.parse_receipt)
FIELDS = ("id", "from", "to", "text", "udh", "coding", "charset", "smsc", "time", "ref", "type",
          "smsc_id", "answer", "ts", "binary", "content", "message_status", "level", "subdate",
          "donedate", "err", "origin-connector", "priority", "validity", "id_smsc")
# Every codec name Python knows, plus the ones that are not charsets at all.
CODECS = sorted(set(encodings.aliases.aliases.values())
                | {"undefined", "punycode", "idna", "unicode_escape", "raw_unicode_escape",
                   "utf_7", "rot13", "UTF-16BE", "UCS-2", "a\x00b"})
SPECIAL = [b"", b"0", b"1", b"2", b"8", b"-1", b"9" * 5000, b"%", b"zz", b"0605040B8423F0",
           b"%06%05%04%0B%84%23%F0", b"\x06\x05\x04\x0b\x84\x23\xf0", b"\x00", b"\xff",
           b"1795330800", b"9" * 30, b"2611220739", b"ESME_ROK", b"DELIVRD",
           b"+447700900123", b"\xed\xa0\x80", b"\\ud800", b"+2AA-", b"xn--"]
VALUES = st.one_of(st.binary(max_size=24), st.sampled_from(SPECIAL),
                   st.sampled_from(CODECS).map(lambda c: c.encode("latin-1")))
PAIRS = st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), max_size=8)
# A plausible callback to mutate, so that parsing gets past the first missing field.
BASE = [(f, v.encode()) for f, v in (("from", "447700900123"), ("to", "1234"), ("id", "x1"),
                                     ("ref", "r"), ("type", "1"), ("level", "2"),
                                     ("message_status", "DELIVRD"), ("content", "hi"))]
HEADER_VALUES = st.one_of(st.sampled_from([c for c in CODECS if "\x00" not in c]),
                          st.sampled_from(["%06%05%04%0B%84%23%F0", "06050", "%ZZ", "+2AA-"]),
                          st.text(st.characters(min_codepoint=32, max_codepoint=255),
                                  max_size=20))
HEADERS = st.dictionaries(st.sampled_from(["x-kannel-from", "x-kannel-to", "x-kannel-coding",
                                           "x-kannel-udh", "x-kannel-smsc", "x-kannel-time"]),
                          HEADER_VALUES, max_size=6)
CONTENT_TYPES = st.sampled_from(["", "application/x-www-form-urlencoded", "application/json",
                                 "text/plain", "application/octet-stream"])
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=16),
                        st.sampled_from(["\ud800", "\x00", "0605040B8423F0", "delivered", "zz",
                                         "2026-11-22T08:00:00", "+447700900123", "9999-99-99"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=6)
JSON_FIELDS = ("id", "from", "to", "data_coding", "payload_hex", "text", "udh_hex",
               "smsc_message_id", "message_id", "status", "error_code", "submitted_at", "done_at")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def encode(pairs: list[tuple[str, bytes]]) -> str:
    return "&".join(f"{quote_from_bytes(k.encode())}={quote_from_bytes(v)}" for k, v in pairs)


def encodable(text: str | None) -> bool:
    """True for text that has a UTF-8 (and UTF-16) form: no unpaired surrogate."""
    if text is None:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str | None) -> bool:
    """What a PostgreSQL text column takes: valid UTF-8 without NUL."""
    return encodable(text) and "\x00" not in (text or "")


def check(parse: Callable[..., ParsedCallback], request: CallbackRequest) -> None:
    try:
        parsed = parse(request, **KW)
    except MalformedCallbackError as exc:
        assert storable(str(exc)), repr(exc)
        return
    event = parsed.event
    assert storable(parsed.external_id), parsed.external_id
    if isinstance(event, InboundMessage):
        # Message text may hold U+0000 (as over SMPP); it only has to be valid Unicode.
        assert encodable(event.text) and storable(event.sender) and storable(event.receiver)
        assert storable(event.gateway_message_id)
    else:
        assert storable(event.message_id) and storable(event.error_code)
    for name, value in event.extra.items():
        assert storable(name) and storable(value), (name, value)


@FUZZ
@given(method=st.sampled_from(["GET", "POST"]), query=PAIRS, form=PAIRS,
       raw_body=st.one_of(st.none(), st.binary(max_size=40)), headers=HEADERS,
       content_type=CONTENT_TYPES, charset=st.one_of(st.none(), st.sampled_from(CODECS)))
def test_form_parsers_raise_nothing_but_malformed_callback_error(
        method: str, query: list[tuple[str, bytes]], form: list[tuple[str, bytes]],
        raw_body: bytes | None, headers: dict[str, str], content_type: str,
        charset: str | None) -> None:
    all_headers = dict(headers)
    if content_type:
        all_headers["content-type"] = content_type + (f'; charset="{charset}"' if charset else "")
    body = (encode(form).encode() if raw_body is None else raw_body) if method == "POST" else b""
    request = CallbackRequest(method, "/gateways/gw/x?" + encode(BASE + query), all_headers,
                              body)
    for parse in FORM_PARSERS:
        check(parse, request)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(JSON_FIELDS), JSON_VALUES, max_size=7),
       drop=st.sets(st.sampled_from(("id", "from", "to", "message_id", "status"))))
def test_json_parsers_raise_nothing_but_malformed_callback_error(
        fields: dict[str, Any], drop: set[str]) -> None:
    document = {"id": "1", "from": "447700900123", "to": "1234", "message_id": "m",
                "status": "delivered", **fields}
    for name in drop:
        document.pop(name, None)
    request = CallbackRequest("POST", "/gateways/gw/x", {"content-type": "application/json"},
                              json.dumps(document).encode())
    check(jsonformat.parse_inbound, request)
    check(jsonformat.parse_receipt, request)


@FUZZ
@given(body=st.binary(max_size=200), depth=st.integers(0, 200_000))
def test_json_parsers_take_any_body_bytes(body: bytes, depth: int) -> None:
    for candidate in (body, b"[" * depth + body, b'{"id":' * (depth // 6) + body):
        request = CallbackRequest("POST", "/gateways/gw/x",
                                  {"content-type": "application/json"}, candidate)
        check(jsonformat.parse_inbound, request)
        check(jsonformat.parse_receipt, request)
