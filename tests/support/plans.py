"""Reading ``EXPLAIN (FORMAT JSON)`` output in tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, event


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


def explain_executes(engine: Engine, run: Callable[[Connection], object], *,
                     modes: Sequence[str] = ("force_generic_plan",),
                     analyze: bool = False) -> list[list[Any]]:
    """The plans of the prepared statements ``run`` executes: per statement, one
    EXPLAIN (FORMAT JSON) per ``plan_cache_mode`` in ``modes``.

    Each is explained after ``run``'s transaction is rolled back, with the plan
    guards it ran with (:data:`blobstore.prepared.PLAN_GUARDS`).
    """
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.startswith("PREPARE"):
            captured.append((statement, parameters))

    plans: list[list[Any]] = []
    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", capture)
        run(conn)
        event.remove(conn, "before_cursor_execute", capture)
        conn.rollback()
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        explain = "EXPLAIN (ANALYZE, FORMAT JSON) " if analyze else "EXPLAIN (FORMAT JSON) "
        for statement, parameters in captured:
            *guards, execute = statement.split("; ")
            assert execute.startswith("EXECUTE"), statement
            per_mode = []
            for mode in modes:
                cursor.execute("; ".join([*guards, f"SET LOCAL plan_cache_mode = {mode}"]))
                cursor.execute(explain + execute, parameters)
                plan = cursor.fetchone()[0]
                per_mode.append(json.loads(plan) if isinstance(plan, str) else plan)
            plans.append(per_mode)
        conn.rollback()
    return plans
