"""The fleet view: search by IMEI, IMSI or phone number, and the paged, sortable device table.

The search box takes a number in any written form.  A whole identifier
(seven digits or more) is looked up as ``mdm-console devices find`` does
(``GET /v1/devices/{identifier}``, which reads phone numbers in any form),
and the device found opens in the device view; anything shorter, or a
number no device has in full, searches by prefix
(``GET /v1/devices?q=``).  State and group narrow the list.
"""

from __future__ import annotations

from collections import Counter

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client, NotFound
from console_proxy.client.models import Device, Page
from console_proxy.gui.paged import Column, PagedModel
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import carrier, explain

STATES = ("", "unprovisioned", "provisioned", "locked", "lost", "retired", "active")
"""The state filter's choices ("" = any)."""

_LOST = QColor("#fde2e1")


def digits(text: str) -> str:
    """The digits of ``text`` (``+44 (0)7700-900123`` -> ``4407700900123``)."""
    return "".join(c for c in text if c.isdigit())


class DeviceTableModel(PagedModel[Device]):
    """Devices page by page, with the count of open alerts per device kept up to date."""

    def __init__(self, tasks: Tasks, *, page_size: int | None = None) -> None:
        self.open_alerts: Counter[str] = Counter()
        columns = [
            Column[Device]("IMEI", lambda d: d.imei),
            Column[Device]("IMSI", lambda d: d.imsi),
            Column[Device]("Phone", lambda d: d.msisdn),
            Column[Device]("State", lambda d: d.state),
            Column[Device]("Last seen", lambda d: d.last_seen_at),
            Column[Device]("Carrier", lambda d: d.raw.get("carrier") or carrier(d.imsi)),
            Column[Device]("Groups", lambda d: list(d.groups)),
            Column[Device]("Key", lambda d: d.key_id),
            Column[Device]("Open alerts", lambda d: self.open_alerts.get(d.imei, 0) or None,
                           key=lambda d: -self.open_alerts.get(d.imei, 0)),
        ]
        super().__init__(tasks, columns, page_size=page_size)
        self.highlight = lambda d: _LOST if d.state == "lost" or self.open_alerts.get(
            d.imei) else None

    def count_alert(self, imei: str | None) -> None:
        """One more open alert for ``imei`` (from the live events)."""
        if imei:
            self.open_alerts[imei] += 1
            self.refresh_rows()


class FleetView(QWidget):
    """Search box, filters, and the device table; ``open_device(imei)`` on a double-click."""

    open_device = Signal(str)

    def __init__(self, client: Client, tasks: Tasks, *, role: str = "?",
                 page_size: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._tasks = tasks
        self._role = role
        self.search = QLineEdit()
        self.search.setPlaceholderText("IMEI, IMSI or phone number, in any written form — "
                                       "Enter searches")
        self.search.setClearButtonEnabled(True)
        self.state = QComboBox()
        self.state.addItems([s or "any state" for s in STATES])
        self.group = QLineEdit()
        self.group.setPlaceholderText("group")
        self.go = QPushButton("Search")
        self.status = QLabel("")
        self.model = DeviceTableModel(tasks, page_size=page_size)
        self.table = QTableView()
        self.table.setModel(self.model)
        # No sort until a header is clicked: the server's order (by enrolment) first.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(self._activated)

        bar = QHBoxLayout()
        bar.addWidget(self.search, 3)
        bar.addWidget(self.state)
        bar.addWidget(self.group, 1)
        bar.addWidget(self.go)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table)
        layout.addWidget(self.status)

        self.search.returnPressed.connect(self.run_search)
        self.go.clicked.connect(self.run_search)
        self.state.currentIndexChanged.connect(lambda _: self.run_search())
        self.group.returnPressed.connect(self.run_search)
        self.model.loaded.connect(self._loaded)
        self.model.failed.connect(self._failed)

    def start(self) -> None:
        """Show the first page of the whole fleet, and count the open alerts."""
        self.run_search()
        self._tasks.run(self._client.list_alerts, limit=500, on_done=self._alerts,
                        on_error=lambda exc: None)

    def _alerts(self, page: Page[object]) -> None:
        for alert in page.items:
            imei = getattr(alert, "imei", None)
            if imei:
                self.model.open_alerts[imei] += 1
        self.model.refresh_rows()

    def _filters(self) -> dict[str, str | None]:
        state = STATES[self.state.currentIndex()] or None
        return {"state": state, "group": self.group.text().strip() or None}

    def run_search(self) -> None:
        """Search for what the box says (all devices when it is empty)."""
        text = self.search.text().strip()
        filters = self._filters()
        self.status.setText("searching …")
        if len(digits(text)) >= 7:
            self._tasks.run(self._client.get_device, text, on_done=self._found,
                            on_error=lambda exc: self._not_found(text, exc))
            return
        self._list(digits(text) or text or None, filters)

    def _list(self, query: str | None, filters: dict[str, str | None]) -> None:
        client = self._client

        def fetch(after: str | None, limit: int) -> Page[Device]:
            return client.list_devices(q=query, limit=limit, after=after, **filters)

        self.model.reset(fetch)

    def _found(self, device: Device) -> None:
        self.model.show([device])
        self.table.selectRow(0)
        self.open_device.emit(device.imei)

    def _not_found(self, text: str, exc: BaseException) -> None:
        if isinstance(exc, NotFound):
            self._list(digits(text), self._filters())  # perhaps the start of a number
            return
        self._failed(exc, f"device {text}")

    def _loaded(self, rows: int) -> None:
        more = " — scroll for more" if self.model.has_more else ""
        self.status.setText(f"{rows} device(s) shown{more}")

    def _failed(self, exc: BaseException, subject: str = "") -> None:
        self.status.setText(explain(exc, role=self._role, action="look at devices",
                                    subject=subject).text.replace("\n", " — "))

    def _activated(self, index: QModelIndex) -> None:
        self.open_device.emit(self.model.item(index.row()).imei)


__all__ = ["DeviceTableModel", "FleetView", "digits"]
