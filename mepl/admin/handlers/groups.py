"""The admin API's group handlers: list, show and create groups, change their members."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from mepl.admin.api import Answer, Call
from mepl.app import groups as group_cases


def list_groups_txn(conn: Connection, call: Call) -> Answer:
    """Every group."""
    rows = group_cases.list_groups_txn(conn, call.actor)
    return Answer(200, {"items": [_group_json(g) for g in rows], "next": None})


def _group_json(group: Any) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "description": group.description,
            "created_at": group.created_at.isoformat(), "members": group.members}


def get_group_txn(conn: Connection, call: Call) -> Answer:
    """A group and its first members."""
    details = group_cases.show_group_txn(conn, call.actor, call.params["name"],
                                         limit=call.query["limit"])
    return Answer(200, {"group": _group_json(details.group),
                        "members": [m.as_json() for m in details.members]},
                  target=details.group.name)


def create_group_txn(conn: Connection, call: Call) -> Answer:
    """Create a group, with members."""
    name = call.body["name"]
    group_cases.create_group_txn(conn, call.actor, name, call.body.get("description", ""))
    if call.body.get("devices"):
        group_cases.change_members_txn(conn, call.actor, name, call.body["devices"],
                                       adding=True, region=call.api.region)
    group = group_cases.show_group_txn(conn, call.actor, name, limit=0).group
    return Answer(201, {"group": _group_json(group)}, target=name)


def change_members_txn(conn: Connection, call: Call) -> Answer:
    """Add and remove members."""
    name, added, removed = call.params["name"], 0, 0
    if call.body.get("add"):
        added = group_cases.change_members_txn(conn, call.actor, name, call.body["add"],
                                               adding=True, region=call.api.region)
    if call.body.get("remove"):
        removed = group_cases.change_members_txn(conn, call.actor, name,
                                                 call.body["remove"], adding=False,
                                                 region=call.api.region)
    return Answer(200, {"added": added, "removed": removed}, target=name)
