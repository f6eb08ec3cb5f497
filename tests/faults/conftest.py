"""The fault suite's marker, scale selection and terminal report.

Each scenario runs at a quick scale in the normal suite (tens of devices, a
few faults).  The full scale is marked ``faults`` and runs only when
``MEPL_FAULT_SUITE=full`` (the ``faults`` tox environment sets it); otherwise
it is deselected, so the normal suite and CI stay within their time budget.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.faults.ledger import summary_lines

FULL = os.environ.get("MEPL_FAULT_SUITE", "") == "full"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the fault suite at full scale (tox -e faults; MEPL_FAULT_SUITE=full)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("faults") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines()
    if lines:
        terminalreporter.section("fault suite: faults injected and invariants checked")
        for line in lines:
            terminalreporter.write_line(line)
