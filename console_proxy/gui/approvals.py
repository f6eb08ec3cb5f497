"""The approvals inbox: requests that wait for a second admin, approved or rejected here.

An admin other than the requester decides (the API refuses the requester
with a clear message, shown as it is).  Approving a command queues it then,
and the result (the command or the fan-out) is shown; a fan-out's progress
appears in the live events tab.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client
from console_proxy.client.models import Approval, Page
from console_proxy.gui.paged import Column, PagedModel
from console_proxy.gui.send import queued_text
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import explain, request_text

STATUSES = ("pending", "approved", "rejected", "expired", "all")
_PENDING = QColor("#fff3cd")


class ApprovalsInbox(QWidget):
    """Approvals (pending first), with Approve and Reject for the selected one."""

    fanout_started = Signal(int, str)
    pending_count = Signal(int)

    def __init__(self, client: Client, tasks: Tasks, *, role: str = "?", me: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._tasks = tasks
        self._role = role
        self._me = me
        self.status = QComboBox()
        self.status.addItems(list(STATUSES))
        self.refresh_button = QPushButton("Refresh")
        self.model = PagedModel[Approval](tasks, [
            Column[Approval]("ID", lambda a: a.id),
            Column[Approval]("Action", lambda a: a.action),
            Column[Approval]("Request", lambda a: request_text(a.request)),
            Column[Approval]("Requested by", lambda a: a.requested_by),
            Column[Approval]("Requested", lambda a: a.requested_at),
            Column[Approval]("Expires", lambda a: a.expires_at),
            Column[Approval]("Status", lambda a: a.status),
            Column[Approval]("Decided by", lambda a: a.decided_by),
        ])
        self.model.highlight = lambda a: _PENDING if a.status == "pending" else None
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("reason for a rejection (kept in the audit)")
        self.approve_button = QPushButton("Approve")
        self.reject_button = QPushButton("Reject")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        note = QLabel("A different admin than the requester approves or rejects; nothing is "
                      "signed or sent before the approval." + (
                          "" if role == "admin" else f" Your role {role} may look only."))
        note.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.status)
        top.addStretch(1)
        top.addWidget(self.refresh_button)
        decide = QHBoxLayout()
        decide.addWidget(self.reason, 1)
        decide.addWidget(self.approve_button)
        decide.addWidget(self.reject_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(note)
        layout.addWidget(self.table, 1)
        layout.addLayout(decide)
        layout.addWidget(self.result)

        self.status.currentIndexChanged.connect(lambda _: self.refresh())
        self.refresh_button.clicked.connect(self.refresh)
        self.approve_button.clicked.connect(lambda: self.decide("approve"))
        self.reject_button.clicked.connect(lambda: self.decide("reject"))
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        self.model.loaded.connect(lambda _: self._loaded())
        self.model.failed.connect(lambda exc: self.result.setText(
            explain(exc, role=self._role, action="list approvals").text))
        self._selected()

    def refresh(self) -> None:
        """Fetch the approvals again."""
        status = self.status.currentText()
        client = self._client

        def fetch(after: str | None, limit: int) -> Page[Approval]:
            return client.list_approvals(status=None if status == "all" else status,
                                         limit=limit, after=after)

        self.model.reset(fetch)

    def _loaded(self) -> None:
        self.pending_count.emit(sum(1 for a in self.model.items() if a.status == "pending"))
        self._selected()

    def selected(self) -> Approval | None:
        """The approval chosen in the table."""
        rows = self.table.selectionModel().selectedRows()
        return self.model.item(rows[0].row()) if rows else None

    def select(self, approval_id: str) -> bool:
        """Choose the approval ``approval_id`` in the table; False if it is not shown."""
        for row, approval in enumerate(self.model.items()):
            if approval.id == approval_id:
                self.table.selectRow(row)
                return True
        return False

    def _selected(self) -> None:
        approval = self.selected()
        pending = approval is not None and approval.status == "pending"
        self.approve_button.setEnabled(pending)
        self.reject_button.setEnabled(pending)

    def decide(self, verb: str) -> None:
        """Approve or reject the selected approval (on a worker thread)."""
        approval = self.selected()
        if approval is None:
            return
        self.approve_button.setEnabled(False)
        self.reject_button.setEnabled(False)
        if verb == "approve":
            self._tasks.run(self._client.approve, approval.id,
                            on_done=lambda a: self._decided(a, "approved"),
                            on_error=lambda exc: self._refused(approval, verb, exc))
        else:
            self._tasks.run(self._client.reject, approval.id,
                            self.reason.text().strip() or None,
                            on_done=lambda a: self._decided(a, "rejected"),
                            on_error=lambda exc: self._refused(approval, verb, exc))

    def _decided(self, approval: Approval, verb: str) -> None:
        text = f"{verb} approval {approval.id} ({approval.action}): now {approval.status}"
        result = approval.result
        if result is not None:
            text += "\n" + queued_text(result.command, result.count, result.command_id,
                                       result.fanout_id)
            if result.fanout_id is not None:
                self.fanout_started.emit(result.fanout_id, request_text(approval.request))
        self.result.setText(text)
        self.reason.clear()
        self.refresh()

    def _refused(self, approval: Approval, verb: str, exc: BaseException) -> None:
        self.result.setText(explain(exc, role=self._role, action=f"{verb} requests",
                                    subject=f"approval {approval.id}").text)
        self._selected()
