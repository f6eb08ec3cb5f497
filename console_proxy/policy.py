"""Which role each operation needs, from the admin API's OpenAPI document.

Every operation declares ``x-mepl-role``; some also ``x-mepl-role-by-body``
(``{"field": "command", "roles": {"wipe": "admin", ...}}``): the role needed is
then the higher of the two, read from the JSON body's field.  Paths match with
templates (``/v1/devices/{identifier}``; a template segment matches one raw,
still percent-encoded segment), literal segments winning over templates.
Roles are ordered ``viewer < operator < admin``; ``proxy`` is the proxy's own
and no admin has it.  Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ORDER = {"viewer": 0, "operator": 1, "admin": 2}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class PolicyError(Exception):
    """The OpenAPI document cannot be used as a policy."""


def allows(have: str, need: str) -> bool:
    """Whether an admin of role ``have`` may do what needs ``need``."""
    return have in ORDER and need in ORDER and ORDER[have] >= ORDER[need]


def higher(a: str, b: str) -> str:
    """The higher of two roles (an unordered role such as ``proxy`` wins: nobody has it)."""
    if a not in ORDER:
        return a
    if b not in ORDER:
        return b
    return a if ORDER[a] >= ORDER[b] else b


@dataclass(frozen=True)
class Operation:
    """One method + path template and the roles it needs."""

    method: str
    template: str
    role: str
    by_body_field: str | None = None
    by_body: Mapping[str, str] = field(default_factory=dict)

    def role_for(self, body: bytes) -> str:
        """The role this request needs, given its body."""
        if self.by_body_field is None:
            return self.role
        need = self.role
        for value in _field_values(body, self.by_body_field):
            need = higher(need, self.by_body.get(value.strip().lower(), self.role))
        return need


def _field_values(body: bytes, name: str) -> list[str]:
    """Every string value of top-level ``name`` (all of them if the key is repeated)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found.extend(v for k, v in items if k == name and isinstance(v, str))
        return dict(items)

    try:
        json.loads(body or b"null", object_pairs_hook=pairs)
    except ValueError:
        return []
    return found


def _compile(template: str) -> tuple[re.Pattern[str], int]:
    parts, literal = [], 0
    for segment in template.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
            literal += 1
    return re.compile("/".join(parts) + r"\Z"), literal


@dataclass
class Policy:
    """The operations of one OpenAPI document, ready to match requests."""

    operations: list[tuple[re.Pattern[str], int, Operation]]

    @classmethod
    def from_openapi(cls, doc: Mapping[str, Any]) -> Policy:
        """Read every operation's roles; an operation without ``x-mepl-role`` is an error."""
        paths = doc.get("paths")
        if not isinstance(paths, Mapping) or not paths:
            raise PolicyError("the OpenAPI document has no paths")
        operations = []
        for template, item in paths.items():
            for method, op in (item or {}).items():
                if method not in METHODS or not isinstance(op, Mapping):
                    continue
                operations.append(_operation(method.upper(), str(template), op))
        compiled = [(*_compile(o.template), o) for o in operations]
        compiled.sort(key=lambda entry: -entry[1])  # literal segments win
        return cls(compiled)

    def find(self, method: str, path: str) -> Operation | None:
        """The operation ``method path`` (raw path, no query), or None."""
        for pattern, _, op in self.operations:
            if op.method == method and pattern.match(path):
                return op
        return None


def _operation(method: str, template: str, op: Mapping[str, Any]) -> Operation:
    role = op.get("x-mepl-role")
    if not isinstance(role, str):
        raise PolicyError(f"{method} {template}: no x-mepl-role")
    by_body = op.get("x-mepl-role-by-body")
    if by_body is None:
        return Operation(method, template, role)
    if not (isinstance(by_body, Mapping) and isinstance(by_body.get("field"), str)
            and isinstance(by_body.get("roles"), Mapping)):
        raise PolicyError(f"{method} {template}: x-mepl-role-by-body needs field and roles")
    roles = {str(k).lower(): str(v) for k, v in by_body["roles"].items()}
    return Operation(method, template, role, by_body["field"], roles)
