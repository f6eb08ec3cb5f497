"""Group commit (BatchingCallbackStore), the in-memory store, and send-side segmenting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from twisted.internet.defer import Deferred

from sms_gateway.channel import DATA_CODING_DEFAULT, DATA_CODING_UCS2, OutboundMessage
from sms_gateway.errors import MessageTooLongError, SubmitError
from sms_gateway.http import BatchingCallbackStore, MemoryCallbackStore, RawCallback
from sms_gateway.http.callback import StoredCallback, StoreUnavailableError
from sms_gateway.http.sendreq import (
    jasmin_send_form,
    parse_jasmin_response,
    parse_kannel_response,
    segment,
)
from sms_gateway.udh import split_user_data


def raw(external_id: str | None, kind: str = "mo") -> RawCallback:
    return RawCallback("gw", kind, "inbound", "GET", "/", (), b"", "127.0.0.1",  # type: ignore[arg-type]
                       datetime(2026, 11, 22, tzinfo=UTC), external_id)


class ManualBatches:
    """A store_batch whose batches complete when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[RawCallback], Deferred[Sequence[StoredCallback]]]] = []

    def __call__(self, raws: Sequence[RawCallback]) -> Deferred[Sequence[StoredCallback]]:
        d: Deferred[Sequence[StoredCallback]] = Deferred()
        self.calls.append((list(raws), d))
        return d


def test_callbacks_arriving_during_a_commit_form_the_next_batch() -> None:
    batches = ManualBatches()
    store = BatchingCallbackStore(batches, max_batch=2)
    results: list[StoredCallback] = []
    for i in range(4):
        store.store(raw(str(i))).addCallback(results.append)
    assert [len(c[0]) for c in batches.calls] == [1]  # first goes at once
    batches.calls[0][1].callback([StoredCallback(1)])
    assert results == [StoredCallback(1)]
    assert [len(c[0]) for c in batches.calls] == [1, 2]  # capped at max_batch
    batches.calls[1][1].callback([StoredCallback(2), StoredCallback(3, True)])
    batches.calls[2][1].callback([StoredCallback(4)])
    assert [r.message_id for r in results] == [1, 2, 3, 4]
    assert results[2].duplicate


def test_a_failed_batch_fails_each_waiter_and_the_next_batch_still_runs() -> None:
    batches = ManualBatches()
    store = BatchingCallbackStore(batches)
    failures: list[object] = []
    store.store(raw("a")).addErrback(failures.append)
    second = store.store(raw("b"))
    batches.calls[0][1].errback(StoreUnavailableError("down"))
    assert len(failures) == 1
    batches.calls[1][1].callback([StoredCallback(7)])
    assert second.result == StoredCallback(7)  # type: ignore[attr-defined]


def test_a_batch_answer_of_the_wrong_length_fails_the_waiters() -> None:
    batches = ManualBatches()
    store = BatchingCallbackStore(batches)
    failures: list[object] = []
    store.store(raw("a")).addErrback(failures.append)
    batches.calls[0][1].callback([])
    assert len(failures) == 1


def test_memory_store_dedups_on_gateway_kind_and_external_id() -> None:
    store = MemoryCallbackStore()
    first = store.store(raw("x")).result  # type: ignore[attr-defined]
    assert store.store(raw("x")).result == StoredCallback(first.message_id, True)  # type: ignore[attr-defined]
    assert not store.store(raw("x", kind="dlr")).result.duplicate  # type: ignore[attr-defined]
    assert not store.store(raw(None)).result.duplicate  # type: ignore[attr-defined]
    assert not store.store(raw(None)).result.duplicate  # type: ignore[attr-defined]
    assert len(store.rows) == 4


@pytest.mark.parametrize("size, parts", [(133, 1), (134, 2), (256, 2), (257, 3)])
def test_binary_with_ports_splits_at_128_octets_per_part(size: int, parts: int) -> None:
    message = OutboundMessage("+447700900123", bytes(size), dest_port=1, src_port=2)
    result = segment(message, max_parts=10, reference=300)
    assert len(result) == parts
    for seq, part in enumerate(result, start=1):
        udh, _ = split_user_data(part.udh)
        assert udh.dest_port == 1
        assert len(part.udh) + len(part.payload) <= 140
        if parts > 1:
            assert udh.concat is not None
            assert (udh.concat.reference, udh.concat.total, udh.concat.seq) == (44, parts, seq)


