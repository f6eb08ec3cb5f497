"""The audit view (admins): who did what to which target, and how it ended, page by page.

Refused requests (``refused:<reason>``) and errors are highlighted.  The
tab exists only for admins; the API refuses the audit to anyone else.
"""

from __future__ import annotations

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client
from console_proxy.client.models import AuditEntry, Page
from console_proxy.gui.paged import Column, PagedModel
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import explain

_REFUSED = QColor("#f8d7da")


class AuditView(QWidget):
    """The audit trail, filtered by actor and action, fetched as it is scrolled."""

    def __init__(self, client: Client, tasks: Tasks, *, role: str = "?",
                 page_size: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._role = role
        self.actor = QLineEdit()
        self.actor.setPlaceholderText("actor (admin name)")
        self.action = QLineEdit()
        self.action.setPlaceholderText("action, e.g. command.send")
        self.go = QPushButton("Show")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.model = PagedModel[AuditEntry](tasks, [
            Column[AuditEntry]("At", lambda e: e.at),
            Column[AuditEntry]("Actor", lambda e: e.actor),
            Column[AuditEntry]("Role", lambda e: e.role),
            Column[AuditEntry]("Action", lambda e: e.action),
            Column[AuditEntry]("Target", lambda e: e.target),
            Column[AuditEntry]("Outcome", lambda e: e.outcome),
            Column[AuditEntry]("Request id", lambda e: e.details.get("request_id")),
            Column[AuditEntry]("Source", lambda e: e.details.get("source")),
        ], page_size=page_size)
        self.model.highlight = lambda e: _REFUSED if (e.outcome or "ok") != "ok" else None
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        bar = QHBoxLayout()
        bar.addWidget(self.actor)
        bar.addWidget(self.action)
        bar.addWidget(self.go)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.go.clicked.connect(self.refresh)
        self.actor.returnPressed.connect(self.refresh)
        self.action.returnPressed.connect(self.refresh)
        self.model.loaded.connect(lambda rows: self.status.setText(
            f"{rows} audit row(s) shown" + (" — scroll for more" if self.model.has_more
                                            else "")))
        self.model.failed.connect(lambda exc: self.status.setText(
            explain(exc, role=self._role, action="read the audit").text))

    def refresh(self) -> None:
        """Fetch the first page for the filters."""
        actor = self.actor.text().strip() or None
        action = self.action.text().strip() or None
        client = self._client

        def fetch(after: str | None, limit: int) -> Page[AuditEntry]:
            return client.list_audit(actor=actor, action=action, limit=limit, after=after)

        self.model.reset(fetch)
