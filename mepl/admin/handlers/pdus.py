"""The admin API's raw PDU handler: ``GET /v1/pdus``, as ``mepl messages pdus``."""

from __future__ import annotations

from sqlalchemy import Connection

from mepl.admin.api import Answer, Call
from mepl.app.pdus import find_pdus_txn


def _one(call: Call, name: str) -> tuple[str, ...]:
    value = call.query.get(name)
    return () if value is None else (str(value),)


def list_pdus_txn(conn: Connection, call: Call) -> Answer:
    """A link's raw PDUs in a window (or one stored SMS's), oldest first, with their hex."""
    query = call.query
    page = find_pdus_txn(
        conn, now=call.now, link=query.get("link"), message_id=query.get("message"),
        since=query.get("since"), until=query.get("until"), direction=query.get("direction"),
        commands=_one(call, "command"), smsc_ids=_one(call, "smsc_id"),
        references=_one(call, "reference"), addresses=_one(call, "address"),
        after=query.get("after"), limit=query["limit"])
    return Answer(200, page.to_json(), target=page.query.link)
