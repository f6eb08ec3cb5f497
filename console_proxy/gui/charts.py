"""Charts where people would rather look than read (Qt Charts, shipped with PySide6).

Commands by state over time (stacked bars), delivery latency (how many
deliveries took how long, from the commands' histories), alerts per day
(stacked by kind).  The numbers come from :mod:`console_proxy.gui.chartdata`,
fetched on a worker thread.
"""

from __future__ import annotations

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSet,
    QChart,
    QChartView,
    QStackedBarSeries,
    QValueAxis,
)
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client
from console_proxy.gui.chartdata import ChartData, Stacked, gather
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import explain

COLOURS = {"queued": "#f0ad4e", "sending": "#5bc0de", "sent": "#337ab7",
           "delivered": "#8bc34a", "done": "#2e7d32", "refused": "#c62828",
           "failed": "#e53935", "expired": "#9e9e9e", "cancelled": "#bdbdbd",
           "commands": "#337ab7", "sim_swap": "#c62828", "lost": "#6a1b9a",
           "geofence": "#ef6c00", "left_territory": "#ef6c00"}


def stacked_chart(title: str, data: Stacked, y_title: str) -> QChart:
    """A stacked bar chart of ``data``."""
    chart = QChart()
    chart.setTitle(title)
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    series = QStackedBarSeries()
    for name, values in data.series.items():
        bars = QBarSet(name)
        bars.append([float(v) for v in values])
        if name in COLOURS:
            bars.setColor(QColor(COLOURS[name]))
        series.append(bars)
    chart.addSeries(series)
    x_axis = QBarCategoryAxis()
    x_axis.append(list(data.categories) or ["(nothing yet)"])
    chart.addAxis(x_axis, Qt.AlignmentFlag.AlignBottom)
    series.attachAxis(x_axis)
    y_axis = QValueAxis()
    highest = max((sum(column) for column in zip(*data.series.values(), strict=True)),
                  default=0)
    step = max(1, -(-highest // 5))  # at most about five whole-number steps
    y_axis.setRange(0, max(1, -(-highest // step) * step))
    y_axis.setLabelFormat("%d")
    y_axis.setTickType(QValueAxis.TickType.TicksDynamic)
    y_axis.setTickAnchor(0)
    y_axis.setTickInterval(step)
    y_axis.setTitleText(y_title)
    chart.addAxis(y_axis, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(y_axis)
    chart.legend().setVisible(len(data.series) > 1)
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    return chart


def values(chart: QChart) -> dict[str, list[float]]:
    """The bar sets of a chart made by :func:`stacked_chart`, by name (for tests)."""
    found: dict[str, list[float]] = {}
    for series in chart.series():
        if isinstance(series, QStackedBarSeries):
            for bars in series.barSets():
                found[bars.label()] = [bars.at(i) for i in range(bars.count())]
    return found


class ChartsView(QWidget):
    """Three charts and a Refresh button; the data is fetched on a worker thread."""

    def __init__(self, client: Client, tasks: Tasks, *, role: str = "?",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._tasks = tasks
        self._role = role
        self.data: ChartData | None = None
        self.status = QLabel("Refresh to draw the charts from the latest commands and alerts.")
        self.status.setWordWrap(True)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.by_state = self._view()
        self.latency = self._view()
        self.alerts = self._view()
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(self.refresh_button)
        grid = QGridLayout()
        grid.addWidget(self.by_state, 0, 0, 1, 2)
        grid.addWidget(self.latency, 1, 0)
        grid.addWidget(self.alerts, 1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid, 1)

    @staticmethod
    def _view() -> QChartView:
        view = QChartView()
        view.setRenderHint(QPainter.RenderHint.Antialiasing)
        view.setMinimumHeight(200)
        return view

    def refresh(self) -> None:
        """Fetch the numbers again and redraw."""
        self.refresh_button.setEnabled(False)
        self.status.setText("fetching commands, their histories and alerts …")
        self._tasks.run(gather, self._client, on_done=self.show_data, on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.refresh_button.setEnabled(True)
        self.status.setText(explain(exc, role=self._role, action="read commands and alerts")
                            .text)

    def show_data(self, data: ChartData) -> None:
        """Draw ``data``."""
        self.data = data
        self.refresh_button.setEnabled(True)
        self.status.setText(f"From the latest {data.commands_seen} command(s), the histories "
                            f"of {data.latencies_seen} delivered one(s) and "
                            f"{data.alerts_seen} alert(s).")
        self.by_state.setChart(stacked_chart("Commands by state (by creation time)",
                                             data.by_state, "commands"))
        self.latency.setChart(stacked_chart("Delivery latency (sent → delivered)",
                                            data.latency, "commands"))
        self.alerts.setChart(stacked_chart("Alerts per day", data.alerts, "alerts"))
