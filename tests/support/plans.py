"""Reading ``EXPLAIN (FORMAT JSON)`` output in tests."""

from __future__ import annotations

from typing import Any


def plan_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every plan node in an EXPLAIN (FORMAT JSON) result, outermost first."""
    found: list[dict[str, Any]] = []
    if isinstance(plan, dict):
        if "Node Type" in plan:
            found.append(plan)
        for value in plan.values():
            found += plan_nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            found += plan_nodes(item)
    return found
