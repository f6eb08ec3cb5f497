"""Charts (commands by state, delivery latency, alerts per day) and the audit view."""

from __future__ import annotations

from collections.abc import Sequence

from pytestqt.qtbot import QtBot

from console_proxy.client.models import Alert, Command
from console_proxy.gui.chartdata import (
    alerts_per_day,
    commands_by_state,
    delivery_latency,
    latency_histogram,
)
from console_proxy.gui.charts import values
from tests.console_proxy.console_fixtures import FakeApi
from tests.gui.harness import Gui


def command(created: str, state: str, history: Sequence[tuple[str, str]] = ()) -> Command:
    return Command.parse({"command": {"id": 1, "opcode": "lock", "state": state,
                                      "created_at": created},
                          "history": [{"at": at, "to": to, "event": to} for at, to in history]})


def test_commands_are_counted_by_day_and_state_or_by_hour_within_one_day() -> None:
    days = commands_by_state([command("2026-05-01T10:00:00+00:00", "done"),
                              command("2026-05-02T11:00:00+00:00", "failed"),
                              command("2026-05-02T12:00:00+00:00", "done")])
    assert days.categories == ("2026-05-01", "2026-05-02")
    assert days.series == {"done": [1, 1], "failed": [0, 1]}
    hours = commands_by_state([command("2026-05-01T10:05:00+00:00", "queued"),
                               command("2026-05-01T11:00:00+00:00", "done")])
    assert hours.categories == ("05-01 10:00", "05-01 11:00")
    assert list(hours.series) == ["queued", "done"]  # in lifecycle order


def test_delivery_latency_runs_from_sent_to_delivered_or_done() -> None:
    assert delivery_latency(command("2026-05-01T10:00:00+00:00", "done", [
        ("2026-05-01T10:00:00+00:00", "queued"), ("2026-05-01T10:00:01+00:00", "sent"),
        ("2026-05-01T10:00:31+00:00", "delivered"),
        ("2026-05-01T10:05:00+00:00", "done")])) == 30.0
    assert delivery_latency(command("2026-05-01T10:00:00+00:00", "sent", [
        ("2026-05-01T10:00:01+00:00", "sent")])) is None
    histogram = latency_histogram([1.0, 4.9, 5.0, 200.0, 7200.0])
    assert histogram.series == {"commands": [2, 1, 0, 1, 0, 1]}


def test_alerts_are_counted_per_day_by_kind() -> None:
    alerts = alerts_per_day(Alert.parse(a) for a in (
        {"kind": "sim_swap", "at": "2026-05-01T09:00:00+00:00"},
        {"kind": "lost", "at": "2026-05-01T19:00:00+00:00"},
        {"kind": "sim_swap", "at": "2026-05-03T09:00:00+00:00"}))
    assert alerts.categories == ("05-01", "05-03")
    assert alerts.series == {"lost": [1, 0], "sim_swap": [1, 1]}


def test_the_charts_tab_draws_from_the_commands_their_histories_and_the_alerts(
        gui: Gui, qtbot: QtBot, fake_api: FakeApi) -> None:
    window = gui.window("val", "viewer", live=False)
    window.tabs.setCurrentWidget(window.charts)
    qtbot.waitUntil(lambda: window.charts.data is not None, timeout=10000)
    charts = window.charts
    assert values(charts.by_state.chart()) == {"done": [1.0]}
    assert values(charts.latency.chart()) == {"commands": [1.0, 0, 0, 0, 0, 0]}  # 4 s
    assert values(charts.alerts.chart()) == {"sim_swap": [1.0]}
    assert charts.status.text() == ("From the latest 1 command(s), the histories of 1 "
                                    "delivered one(s) and 1 alert(s).")
    assert [r.path for r in fake_api.of("GET", "/v1/commands/42")]


def test_admins_read_the_audit_with_refusals_highlighted(gui: Gui, qtbot: QtBot) -> None:
    window = gui.window("alice", "admin", live=False)
    assert window.audit is not None
    model = window.audit.model
    qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=10000)
    assert model.column_texts("Actor") == ["alice"]
    assert model.column_texts("Action") == ["command.send"]
    assert model.column_texts("Outcome") == ["ok"]
    assert model.column_texts("Request id") == ["r1"]
    assert window.audit.status.text() == "1 audit row(s) shown"


def test_there_is_no_audit_tab_for_operators(gui: Gui) -> None:
    window = gui.window("olga", "operator", live=False)
    assert window.audit is None
    assert "Audit" not in [window.tabs.tabText(i) for i in range(window.tabs.count())]
