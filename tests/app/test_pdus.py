"""Reading the raw PDU log by link and time (``mepl.app.pdus``) in real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from blobstore.pdu_batches import pack_pdu
from blobstore.pdu_read import HAS_LINK_QUERY, LINKS_QUERY
from mepl.app.errors import InvalidRequest, NotFound
from mepl.app.pdus import (
    Cursor,
    CursorError,
    PduQuery,
    around_message_txn,
    find_pdus_txn,
    pdu_page_txn,
)
from sms_gateway.smpp import codec
from tests.support.pg import migrated_database
from tests.support.plans import plan_nodes

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _submit(seq: int, dest: str, source: str = "447700900000") -> bytes:
    body = codec.encode_short_message(codec.ShortMessage(
        source_addr=source, destination_addr=dest, short_message=b"x"))
    return codec.encode_frame(codec.SUBMIT_SM, 0, seq, body)


def _submit_resp(seq: int, smsc_id: str) -> bytes:
    return codec.encode_frame(codec.SUBMIT_SM_RESP, 0, seq,
                              codec.encode_message_id_body(smsc_id))


def _receipt(seq: int, *, tlv_id: str | None = None, text_id: str | None = None) -> bytes:
    text_part = f"id:{text_id} sub:001 dlvrd:001 stat:DELIVRD err:000".encode() if text_id \
        else b""
    tlvs = ((codec.TAG_RECEIPTED_MESSAGE_ID, tlv_id.encode() + b"\0"),) if tlv_id else ()
    body = codec.encode_short_message(codec.ShortMessage(
        source_addr="447700900101", destination_addr="447700900000", esm_class=0x04,
        short_message=text_part, tlvs=tlvs))
    return codec.encode_frame(codec.DELIVER_SM, 0, seq, body)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _store(engine: Engine, *, direction: str, link: str, created: datetime, kind: str,
           payload: bytes, **columns: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(text(
            "INSERT INTO messages (direction, channel, kind, link, payload, sha256, "
            "created_at, smsc_message_id, command_id, peer, meta) VALUES (:d, 'smpp', :k, :l, "
            ":p, :h, :c, :s, :cmd, :peer, CAST(:m AS jsonb)) RETURNING id"),
            {"d": direction, "k": kind, "l": link, "p": payload,
             "h": hashlib.sha256(payload).digest(), "c": created,
             "s": columns.get("smsc_message_id"), "cmd": columns.get("command_id"),
             "peer": columns.get("peer"),
             "m": json.dumps(columns.get("meta"))}).scalar_one())


def _batch(engine: Engine, direction: str, link: str, created: datetime,
           records: list[tuple[float, str | None, bytes]]) -> int:
    payload = b"MPB1" + b"".join(pack_pdu(_at(s).timestamp(), ref, raw)
                                 for s, ref, raw in records)
    return _store(engine, direction=direction, link=link, created=created, kind="pdu_batch",
                  payload=payload, meta={"pdus": len(records)})


@pytest.fixture(scope="module")
def log() -> Iterator[dict[str, Any]]:
    """Two links, both layouts, PDUs written up to five minutes after they crossed the wire."""
    engine = create_engine(migrated_database("pdus"))
    made: dict[str, Any] = {"engine": engine}
    made["out1"] = _batch(engine, "out", "carrier", _at(1), [
        (0.10, "cmd-7", _submit(1, "447700900101")),
        (0.10, "cmd-8", _submit(2, "447700900102")),  # the same microsecond: a tie
        (0.20, None, codec.encode_frame(codec.ENQUIRE_LINK, 0, 3))])
    made["in1"] = _batch(engine, "in", "carrier", _at(1.5), [
        (0.30, "cmd-7", _submit_resp(1, "00AB12")),
        (0.30, "cmd-8", _submit_resp(2, "77"))])
    # A receipt stored five minutes late (back-pressure): still found for its own time.
    made["in_late"] = _batch(engine, "in", "carrier", _at(300), [
        (5.0, None, _receipt(9, tlv_id="ab12")),
        (5.5, None, _receipt(10, text_id="0077"))])
    # The "all" layout: one PDU per row, its time the row's.
    made["pdu_row"] = _store(engine, direction="out", link="carrier", created=_at(6),
                             kind="pdu", payload=codec.encode_frame(codec.DELIVER_SM_RESP,
                                                                    0, 9, b"\0"))
    made["other"] = _batch(engine, "out", "other", _at(2), [
        (0.5, "cmd-9", _submit(1, "4477", source="MyBank"))])
    # The database's clock 30 s behind the MEPL host's: the row looks older than its PDU.
    made["skewed"] = _batch(engine, "in", "skewed", _at(10), [(40.0, None, _submit_resp(4, "s"))])
    made["broken"] = _store(engine, direction="in", link="broken", created=_at(1),
                            kind="pdu_batch", payload=b"MPB1\x00\x01")
    made["mo"] = _store(engine, direction="in", link="carrier", created=_at(5.1), kind="mo",
                        payload=b"frame", peer="+447700900101")
    made["mt"] = _store(engine, direction="out", link="carrier", created=_at(0.2), kind="mt",
                        payload=b"frame", smsc_message_id="ab12", command_id=7)
    yield made
    engine.dispose()


def _page(log: dict[str, Any], **query: Any) -> Any:
    query.setdefault("link", "carrier")
    query.setdefault("since", T0)
    query.setdefault("until", _at(60))
    with log["engine"].begin() as conn:
        return pdu_page_txn(conn, PduQuery(**query))


def _names(page: Any) -> list[str]:
    return [f"{p.direction} {p.command} {p.sequence}" for p in page.pdus]


def test_a_window_lists_both_layouts_oldest_first_by_each_pdus_own_time(
        log: dict[str, Any]) -> None:
    page = _page(log)
    assert _names(page) == [
        "out submit_sm 1", "out submit_sm 2", "out enquire_link 3", "in submit_sm_resp 1",
        "in submit_sm_resp 2", "in deliver_sm 9", "in deliver_sm 10", "out deliver_sm_resp 9"]
    first, resp, receipt, text_receipt = (page.pdus[0], page.pdus[3], page.pdus[5],
                                          page.pdus[6])
    assert (first.reference, first.source, first.destination) == (
        "cmd-7", "447700900000", "447700900101")
    assert first.at == _at(0.1) and first.cursor.row_id == log["out1"]
    assert (resp.smsc_message_id, resp.status) == ("00AB12", "0x00000000 ESME_ROK (no error)")
    assert (receipt.receipt_for, text_receipt.receipt_for) == ("ab12", "0077")
    assert page.next_after is None and page.rows_read == 4
    assert _page(log, link="other").pdus[0].reference == "cmd-9"


def test_the_window_is_the_pdus_time_not_the_rows(log: dict[str, Any]) -> None:
    # The late row was written at +300 s; its PDUs crossed the wire at +5 s.
    assert _names(_page(log, since=_at(4), until=_at(5.2))) == ["in deliver_sm 9"]
    assert _page(log, since=_at(200), until=_at(400)).pdus == []
    # Beyond the slack a late row is out of reach, and the page says how many rows it read.
    assert _page(log, since=_at(4), until=_at(5.2), slack=timedelta(seconds=60)).pdus == []


def test_a_database_clock_a_little_behind_the_hosts_loses_no_pdu(log: dict[str, Any]) -> None:
    assert _names(_page(log, link="skewed", since=_at(39), until=_at(41))) == [
        "in submit_sm_resp 4"]
    after = Cursor(int(_at(39.5).timestamp() * 1_000_000), 0, 0)
    assert len(_page(log, link="skewed", since=_at(0), until=_at(60), after=after).pdus) == 1


def test_pages_follow_each_other_exactly_through_ties(log: dict[str, Any]) -> None:
    whole = [p.cursor for p in _page(log).pdus]
    seen: list[Cursor] = []
    after = None
    while True:
        page = _page(log, limit=1, after=after)
        seen += [p.cursor for p in page.pdus]
        if page.next_after is None:
            break
        after = Cursor.parse(str(page.next_after))
    assert seen == whole and len(set(seen)) == len(whole) == 8


def test_filters_by_direction_command_smsc_id_and_reference(log: dict[str, Any]) -> None:
    assert _names(_page(log, direction="out", commands=frozenset({"submit_sm"}))) == [
        "out submit_sm 1", "out submit_sm 2"]
    # Case, blanks and leading zeros do not matter; the receipt's id matches too.
    assert _names(_page(log, smsc_ids=frozenset({" ab12 "}))) == [
        "in submit_sm_resp 1", "in deliver_sm 9"]
    assert _names(_page(log, smsc_ids=frozenset({"77"}))) == [
        "in submit_sm_resp 2", "in deliver_sm 10"]
    assert _names(_page(log, smsc_ids=frozenset({"ab12"}), references=frozenset({"cmd-7"}))) \
        == ["out submit_sm 1", "in submit_sm_resp 1", "in deliver_sm 9"]
    # A number by its digits, as source or destination.
    assert _names(_page(log, addresses=frozenset({"+44 7700 900102"}))) == ["out submit_sm 2"]
    assert _names(_page(log, addresses=frozenset({"+447700900101"}))) == [
        "out submit_sm 1", "in deliver_sm 9", "in deliver_sm 10"]
    # An alphanumeric sender is compared as written (it has no digits to compare).
    assert _names(_page(log, link="other", addresses=frozenset({"mybank"}))) == [
        "out submit_sm 1"]
    assert _page(log, link="other", addresses=frozenset({"other"})).pdus == []


def test_an_unknown_link_names_the_links_that_have_pdus(log: dict[str, Any]) -> None:
    page = _page(log, link="carier")
    assert page.pdus == [] and page.other_links == ("broken", "carrier", "other", "skewed")
    assert page.to_json()["other_links"] == ["broken", "carrier", "other", "skewed"]
    # A known link with nothing in the window is not a typo.
    assert _page(log, since=_at(200), until=_at(201)).other_links is None


def test_a_stored_sms_gives_its_link_time_smsc_id_and_command_reference(
        log: dict[str, Any]) -> None:
    with log["engine"].begin() as conn:
        mt = around_message_txn(conn, log["mt"])
        assert (mt.link, mt.at, mt.smsc_ids, mt.references, mt.addresses) == (
            "carrier", _at(0.2), {"ab12"}, {"cmd-7"}, set())
        mo = around_message_txn(conn, log["mo"])
        assert (mo.smsc_ids, mo.references, mo.addresses) == (set(), set(), {"+447700900101"})
        with pytest.raises(NotFound, match="not an SMS of an SMPP link"):
            around_message_txn(conn, log["out1"])
        with pytest.raises(NotFound, match="no message with id"):
            around_message_txn(conn, 10**12)


def test_an_unreadable_batch_is_shown_with_the_reason_not_skipped(log: dict[str, Any]) -> None:
    page = _page(log, link="broken", since=_at(0), until=_at(2))
    assert [(p.command, p.note) for p in page.pdus] == [
        ("unreadable batch", "record 1: cut short in its header")]
    assert page.to_json()["items"][0]["hex"] == "4d50423100" "01"


def test_bad_cursors_limits_and_windows_are_refused() -> None:
    for bad in ("", "1.2", "a.b.c", "1.2.-3", "1.2.3.4"):
        with pytest.raises(CursorError, match="not a PDU cursor"):
            Cursor.parse(bad)
    with pytest.raises(ValueError, match="limit"):
        PduQuery(link="x", since=T0, until=_at(1), limit=0)
    with pytest.raises(ValueError, match="window is empty"):
        PduQuery(link="x", since=_at(1), until=T0)


def test_the_look_up_uses_the_pdu_log_index(log: dict[str, Any]) -> None:
    with log["engine"].begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = conn.execute(text(
            "EXPLAIN (FORMAT JSON) SELECT id FROM messages WHERE kind IN ('pdu', 'pdu_batch') "
            "AND link = 'carrier' AND created_at >= :a AND created_at < :b "
            "ORDER BY created_at, id"), {"a": T0, "b": _at(60)}).scalar_one()
    scans = [n for n in plan_nodes(plan) if str(n.get("Relation Name", "")).startswith(
        "messages_part_")]
    assert scans and {n.get("Index Name", "").startswith("messages_part_") and
                      "link_created_at" in n.get("Index Name", "") for n in scans} == {True}


def test_the_use_case_fills_the_window_and_names_the_field_at_fault(
        log: dict[str, Any]) -> None:
    with log["engine"].begin() as conn:
        # Without either end: the ten minutes up to now; with one: ten minutes from it.
        page = find_pdus_txn(conn, now=_at(3), link="carrier")
        assert (page.query.since, page.query.until) == (_at(-597), _at(3))
        assert find_pdus_txn(conn, now=_at(999), link="carrier",
                             since=_at(0)).query.until == _at(600)
        # A stored SMS brings its link, its window and what identifies its PDUs.
        page = find_pdus_txn(conn, now=_at(999), message_id=log["mt"])
        assert (page.query.link, page.query.since, page.query.until) == (
            "carrier", _at(0.2 - 120), _at(0.2 + 120))
        assert _names(page) == ["out submit_sm 1", "in submit_sm_resp 1", "in deliver_sm 9"]
        for kwargs, field in (({}, "link"), ({"link": "x", "since": _at(1), "until": _at(1)},
                                             "until"),
                              ({"link": "x", "limit": 0}, "limit"),
                              ({"link": "x", "after": "nope"}, "after"),
                              ({"link": "other", "message_id": log["mt"]}, "link")):
            with pytest.raises(InvalidRequest) as refused:
                find_pdus_txn(conn, now=_at(0), **kwargs)
            assert refused.value.field == field


def test_the_link_checks_are_look_ups_in_the_index(log: dict[str, Any]) -> None:
    for statement, params in ((LINKS_QUERY, {"limit": 100}), (HAS_LINK_QUERY, {"link": "x"})):
        with log["engine"].begin() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = conn.execute(text("EXPLAIN (FORMAT JSON) " + statement.text), params
                                ).scalar_one()
        scans = {n.get("Index Name", "") for n in plan_nodes(plan)
                 if str(n.get("Relation Name", "")).startswith("messages_part_")}
        assert scans and all("link_created_at" in name for name in scans), statement.text