def test_gsm_text_fits_160_alone_and_153_per_part_without_splitting_an_escape() -> None:
    assert len(segment(OutboundMessage("+44", b"a" * 160, data_coding=DATA_CODING_DEFAULT),
                       max_parts=5, reference=1)) == 1
    text = b"a" * 152 + b"\x1b\x65" + b"b" * 10
    parts = segment(OutboundMessage("+44", text, data_coding=DATA_CODING_DEFAULT),
                    max_parts=5, reference=1)
    assert [len(p.payload) for p in parts] == [152, 12]


def test_ucs2_never_splits_a_surrogate_pair() -> None:
    text = ("a" * 66 + "😀" + "b" * 10).encode("utf-16-be")
    parts = segment(OutboundMessage("+44", text, data_coding=DATA_CODING_UCS2),
                    max_parts=5, reference=1)
    assert b"".join(p.payload for p in parts).decode("utf-16-be") == "a" * 66 + "😀" + "b" * 10
    for part in parts:
        part.payload.decode("utf-16-be")


def test_limits_and_unsupported_codings() -> None:
    with pytest.raises(MessageTooLongError):
        segment(OutboundMessage("+44", bytes(500)), max_parts=3, reference=0)
    with pytest.raises(SubmitError):
        segment(OutboundMessage("+44", b"x", data_coding=0xF5), max_parts=3, reference=0)


def test_send_answers() -> None:
    parse_kannel_response(202, b"0: Accepted for delivery", "k")
    parse_kannel_response(202, b"3: Queued for later delivery", "k")
    with pytest.raises(SubmitError) as caught:
        parse_kannel_response(200, b"Sendsms error", "k")
    assert not caught.value.temporary
    assert parse_jasmin_response(200, b'Success "abc-1"', "j") == "abc-1"
    with pytest.raises(SubmitError) as caught:
        parse_jasmin_response(500, b'Error "Cannot send submit_sm"', "j")
    assert caught.value.temporary and caught.value.code == 500


def test_jasmin_form_without_receipt_has_no_dlr_fields() -> None:
    from sms_gateway.http.config import HttpGatewayConfig
    config = HttpGatewayConfig(name="j", format="jasmin", auth="basic", username="u",
                               password="p" * 16, send_url="http://j/send",
                               dlr_url_base="http://m")
    form = jasmin_send_form(config, OutboundMessage("+44", b"\x01", request_receipt=False))
    assert b"dlr" not in form and b"hex-content=01" in form


def test_kannel_gsm_text_is_sent_as_utf8_and_bad_septets_are_refused() -> None:
    from sms_gateway.http.callback import parse_query_bytes
    from sms_gateway.http.config import HttpGatewayConfig
    from sms_gateway.http.sendreq import HttpPart, kannel_sendsms_url

    config = HttpGatewayConfig(name="k", format="kannel", auth="token", secret="t" * 16,
                               send_url="http://k/cgi-bin/sendsms?smsc=a",
                               dlr_url_base="http://m/")
    message = OutboundMessage("+447700900123", b"", data_coding=DATA_CODING_DEFAULT)
    url = kannel_sendsms_url(config, message, HttpPart(b"", b"Hi \x1b\x65"), "r1")
    query = dict(parse_query_bytes(url.split("?", 1)[1].encode()))
    assert (query[b"smsc"], query[b"coding"], query[b"charset"]) == (b"a", b"0", b"UTF-8")
    assert query[b"text"].decode() == "Hi €"
    assert query[b"dlr-url"].decode().startswith("http://m/gateways/k/receipt?ref=r1&type=%d")
    assert query[b"dlr-url"].decode().endswith("&token=" + "t" * 16)
    with pytest.raises(SubmitError):
        kannel_sendsms_url(config, message, HttpPart(b"", b"\x80"), "r2")
