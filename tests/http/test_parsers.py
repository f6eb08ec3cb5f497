"""Pure parser tests: raw request data in, events or clear errors out (no reactor)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sms_gateway.events import DeliveryStatus
from sms_gateway.http import jasmin, jsonformat, kannel
from sms_gateway.http.callback import CallbackRequest, MalformedCallbackError, parse_query_bytes
from sms_gateway.http.coding import decode_gsm7, decode_text

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
KW = {"link": "gw", "region": "GB", "now": NOW}


def get(query: str) -> CallbackRequest:
    return CallbackRequest("GET", "/gateways/gw/x?" + query)


def post(body: bytes, content_type: str, query: str = "", **headers: str) -> CallbackRequest:
    target = "/gateways/gw/x" + (f"?{query}" if query else "")
    return CallbackRequest("POST", target, {"content-type": content_type, **headers}, body)


def test_query_parsing_is_binary_safe_and_plus_is_space() -> None:
    assert parse_query_bytes(b"a=%FF%00&b=x+y&c=&&d") == (
        (b"a", b"\xff\x00"), (b"b", b"x y"), (b"c", b""), (b"d", b""))


@pytest.mark.parametrize("udh", ["0605040B8423F0", "%06%05%04%0B%84%23%F0"])
def test_kannel_udh_is_accepted_as_hex_or_raw_octets(udh: str) -> None:
    parsed = kannel.parse_inbound(get(f"from=447700900123&to=1234&text=x&coding=1&udh={udh}"),
                                  **KW)
    assert parsed.event.udh is not None  # type: ignore[union-attr]
    assert parsed.event.udh.dest_port == 2948  # type: ignore[union-attr]


def kannel_post(udh_header: str) -> CallbackRequest:
    return post(b"\x01\x02", "application/octet-stream", "id=1",
                **{"x-kannel-from": "447700900123", "x-kannel-to": "1234",
                   "x-kannel-coding": "1", "x-kannel-udh": udh_header})


@pytest.mark.parametrize("header, dest_port, concat_ref", [
    ("%06%05%04%0B%84%23%F0", 2948, None),  # smsbox's post-url: octstr_url_encode(udhdata)
    ("0605040B8423F0", 2948, None),  # hex, as this parser documented before: still accepted
    ("%05%00%03+%02%01", None, 0x20),  # url-encoding turns the octet 0x20 into '+'
    ("%05%00%03A%02%01", None, 0x41),  # and leaves the safe octets (A-Z a-z 0-9 -_.!~*'()) as is
])
def test_kannel_udh_header_is_read_url_encoded_as_smsbox_sends_it(
        header: str, dest_port: int | None, concat_ref: int | None) -> None:
    udh = kannel.parse_inbound(kannel_post(header), **KW).event.udh  # type: ignore[union-attr]
    assert udh is not None
    assert udh.dest_port == dest_port
    assert (udh.concat.reference if udh.concat else None) == concat_ref


@pytest.mark.parametrize("header", ["%ZZ", "%06%05%04", "zz"])
def test_kannel_udh_header_that_is_neither_form_is_malformed(header: str) -> None:
    with pytest.raises(MalformedCallbackError, match="udh"):
        kannel.parse_inbound(kannel_post(header), **KW)


@pytest.mark.parametrize("query, error", [
    ("to=1234&text=x", "missing field 'from'"),
    ("from=447700900123&to=1234", "missing field 'text'"),
    ("from=447700900123&to=1234&text=x&coding=7", "field 'coding'"),
    ("from=447700900123&to=1234&text=x&udh=0605", "field 'udh'"),
    ("from=447700900123&to=1234&text=%FF&coding=0&charset=UTF-8", "not valid UTF-8"),
    ("from=447700900123&to=1234&text=x&charset=klingon", "unknown charset"),
])
def test_kannel_bad_input_names_the_problem(query: str, error: str) -> None:
    with pytest.raises(MalformedCallbackError, match=error):
        kannel.parse_inbound(get(query), **KW)


MO = "from=447700900123&to=1234&"


@pytest.mark.parametrize("query", [
    MO + "text=x&charset=undefined",  # the codec that always raises UnicodeError
    MO + "text=hi&charset=punycode",  # not a charset: UnicodeError on plain ASCII
    MO + "text=xn--&charset=idna",
    MO + "text=%5Cud800&charset=unicode_escape",  # decodes to a lone surrogate
    MO + "text=%5Cud800&coding=2&charset=raw_unicode_escape",
    MO + "text=%2B2AA-&charset=utf-7",  # valid UTF-7 for a lone surrogate
    MO + "text=%2B2AA-&coding=2&charset=utf-7",  # ... which UTF-16BE cannot encode
    MO + "text=x&charset=rot13",  # a codec, not a text encoding
    MO + "text=x&charset=a%00b",  # ValueError: embedded null character
    MO + "text=x&coding=" + "9" * 5000,  # beyond int()'s digit limit
])
def test_kannel_charset_or_coding_that_trips_a_codec_is_malformed(query: str) -> None:
    with pytest.raises(MalformedCallbackError, match=r"charset|coding|not valid"):
        kannel.parse_inbound(get(query), **KW)


@pytest.mark.parametrize("charset", ["undefined", "punycode", "unicode_escape", "x\x00"])
def test_kannel_post_url_charset_parameter_that_trips_a_codec_is_malformed(charset: str) -> None:
    request = post(b"hi", f'text/plain; charset="{charset}"', "id=1",
                   **{"x-kannel-from": "447700900123", "x-kannel-to": "1234"})
    with pytest.raises(MalformedCallbackError, match="charset"):
        kannel.parse_inbound(request, **KW)


@pytest.mark.parametrize("parse, query", [
    (kannel.parse_inbound, MO + "text=x&id=%00a"),
    (kannel.parse_receipt, "ref=r%00&type=1"),
    (jasmin.parse_inbound, MO + "content=x&id=a%00"),
    (jasmin.parse_receipt, "id=a&message_status=ESME_ROK%00&level=1"),
])
def test_a_nul_in_a_text_field_is_malformed(parse: Any, query: str) -> None:
    # The gateways send C strings: a NUL is never real, and PostgreSQL text cannot hold one.
    with pytest.raises(MalformedCallbackError, match="NUL"):
        parse(get(query), **KW)


def test_kannel_mo_without_id_is_deduplicated_by_content() -> None:
    query = "from=447700900123&to=1234&text=hello&time=1795330800"
    first = kannel.parse_inbound(get(query), **KW)
    again = kannel.parse_inbound(get(query), **KW)
    other = kannel.parse_inbound(get(query.replace("hello", "hullo")), **KW)
    assert first.external_id == again.external_id != other.external_id
    assert (first.external_id or "").startswith("sha256:")


def test_kannel_ucs2_recoded_to_utf8_by_kannel_is_kept_as_ucs2_payload() -> None:
    parsed = kannel.parse_inbound(get("from=447700900123&to=1234&text=%E2%82%AC&coding=2"
                                      "&charset=UTF-8"), **KW)
    assert (parsed.event.payload, parsed.event.text) == ("€".encode("utf-16-be"), "€")  # type: ignore[union-attr]


@pytest.mark.parametrize("dlr_type, answer, status, err", [
    (1, "stat:DELIVRD err:000", DeliveryStatus.DELIVERED, "000"),
    (2, "stat:UNDELIV err:001", DeliveryStatus.UNDELIVERABLE, "001"),
    (2, "stat:EXPIRED err:000", DeliveryStatus.EXPIRED, "000"),
    (2, "stat:REJECTD err:00B", DeliveryStatus.REJECTED, "00B"),
    (4, "", DeliveryStatus.ENROUTE, None),
    (8, "ACK/", DeliveryStatus.ACCEPTED, None),
    (16, "NACK/0x0000000b/Invalid Destination Address", DeliveryStatus.REJECTED, None),
])
def test_kannel_dlr_types_map_to_one_vocabulary(dlr_type: int, answer: str,
                                               status: DeliveryStatus, err: str | None) -> None:
    parsed = kannel.parse_receipt(get(f"ref=r1&type={dlr_type}&answer={answer}"), **KW)
    assert (parsed.event.status, parsed.event.error_code) == (status, err)  # type: ignore[union-attr]
    assert parsed.external_id == f"r1:{dlr_type}"


@pytest.mark.parametrize("query, error", [
    ("type=1", "missing field 'ref'"), ("ref=r", "missing field 'type'"),
    ("ref=r&type=3", "expected one of 1, 2, 4, 8, 16"), ("ref=r&type=x", "expected an integer"),
    ("ref=r&type=1&ts=soon", "UNIX time"),
])
def test_kannel_dlr_bad_input(query: str, error: str) -> None:
    with pytest.raises(MalformedCallbackError, match=error):
        kannel.parse_receipt(get(query), **KW)


def test_jasmin_mo_prefers_binary_hex_and_decodes_gsm_text() -> None:
    form = b"id=1&from=447700900123&to=1234&coding=0&content=ignored&binary=48656c6c6f1b65"
    parsed = jasmin.parse_inbound(post(form, "application/x-www-form-urlencoded"), **KW)
    assert parsed.event.text == "Hello€"  # type: ignore[union-attr]
    assert parsed.external_id == "1"


@pytest.mark.parametrize("form, error", [
    (b"from=1&to=2&content=x", "missing field 'id'"),
    (b"id=1&from=447700900123&to=1234&content=x&binary=zz", "not valid hex"),
    (b"id=1&from=447700900123&to=1234", "missing field 'content'"),
    (b"id=1&from=447700900123&to=1234&content=x&coding=300", "not an SMPP data_coding"),
])
def test_jasmin_mo_bad_input(form: bytes, error: str) -> None:
    with pytest.raises(MalformedCallbackError, match=error):
        jasmin.parse_inbound(post(form, "application/x-www-form-urlencoded"), **KW)


def test_jasmin_refuses_a_non_form_post_body() -> None:
    with pytest.raises(MalformedCallbackError, match="expected a application/x-www-form"):
        jasmin.parse_receipt(post(b"{}", "application/json"), **KW)


@pytest.mark.parametrize("status, expected", [
    ("ESME_ROK", DeliveryStatus.ACCEPTED), ("ESME_RTHROTTLED", DeliveryStatus.REJECTED),
    ("DELIVRD", DeliveryStatus.DELIVERED), ("UNDELIV", DeliveryStatus.UNDELIVERABLE),
    ("EXPIRED", DeliveryStatus.EXPIRED), ("DELETED", DeliveryStatus.DELETED),
    ("REJECTD", DeliveryStatus.REJECTED), ("ACCEPTD", DeliveryStatus.ACCEPTED),
    ("ENROUTE", DeliveryStatus.ENROUTE), ("WHATEVER", DeliveryStatus.UNKNOWN),
])
def test_jasmin_message_status_vocabulary(status: str, expected: DeliveryStatus) -> None:
    assert jasmin.status_for(status) is expected


def test_jasmin_dlr_bad_dates_are_malformed() -> None:
    with pytest.raises(MalformedCallbackError, match="YYMMDDhhmm"):
        jasmin.parse_receipt(get("id=1&message_status=DELIVRD&level=2&donedate=26-11-22"), **KW)


def doc(**fields: object) -> CallbackRequest:
    return post(json.dumps(fields).encode(), "application/json")


def test_json_inbound_text_becomes_ucs2_and_udh_is_parsed() -> None:
    parsed = jsonformat.parse_inbound(doc(id="1", **{"from": "07700900123"}, to="84433",
                                          text="hé", udh_hex="0605040B8423F0"), **KW)
    event = parsed.event
    assert (event.sender, event.receiver, event.data_coding) == ("+447700900123", "84433", 8)  # type: ignore[union-attr]
    assert event.payload == "hé".encode("utf-16-be")  # type: ignore[union-attr]
    assert event.udh is not None and event.udh.src_port == 9200  # type: ignore[union-attr]


@pytest.mark.parametrize("fields, error", [
    ({"from": "1", "to": "2", "text": "x"}, "missing field 'id'"),
    ({"id": "1", "from": "447700900123", "to": "2"}, "exactly one of"),
    ({"id": "1", "from": "447700900123", "to": "2", "text": "x", "payload_hex": "00"},
     "exactly one of"),
    ({"id": "1", "from": "447700900123", "to": "2", "payload_hex": "0g"}, "not valid hex"),
    ({"id": "1", "from": "447700900123", "to": "2", "payload_hex": "00", "data_coding": "4"},
     "must be an integer"),
    ({"id": ["x"], "from": "1", "to": "2"}, "must be a string"),
])
def test_json_inbound_bad_documents(fields: dict[str, object], error: str) -> None:
    with pytest.raises(MalformedCallbackError, match=error):
        jsonformat.parse_inbound(doc(**fields), **KW)


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1"
                                  + b"}" * 50_000])
def test_json_nested_too_deeply_is_malformed_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(MalformedCallbackError, match="JSON"):
        jsonformat.parse_inbound(post(body, "application/json"), **KW)


@pytest.mark.parametrize("fields, error", [
    ({"text": "\ud800"}, "field 'text'"),  # a lone surrogate: no UTF-16 or UTF-8 for it
    ({"text": "x", "id": "a\ud800"}, "field 'id'"),
    ({"text": "x", "id": "a\u0000"}, "field 'id'"),
    ({"payload_hex": "00", "data_coding": 10 ** 4000}, "data_coding"),
])
def test_json_strings_that_cannot_be_stored_are_malformed(fields: dict[str, object],
                                                          error: str) -> None:
    document = {"id": "1", "from": "447700900123", "to": "2", **fields}
    with pytest.raises(MalformedCallbackError, match=error):
        jsonformat.parse_inbound(doc(**document), **KW)


def test_json_receipt_requires_a_known_status_and_iso_times() -> None:
    with pytest.raises(MalformedCallbackError, match="field 'status'"):
        jsonformat.parse_receipt(doc(id="1", message_id="m", status="sent"), **KW)
    with pytest.raises(MalformedCallbackError, match="ISO 8601"):
        jsonformat.parse_receipt(doc(id="1", message_id="m", status="delivered",
                                     done_at="yesterday"), **KW)
    parsed = jsonformat.parse_receipt(doc(id="1", message_id="m", status="DELIVERED",
                                          done_at="2026-11-22T08:00:00"), **KW)
    assert parsed.event.done_at == NOW  # type: ignore[union-attr]


def test_json_needs_json_content_type() -> None:
    with pytest.raises(MalformedCallbackError, match="Content-Type application/json"):
        jsonformat.parse_inbound(post(b"{}", "text/plain"), **KW)


def test_gsm7_and_text_codings() -> None:
    assert decode_gsm7(b"\x00\x1b\x65A") == "@€A"
    assert decode_text(b"\x00H", 8) == "H"
    assert decode_text(b"\x01\x02", 4) is None
    with pytest.raises(MalformedCallbackError):
        decode_text(b"\x80", 0)
