"""Package rules checked on the source: one way in to the database.

Transactions are opened in one place, :func:`blobstore.pool.run_transaction`
(behind ``DatabasePool.run_interaction`` and ``mepl.app.context.SyncTransactions``);
front ends and use cases never call ``engine.begin()`` / ``engine.connect()``.
The import contracts (``lint-imports``, in tox) keep ``mepl.app`` free of the
CLI and the runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mepl", "sms_gateway", "signing", "console_proxy", "blobstore", "migrations")

ALLOWED = {
    # The one runner of transactions: run_interaction and SyncTransactions go through it.
    "blobstore/pool.py",
    # Alembic runs the migrations and reads the schema revision on a connection of its own.
    "blobstore/migrate.py",
    # Creates the embedded server's database (AUTOCOMMIT) before any schema exists.
    "blobstore/embedded.py",
    # Alembic's own entry point (the `alembic` command), outside any mepl process.
    "migrations/env.py",
}


def engine_calls(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` for every ``.begin(`` / ``.connect(`` on something named *engine*."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("begin", "connect")
                and "engine" in ast.unparse(node.func.value).lower()):
            found.append((node.lineno, ast.unparse(node.func)))
    return found


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_checker_finds_engine_transactions_in_every_spelling() -> None:
    source = ("with engine.begin() as c: pass\n"
              "with database.engine.connect() as c: pass\n"
              "with self._engine.begin() as c: pass\n"
              "with create_engine(url).connect() as c: pass\n"
              "conn.begin_nested()\nsocket.connect(address)\npool.run_interaction('x', f)\n")
    assert [line for line, _ in engine_calls(source)] == [1, 2, 3, 4]


def test_no_module_opens_a_transaction_outside_the_allowed_ones() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line}: {call}"
                 for path in modules() if str(path.relative_to(ROOT)) not in ALLOWED
                 for line, call in engine_calls(path.read_text(encoding="utf-8"))]
    assert offenders == [], "open transactions through run_interaction / run_transaction " \
                            "(mepl.app.context.SyncTransactions in the CLI)"


def test_every_allowed_module_still_needs_its_exception() -> None:
    unneeded = [name for name in sorted(ALLOWED)
                if not engine_calls((ROOT / name).read_text(encoding="utf-8"))]
    assert unneeded == [], "remove these from ALLOWED"


def test_the_cli_and_the_use_cases_are_scanned() -> None:
    scanned = {str(p.relative_to(ROOT)) for p in modules()}
    assert {"mepl/cli/commands.py", "mepl/app/commands.py", "mepl/cli/devices.py",
            "mepl/app/keys.py"} <= scanned
