"""The main window: one tab per view, a banner for alerts and errors, who is signed in.

Tabs: fleet, device, send, approvals, live events (with fan-out progress),
charts, and the audit for admins.  Alerts from the live stream are
highlighted, counted in the fleet table and announced: a desktop
notification where the desktop has a system tray, else the banner.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QStyle,
    QSystemTrayIcon,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client.models import Approval, Event
from console_proxy.gui.approvals import ApprovalsInbox
from console_proxy.gui.audit import AuditView
from console_proxy.gui.charts import ChartsView
from console_proxy.gui.device import DeviceView
from console_proxy.gui.events import EventsPanel, EventsWorker, FanoutPanel
from console_proxy.gui.fleet import FleetView
from console_proxy.gui.send import SendForm, pending_text
from console_proxy.gui.signin import Session
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import cell, explain


class Banner(QWidget):
    """A strip at the top of the window for what must not be missed (alerts, errors)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        row.addWidget(self.label, 1)
        row.addWidget(close)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.hide()

    def show_message(self, text: str, *, alert: bool = False) -> None:
        """Show ``text``; red for an alert or an error, yellow otherwise."""
        colour = "#f8d7da" if alert else "#fff3cd"
        self.setStyleSheet(f"Banner {{ background: {colour}; }} QLabel {{ color: #222; }}")
        self.label.setText(text)
        self.show()

    @property
    def text(self) -> str:
        """What the banner says ("" when hidden)."""
        return self.label.text() if not self.isHidden() else ""


class Notifier:
    """Desktop notifications through the system tray when there is one, else the banner."""

    def __init__(self, window: QWidget, banner: Banner, *, use_tray: bool | None = None) -> None:
        self.banner = banner
        self.tray: QSystemTrayIcon | None = None
        available = QSystemTrayIcon.isSystemTrayAvailable() if use_tray is None else use_tray
        if available:
            icon = window.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
            self.tray = QSystemTrayIcon(QIcon(icon), window)
            self.tray.setToolTip("MEPL desktop console")
            self.tray.show()
        self.sent: list[tuple[str, str]] = []
        """Every notification shown (title, text), oldest first."""

    def notify(self, title: str, text: str, *, alert: bool = True) -> None:
        """Show a notification: ``title`` and ``text``."""
        self.sent.append((title, text))
        if self.tray is not None and self.tray.supportsMessages():
            self.tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, 10000)
        else:
            self.banner.show_message(f"{title}: {text}", alert=alert)


class MainWindow(QMainWindow):
    """The desktop console for one signed-in admin.

    ``page_size`` (rows per request of the tables) and ``poll_ms`` (fan-out
    progress) are for tests and slow links; ``live`` opens the event stream.
    """

    def __init__(self, session: Session, *, page_size: int | None = None,
                 poll_ms: int = 2000, live: bool = True, use_tray: bool | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._live = live
        client, role = session.client, session.role
        self.setWindowTitle(f"MEPL desktop console — {session.me.name} ({role})")
        self.tasks = Tasks(client.submit, self)
        self.tasks.error.connect(self.show_error)
        self.banner = Banner()
        self.notifier = Notifier(self, self.banner, use_tray=use_tray)
        self.tabs = QTabWidget()

        self.fleet = FleetView(client, self.tasks, role=role, page_size=page_size)
        self.device = DeviceView(client, self.tasks, role=role)
        self.send = SendForm(client, self.tasks, role=role)
        self.approvals = ApprovalsInbox(client, self.tasks, role=role, me=session.me.name)
        self.fanouts = FanoutPanel(client, self.tasks, interval_ms=poll_ms)
        self.events = EventsPanel(self.fanouts)
        self.worker = EventsWorker(client, parent=self)
        self.charts = ChartsView(client, self.tasks, role=role)
        self.audit = (AuditView(client, self.tasks, role=role, page_size=page_size)
                      if role == "admin" else None)
        for widget, title in ((self.fleet, "Fleet"), (self.device, "Device"),
                              (self.send, "Send"), (self.approvals, "Approvals"),
                              (self.events, "Live events"), (self.charts, "Charts"),
                              (self.audit, "Audit")):
            if widget is not None:
                self.tabs.addTab(widget, title)
        self.tabs.currentChanged.connect(self._tab_shown)

        self.fleet.open_device.connect(self.open_device)
        self.device.send_to.connect(self.send_to)
        self.send.fanout_started.connect(self.fanouts.track)
        self.send.approval_pending.connect(self._pending)
        self.approvals.fanout_started.connect(self.fanouts.track)
        self.approvals.pending_count.connect(self._pending_count)
        self.worker.received.connect(self._event, Qt.ConnectionType.QueuedConnection)
        self.worker.status.connect(self.events.set_status, Qt.ConnectionType.QueuedConnection)
        self.worker.failed.connect(self.events.set_failed, Qt.ConnectionType.QueuedConnection)
        self.events.alert.connect(self._alert)
        # New commands may be approvals being carried out: look again, at most once a second.
        self._approvals_later = QTimer(self)
        self._approvals_later.setSingleShot(True)
        self._approvals_later.setInterval(1000)
        self._approvals_later.timeout.connect(self.approvals.refresh)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs)
        self.setCentralWidget(central)
        self.who = QLabel(session.summary)
        self.statusBar().addPermanentWidget(self.who)
        self.resize(1100, 700)
        self._closed = False

    def start(self) -> None:
        """Fetch the first pages and open the live event stream."""
        self.fleet.start()
        self.approvals.refresh()
        if self.audit is not None:
            self.audit.refresh()
        if self._live:
            self.worker.start()

    def _tab_shown(self, index: int) -> None:
        if self.tabs.widget(index) is self.charts and self.charts.data is None:
            self.charts.refresh()

    def open_device(self, identifier: str) -> None:
        """Show one device in the device view."""
        self.device.load(identifier)
        self.tabs.setCurrentWidget(self.device)

    def send_to(self, imei: str) -> None:
        """Open the send form for one device."""
        self.send.target_kind.setCurrentIndex(0)
        self.send.target.setText(imei)
        self.tabs.setCurrentWidget(self.send)

    def _pending(self, approval: Approval) -> None:
        self.notifier.notify("Two-person approval", pending_text(approval), alert=False)
        self.approvals.refresh()

    def _pending_count(self, count: int) -> None:
        index = self.tabs.indexOf(self.approvals)
        self.tabs.setTabText(index, f"Approvals ({count})" if count else "Approvals")

    def _event(self, event: Event) -> None:
        self.events.add(event)
        self.device.on_event(event)
        if (event.event == "command" and not event.data.get("from")
                and not self._approvals_later.isActive()):
            self._approvals_later.start()

    def _alert(self, event: Event) -> None:
        data = event.data
        self.fleet.model.count_alert(str(data.get("imei") or "") or None)
        details = data.get("details")
        self.notifier.notify(f"ALERT {data.get('kind')}", f"device {data.get('imei')}"
                             + (f" {cell(details)}" if details else ""))

    def show_error(self, exc: BaseException) -> None:
        """Show a failure nobody else handled in the banner."""
        self.banner.show_message(explain(exc, role=self.session.role).text, alert=True)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Stop the live stream and close the connections."""
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop background work and close the client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.tasks.close()
        self._approvals_later.stop()
        self.fanouts.stop()
        self.worker.stop()
        self.session.close()
