"""The fleet view: the device table, and finding a device by its phone number in any form."""

from __future__ import annotations

from urllib.parse import unquote

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.console_proxy.console_fixtures import FakeProxy
from tests.gui.harness import Gui


def test_the_fleet_table_shows_devices_with_carrier_groups_key_and_open_alerts(
        gui: Gui, qtbot: QtBot) -> None:
    window = gui.window("val", "viewer")
    model = window.fleet.model
    qtbot.waitUntil(lambda: model.rowCount() == 2 and bool(model.open_alerts), timeout=10000)
    assert model.column_texts("IMEI") == ["356938035643809", "490154203237518"]
    assert model.column_texts("Phone") == ["+447700900123", "+447700900456"]
    assert model.column_texts("State") == ["active", "lost"]
    assert model.column_texts("Carrier") == ["234-15", "-"]
    assert model.column_texts("Groups") == ["north", "-"]
    assert model.column_texts("Key") == ["7", "7"]
    assert model.column_texts("Open alerts") == ["1", "-"]  # the stand-in's SIM swap
    assert window.fleet.status.text() == "2 device(s) shown"


def test_the_table_sorts_by_a_column(gui: Gui, qtbot: QtBot) -> None:
    window = gui.window()
    model = window.fleet.model
    qtbot.waitUntil(lambda: model.rowCount() == 2, timeout=10000)
    window.fleet.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
    assert model.column_texts("State") == ["lost", "active"]


def test_find_a_device_by_phone_number_in_any_written_form(
        gui: Gui, qtbot: QtBot, proxy: FakeProxy) -> None:
    window = gui.window("val", "viewer")
    fleet = window.fleet
    qtbot.waitUntil(lambda: fleet.model.rowCount() == 2, timeout=10000)
    fleet.search.setText("+44 7700 900-123")
    with qtbot.waitSignal(fleet.open_device, timeout=10000) as opened:
        qtbot.keyClick(fleet.search, Qt.Key.Key_Return)
    assert opened.args == ["356938035643809"]
    assert fleet.model.column_texts("IMEI") == ["356938035643809"]
    # Looked up as typed: the server reads phone numbers in any written form.
    assert "/v1/devices/+44 7700 900-123" in [unquote(r.path) for r in proxy.api.requests]


def test_an_unknown_number_falls_back_to_a_prefix_search_and_says_what_it_found(
        gui: Gui, qtbot: QtBot, proxy: FakeProxy) -> None:
    window = gui.window()
    fleet = window.fleet
    fleet.search.setText("1234 567")
    fleet.go.click()
    qtbot.waitUntil(lambda: any(r.query.get("q") == ["1234567"]
                                for r in proxy.api.of("GET", "/v1/devices")), timeout=10000)
    qtbot.waitUntil(lambda: fleet.status.text().endswith("device(s) shown"), timeout=10000)
