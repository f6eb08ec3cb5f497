"""The fleet table over 100,000 devices: one page at a time, fetched off the UI thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.console_proxy.console_fixtures import FakeApi, Recorded
from tests.gui.harness import Gui

FLEET = 100_000


class BigFleet(FakeApi):
    """The stand-in with a fleet of 100,000 devices, paged by cursor as the API pages."""

    threads: list[str]

    def answer(self, req: Recorded) -> tuple[int, Any]:
        if (req.method, req.path) != ("GET", "/v1/devices"):
            return super().answer(req)
        after = int(req.query.get("after", ["0"])[0])
        limit = min(int(req.query.get("limit", ["50"])[0]), 500)
        last = min(after + limit, FLEET)
        items = [{"id": i, "imei": f"35{i:013d}", "imsi": f"23415{i:010d}",
                  "msisdn": f"+4477{i:08d}", "state": "lost" if i % 7 == 0 else "provisioned",
                  "key_id": 1, "groups": [f"depot-{i % 5}"],
                  "last_seen_at": f"2026-05-01T{i % 24:02d}:00:00+00:00"}
                 for i in range(after + 1, last + 1)]
        return 200, {"items": items, "next": str(last) if last < FLEET else None}


@pytest.fixture
def fake_api() -> FakeApi:
    return BigFleet()


def test_the_table_fetches_one_page_at_a_time_as_the_view_scrolls(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    fetched_on: list[str] = []
    window = gui.window(page_size=200)
    fleet = window.fleet
    original = window.session.client.list_devices

    def spy(**kwargs: Any) -> Any:
        fetched_on.append(threading.current_thread().name)
        return original(**kwargs)

    qtbot.waitUntil(lambda: fleet.model.rowCount() == 200, timeout=10000)
    window.session.client.list_devices = spy  # type: ignore[method-assign]
    fleet.model.reset()  # fetch again through the spy
    qtbot.waitUntil(lambda: fleet.model.rowCount() == 200, timeout=10000)
    assert fleet.model.has_more
    assert fleet.status.text() == "200 device(s) shown — scroll for more"

    for pages in (2, 3):
        fleet.table.scrollToBottom()
        qtbot.waitUntil(lambda n=200 * pages: fleet.model.rowCount() == n,  # type: ignore[misc]
                        timeout=10000)
    assert fleet.model.column_texts("IMEI")[599] == "350000000000600"
    assert fetched_on and all(name.startswith("mdm-client") for name in fetched_on)
    limits = {r.query.get("limit", [""])[0] for r in fake_api.of("GET", "/v1/devices")}
    assert limits == {"200"}  # never the whole fleet at once
    assert fleet.model.rowCount() < FLEET


def test_sorting_orders_the_rows_fetched_and_later_pages_take_their_place(
        gui: Gui, qtbot: QtBot) -> None:
    window = gui.window(page_size=100)
    fleet = window.fleet
    qtbot.waitUntil(lambda: fleet.model.rowCount() == 100, timeout=10000)
    fleet.table.sortByColumn(3, Qt.SortOrder.AscendingOrder)  # state: lost first
    states = fleet.model.column_texts("State")
    assert states[:14] == ["lost"] * 14 and states[14] == "provisioned"
    fleet.table.scrollToBottom()
    qtbot.waitUntil(lambda: fleet.model.rowCount() == 200, timeout=10000)
    states = fleet.model.column_texts("State")
    assert states[:28] == ["lost"] * 28 and set(states[28:]) == {"provisioned"}
