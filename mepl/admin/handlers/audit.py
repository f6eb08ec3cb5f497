"""The admin API's record handlers: alerts, the audit trail, refusals only the proxy saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection

from mepl.admin.api import Answer, Call, OnBehalf
from mepl.admin.handlers.common import after_id, next_cursor
from mepl.admin.routes import ROLE_ORDER
from mepl.app import history
from mepl.app.errors import store_errors


def list_alerts_txn(conn: Connection, call: Call) -> Answer:
    """Alerts and security events, newest first."""
    limit = call.query["limit"]
    with store_errors(field="device"):
        rows = history.alerts_page_txn(conn, device=call.query.get("device"),
                                       default_region=call.api.region,
                                       since=call.query.get("since"),
                                       before_id=after_id(call), limit=limit)
    return Answer(200, {"items": [a.to_json() for a in rows],
                        "next": next_cursor(rows, limit, lambda a: a.id)})


def list_audit_txn(conn: Connection, call: Call) -> Answer:
    """The audit trail, newest first."""
    limit = call.query["limit"]
    rows = history.audit_list_txn(conn, actor=call.query.get("actor"),
                                  action=call.query.get("action"), limit=limit,
                                  before_id=after_id(call))
    return Answer(200, {"items": [history.audit_json(r) for r in rows],
                        "next": next_cursor(rows, limit, lambda r: r.id)})


# TLS refusals whose certificate the proxy found chained to the admin CA: its CN names
# one of ours.  Not unknown_ca, no_certificate, a bad signature or a failed handshake.
_NAMED_TLS_REASONS = frozenset({"revoked", "expired", "not_yet_valid", "bad_role",
                                "crl_expired", "crl_missing"})


def _refused_admin(body: Mapping[str, Any]) -> OnBehalf | None:
    """The admin a proxy-reported refusal is about (its certificate's CN and OU), when the
    proxy vouches for the certificate; None otherwise (the proxy stays the actor)."""
    subject = body.get("subject")
    if not subject or (body["event"] == "tls_refused"
                       and body["reason"] not in _NAMED_TLS_REASONS):
        return None
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        return None
    names = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    units = [str(a.value) for a in name.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if len(names) != 1 or not names[0]:
        return None
    role = units[0] if len(units) == 1 and units[0] in ROLE_ORDER else "none"
    return OnBehalf(names[0], role, body.get("fingerprint"))


def proxy_audit_txn(conn: Connection, call: Call) -> Answer:
    """Record a refusal only the proxy saw (the request's own audit row is the record).

    The row's actor is the refused admin (the certificate's CN) when the proxy names
    one it verified against the admin CA, with the proxy in ``details.via``;
    otherwise (no certificate, a foreign CA) the proxy itself."""
    body = call.body
    details = {"event": body["event"], "reason": body["reason"],
               "admin_source": body["source"], "subject": body.get("subject"),
               "admin_fingerprint": body.get("fingerprint"), "method": body.get("method"),
               "path": body.get("path")}
    return Answer(201, {"recorded": True}, target=body.get("subject") or body["source"],
                  details=details, on_behalf=_refused_admin(body))
