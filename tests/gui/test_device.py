"""The device view: identity history, command timeline with states, messages, raw bytes."""

from __future__ import annotations

import threading
from typing import Any

from pytestqt.qtbot import QtBot

from console_proxy.gui.device import texts
from tests.console_proxy.console_fixtures import COMMAND, MESSAGES, FakeApi
from tests.gui.harness import Gui


def test_opening_a_device_shows_its_identity_history_commands_and_messages(
        gui: Gui, qtbot: QtBot) -> None:
    window = gui.window("val", "viewer")
    window.open_device("+447700900123")
    view = window.device
    assert window.tabs.currentWidget() is view
    states = ["- → queued", "queued → sent", "sent → done"]
    qtbot.waitUntil(lambda: view.message_table.rowCount() == 2
                    and view.timeline() == [("#42 lock done", states)], timeout=10000)
    assert view.title.text() == "Device 356938035643809"
    assert "carrier 234-15" in view.fields.text() and "state active" in view.fields.text()
    assert texts(view.identity, 1) == ["imsi"]
    assert texts(view.identity, 2) == ["234150888888888"]
    assert texts(view.identity, 3) == ["234150999999999"]
    child = view.commands.topLevelItem(0).child(1)
    assert (child.text(0), child.text(1), child.text(3)) == ("submitted", "queued → sent",
                                                             "dispatcher")
    assert texts(view.message_table, 1) == ["← in", "→ out"]
    assert texts(view.message_table, 5) == ["verified", "signed"]
    assert texts(view.message_table, 6) == ["reply to lock: ok", "lock emergency_dialer=yes"]


def test_a_message_shows_its_decoded_fields_and_its_raw_bytes_on_demand(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi, monkeypatch: Any) -> None:
    monkeypatch.setitem(COMMAND, "frame", "4d4501" + "00" * 13 + "ff")
    monkeypatch.setitem(MESSAGES[0], "payload_hex", "0a0b0c")
    window = gui.window()
    window.open_device("356938035643809")
    view = window.device
    qtbot.waitUntil(lambda: view.message_table.rowCount() == 2, timeout=10000)
    view.message_table.selectRow(0)
    assert '"verdict": "verified"' in view.decoded.toPlainText()
    assert "0a0b0c" not in view.decoded.toPlainText()  # raw bytes only on demand
    view.raw_button.click()
    assert "— raw bytes (3 octets) —\n0000  0a 0b 0c" in view.decoded.toPlainText()
    view.message_table.selectRow(1)  # the outbound command: its frame, from the command
    view.raw_button.click()
    qtbot.waitUntil(lambda: "frame of command 42 as sealed (17 octets)"
                    in view.decoded.toPlainText(), timeout=10000)
    assert "0000  4d 45 01 00" in view.decoded.toPlainText()
    assert "0010  ff" in view.decoded.toPlainText()


def test_an_unknown_device_says_so(gui: Gui, qtbot: QtBot) -> None:
    window = gui.window()
    window.open_device("1234567")
    qtbot.waitUntil(lambda: "unknown device 1234567" in window.device.status.text(),
                    timeout=10000)
    assert "no device has this IMEI, IMSI or phone number" in window.device.status.text()


def test_a_history_arriving_after_the_timeline_was_refilled_goes_to_the_new_rows(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    window = gui.window(live=False)
    view = window.device
    client = window.session.client
    release = threading.Event()
    original = client.get_command

    def slow_get_command(command_id: Any) -> Any:
        release.wait(10)
        return original(command_id)

    client.get_command = slow_get_command  # type: ignore[method-assign]
    window.open_device("356938035643809")
    qtbot.waitUntil(lambda: view.commands.topLevelItemCount() == 1, timeout=10000)
    view.load_commands()  # a live event refills the timeline while the history is fetched
    qtbot.waitUntil(lambda: len(fake_api.of("GET", "/v1/commands")) == 2, timeout=10000)
    qtbot.waitUntil(lambda: not window.tasks.running or window.tasks.running == 2,
                    timeout=10000)  # only the two held history fetches are left
    release.set()
    qtbot.waitUntil(lambda: view.timeline() == [("#42 lock done", [
        "- → queued", "queued → sent", "sent → done"])], timeout=10000)
