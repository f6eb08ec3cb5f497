"""Send, confirm, approve as a second admin, and watch the acknowledgement arrive live."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from console_proxy.gui.window import MainWindow
from tests.console_proxy.console_fixtures import FakeApi
from tests.gui.harness import Gui

ACK = {"command_id": 42, "imei": "356938035643809", "opcode": "lock", "from": "sent",
       "to": "done", "event": "replied", "at": "2026-05-01T10:00:05+00:00", "note": "ok"}
SIM_SWAP = {"id": 6, "imei": "356938035643809", "kind": "sim_swap",
            "at": "2026-05-01T10:01:00+00:00", "details": {"old_imsi": "234150888888888"}}


def live(window: MainWindow, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.events.state.text() == "live events: live", timeout=10000)


def confirm_yes(window: MainWindow, qtbot: QtBot, question: str) -> None:
    """Answer yes to the confirmation ``question`` and wait for the pending approval."""
    box = window.send.confirmation
    assert box is not None and box.isVisible()
    assert box.text() == question
    box.button(box.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: window.send.result.text().startswith("pending approval ap1"),
                    timeout=10000)


def test_a_lock_to_one_device_is_sent_without_a_question(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    window = gui.window("olga", "operator", live=False)
    window.send.choose("lock", device="+44 7700 900123", emergency_dialer="false")
    window.send.send_button.click()
    assert window.send.confirmation is None
    qtbot.waitUntil(lambda: window.send.result.text() == "queued lock for 1 device(s) "
                                                         "(command 42)", timeout=10000)
    body = fake_api.of("POST", "/v1/commands")[0].body
    assert body == {"command": "lock", "args": {"emergency_dialer": "false"},
                    "target": {"device": "+44 7700 900123"}}


def test_a_bad_argument_is_named_before_anything_is_sent(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    window = gui.window("olga", "operator", live=False)
    window.send.choose("sleep", device="356938035643809", minutes="a while")
    window.send.send_button.click()
    assert window.send.problem.text() == ("argument 'minutes' of sleep: expected a whole number "
                                          "from 0 to 65535, got 'a while'")
    assert "#c00" in window.send.inputs["minutes"].styleSheet()
    window.send.choose("notify", group="")
    window.send.send_button.click()
    assert window.send.problem.text() == "give the group to send to"
    assert fake_api.of("POST", "/v1/commands") == []


def test_lock_a_group_with_confirmation_then_a_second_admin_approves_and_the_ack_is_live(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    alice = gui.window("alice", "admin")
    live(alice, qtbot)
    alice.send.choose("lock", group="north")
    alice.send.send_button.click()
    assert fake_api.of("POST", "/v1/commands") == []  # nothing before the answer
    confirm_yes(alice, qtbot, "lock every device of group north. Send it?")
    assert alice.send.result.text() == (
        "pending approval ap1, a second admin must approve (command.lock.group); it expires "
        "at 2026-05-01T11:00:00+00:00\nanother admin approves it in the Approvals tab")
    assert fake_api.of("POST", "/v1/commands")[0].body["confirm"] is True
    assert alice.notifier.sent[-1][0] == "Two-person approval"
    assert "pending approval ap1" in alice.banner.text

    bob = gui.window("bob", "admin")
    inbox = bob.approvals
    qtbot.waitUntil(lambda: inbox.model.column_texts("ID") == ["ap1"], timeout=10000)
    assert inbox.model.column_texts("Request") == ["lock to every device of group north"]
    assert inbox.model.column_texts("Requested by") == ["alice"]
    assert bob.tabs.tabText(bob.tabs.indexOf(inbox)) == "Approvals (1)"
    assert inbox.select("ap1")
    inbox.approve_button.click()
    qtbot.waitUntil(lambda: inbox.result.text().startswith("approved"), timeout=10000)
    assert inbox.result.text() == ("approved approval ap1 (command.lock.group): now approved\n"
                                   "queued lock for 3 device(s) (fan-out 9)")
    assert [r.admin for r in fake_api.of("POST", "/v1/approvals/ap1/approve")] == ["bob"]
    bar = bob.fanouts.bars[9]
    qtbot.waitUntil(lambda: bar.value() == 8, timeout=10000)
    assert (bar.maximum(), bar.format()) == (10, "8 of 10 ended")
    assert bob.fanouts.details[9].text() == ("7 done, 1 failed — now 1 delivered, 6 done, "
                                             "1 failed, 2 queued")

    fake_api.add_event("c1", "command", ACK)
    expected = ("2026-05-01T10:00:05+00:00  command 42  lock  device 356938035643809  "
                "sent -> done  (replied)  ok")
    qtbot.waitUntil(lambda: alice.events.lines()[:1] == [expected], timeout=10000)
    assert not alice.events.is_highlighted(0)


def test_the_requester_may_not_approve_their_own_request(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    alice = gui.window("alice", "admin", live=False)
    alice.send.choose("wipe", device="356938035643809")
    alice.send.send_button.click()
    confirm_yes(alice, qtbot, "wipe erases device 356938035643809. Send it?")
    inbox = alice.approvals
    qtbot.waitUntil(lambda: inbox.select("ap1"), timeout=10000)
    inbox.approve_button.click()
    qtbot.waitUntil(lambda: "you requested this yourself" in inbox.result.text(),
                    timeout=10000)
    assert "What to do: ask another admin to approve it" in inbox.result.text()


def test_answering_no_sends_nothing(gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    window = gui.window("alice", "admin", live=False)
    window.send.choose("lock", fleet=True)
    window.send.send_button.click()
    box = window.send.confirmation
    assert box is not None and box.text() == "lock the whole fleet. Send it?"
    box.button(box.StandardButton.No).click()
    qtbot.waitUntil(lambda: window.send.result.text() == "not sent (not confirmed)",
                    timeout=10000)
    assert fake_api.of("POST", "/v1/commands") == []


def test_a_refused_role_is_a_clear_message(gui: Gui, qtbot: QtBot) -> None:
    window = gui.window("val", "viewer", live=False)
    window.send.choose("lock", device="356938035643809")
    window.send.send_button.click()
    qtbot.waitUntil(lambda: window.send.problem.text() != "", timeout=10000)
    assert window.send.problem.text().startswith(
        "your role viewer may not send lock to device 356938035643809: ask an admin "
        "(role viewer may not send lock)\nWhat to do: ask an operator or an admin\n"
        "Request id: ")
    window.approvals.refresh()
    audit_less = window.tabs.count()
    assert "Audit" not in [window.tabs.tabText(i) for i in range(audit_less)]


def test_an_alert_is_highlighted_counted_and_notified(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    window = gui.window("val", "viewer")
    live(window, qtbot)
    qtbot.waitUntil(lambda: window.fleet.model.column_texts("Open alerts")[:1] == ["1"],
                    timeout=10000)
    fake_api.add_event("s6", "alert", SIM_SWAP)
    qtbot.waitUntil(lambda: window.events.list.count() == 1, timeout=10000)
    assert window.events.lines()[0].startswith("2026-05-01T10:01:00+00:00  ALERT sim_swap  "
                                               "device 356938035643809")
    assert window.events.is_highlighted(0)
    assert window.notifier.sent == [("ALERT sim_swap", 'device 356938035643809 '
                                                       '{"old_imsi":"234150888888888"}')]
    assert window.banner.text.startswith("ALERT sim_swap: device 356938035643809")
    assert window.fleet.model.column_texts("Open alerts")[0] == "2"


def test_the_event_stream_resumes_after_the_connection_drops(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    fake_api.drop_stream_after = 1
    window = gui.window("val", "viewer")
    fake_api.add_event("c1", "command", ACK)
    fake_api.add_event("c2", "command", {**ACK, "command_id": 43})
    qtbot.waitUntil(lambda: window.events.list.count() == 2, timeout=15000)
    assert [line.split("  ")[1] for line in window.events.lines()] == ["command 43",
                                                                      "command 42"]
    streams = fake_api.of("GET", "/v1/events")
    assert len(streams) == 2 and streams[1].headers.get("last-event-id") == "c1"
    assert window.worker.last_event_id == "c2"


def test_the_inbox_looks_again_when_new_commands_appear_live(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    alice = gui.window("alice", "admin")
    live(alice, qtbot)
    alice.send.choose("wipe", device="356938035643809")
    alice.send.send_button.click()
    confirm_yes(alice, qtbot, "wipe erases device 356938035643809. Send it?")
    tab = alice.tabs.indexOf(alice.approvals)
    qtbot.waitUntil(lambda: alice.tabs.tabText(tab) == "Approvals (1)", timeout=10000)
    fake_api.approvals["ap1"]["status"] = "approved"  # another admin approved it
    fake_api.add_event("c1", "command", {**ACK, "from": None, "to": "queued",
                                         "event": "queued", "opcode": "wipe"})
    qtbot.waitUntil(lambda: alice.tabs.tabText(tab) == "Approvals", timeout=10000)
