"""The OpenAPI 3.1 document, generated from the route table (never written by hand).

``mepl admin openapi`` prints it, the API serves it at ``GET /v1/openapi.json``
and docs/admin-api.openapi.json is the checked-in copy (a test regenerates
and compares it).  Each operation carries ``x-mepl-role`` (the role it
needs), ``x-mepl-audit-action`` and, where the role depends on the body,
``x-mepl-role-by-body``: the console proxy enforces roles from these.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from mepl.admin.assertion import HEADER
from mepl.admin.routes import ROUTES, Route

TITLE = "MEPL admin API"
VERSION = "1"

_DESCRIPTIONS = {200: "OK", 201: "created", 202: "pending two-person approval",
                 400: "invalid request", 401: "not authenticated",
                 403: "the role does not allow it", 404: "not found",
                 409: "conflict with the present state", 500: "internal error",
                 503: "the audit cannot be written: nothing was done"}


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.name, "summary": route.summary,
        "x-mepl-role": route.role, "x-mepl-audit-action": route.audit_action,
        "responses": {}}
    if route.proxy_too:
        operation["x-mepl-roles-also"] = ["proxy"]
    if route.role_by_body is not None:
        operation["x-mepl-role-by-body"] = {"field": route.role_by_body.field,
                                            "roles": dict(sorted(
                                                route.role_by_body.roles.items()))}
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string"}}
                  for name in re.findall(r"\{(\w+)\}", route.path)]
    parameters += [{"name": p.name, "in": "query", "required": False,
                    "description": p.description, "schema": p.schema} for p in route.query]
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        operation["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": route.request}}}
    for status, schema in sorted(route.responses.items()):
        media = ("text/event-stream" if route.stream and status == 200
                 else "application/json")
        operation["responses"][str(status)] = {
            "description": _DESCRIPTIONS.get(status, "answer"),
            "content": {media: {"schema": schema}}}
    return operation


@lru_cache(maxsize=1)
def _document_text() -> str:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    doc = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "The admin API of MEPL, reached only through the console "
                                "proxy (docs/admin-api.md)."},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"proxyAssertion": {
            "type": "apiKey", "in": "header", "name": HEADER,
            "description": "the console proxy's signed assertion"}}},
        "security": [{"proxyAssertion": []}],
        "paths": paths,
    }
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def document() -> dict[str, Any]:
    """The OpenAPI document as data (a fresh copy)."""
    data: dict[str, Any] = json.loads(_document_text())
    return data


def document_text() -> str:
    """The OpenAPI document as it is checked in (indented JSON, final newline)."""
    return _document_text()
