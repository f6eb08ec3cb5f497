"""The main window: one tab per view, a banner for alerts and errors, who is signed in.

Views are added as they exist: fleet, device, send, approvals, live events
(with fan-out progress), charts, and the audit for admins.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console_proxy.gui.device import DeviceView
from console_proxy.gui.fleet import FleetView
from console_proxy.gui.signin import Session
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import explain


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
        self.setAutoFillBackground(True)
        self.hide()

    def show_message(self, text: str, *, alert: bool = False) -> None:
        """Show ``text``; red for an alert or an error, yellow otherwise."""
        colour = "#f8d7da" if alert else "#fff3cd"
        self.setStyleSheet(f"Banner {{ background: {colour}; }} QLabel {{ color: #222; }}")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.label.setText(text)
        self.show()

    @property
    def text(self) -> str:
        """What the banner says ("" when hidden)."""
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    """The desktop console for one signed-in admin."""

    def __init__(self, session: Session, *, page_size: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle(f"MEPL desktop console — {session.me.name} ({session.role})")
        self.tasks = Tasks(session.client.submit, self)
        self.tasks.error.connect(self.show_error)
        self.banner = Banner()
        self.tabs = QTabWidget()
        self.fleet = FleetView(session.client, self.tasks, role=session.role,
                               page_size=page_size)
        self.tabs.addTab(self.fleet, "Fleet")
        self.device = DeviceView(session.client, self.tasks, role=session.role)
        self.tabs.addTab(self.device, "Device")
        self.fleet.open_device.connect(self.open_device)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs)
        self.setCentralWidget(central)
        self.who = QLabel(session.summary)
        self.statusBar().addPermanentWidget(self.who)
        self.resize(1100, 700)

    def start(self) -> None:
        """Fetch the first pages and open the live event stream."""
        self.fleet.start()

    def open_device(self, identifier: str) -> None:
        """Show one device in the device view."""
        self.device.load(identifier)
        self.tabs.setCurrentWidget(self.device)

    def show_error(self, exc: BaseException) -> None:
        """Show a failure nobody else handled in the banner."""
        self.banner.show_message(explain(exc, role=self.session.role).text, alert=True)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Stop the live stream and close the connections."""
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop background work and close the client (idempotent)."""
        self.session.close()
