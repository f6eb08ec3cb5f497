"""The error body of every non-2xx answer the proxy makes itself (the contract's shape)."""

from __future__ import annotations

import json

STATUS = {
    "invalid_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "rate_limited": 429,
    "upstream_unavailable": 502,
    "audit_unavailable": 503,
    "internal": 500,
}


def error_body(code: str, message: str, hint: str, field: str | None = None) -> bytes:
    """``{"error": {"code", "message", "hint"[, "field"]}}`` as UTF-8 JSON."""
    error: dict[str, str] = {"code": code, "message": message, "hint": hint}
    if field is not None:
        error["field"] = field
    return json.dumps({"error": error}, ensure_ascii=False).encode("utf-8")
