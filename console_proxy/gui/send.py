"""Sending a command: a form built from the command catalog, confirmation, pending approval.

The arguments are checked as the CLI's are written (the operator guide's
forms) before anything is sent, and a wrong one is named.  A wipe, and a
lock to a group or the fleet, ask for confirmation first (the same rule as
``mdm-console send``); where two-person approval applies the answer is a
pending approval, shown with its id and expiry, and another admin decides
in the approvals inbox.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import (
    Client,
    device_target,
    fleet_target,
    group_target,
    is_destructive,
)
from console_proxy.client.models import Approval, SendResult
from console_proxy.gui.catalog import (
    BY_NAME,
    COMMANDS,
    Argument,
    ArgumentError,
    check_arguments,
    parse_duration,
)
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import explain, short_time, target_text

TARGETS = ("device", "group", "fleet")
PRIORITIES = ("", "security", "normal", "bulk")
_BAD = "border: 1px solid #c00"


def pending_text(approval: Approval) -> str:
    """``pending approval 17, a second admin must approve (command.wipe); it expires at ...``."""
    expires = f"; it expires at {short_time(approval.expires_at)}" if approval.expires_at else ""
    return (f"pending approval {approval.id}, a second admin must approve ({approval.action})"
            f"{expires}")


def queued_text(command: str, count: int, command_id: int | None,
                fanout_id: int | None) -> str:
    """``queued lock for 3 device(s) (fan-out 9)``."""
    ids = [f"command {command_id}"] if command_id is not None else []
    ids += [f"fan-out {fanout_id}"] if fanout_id is not None else []
    return f"queued {command} for {count} device(s)" + (f" ({', '.join(ids)})" if ids else "")


class SendForm(QWidget):
    """The send form.  Signals: ``fanout_started(id, label)``, ``approval_pending(approval)``.

    ``confirmation`` is the open confirmation box while one is asked (None
    otherwise); ``result`` says what happened, ``problem`` what is wrong.
    """

    fanout_started = Signal(int, str)
    approval_pending = Signal(object)

    def __init__(self, client: Client, tasks: Tasks, *, role: str = "?",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._tasks = tasks
        self._role = role
        self.inputs: dict[str, QLineEdit | QComboBox] = {}
        self.confirmation: QMessageBox | None = None

        self.command = QComboBox()
        for spec in COMMANDS:
            self.command.addItem(spec.name + ("  (admins)" if spec.role == "admin" else ""),
                                 spec.name)
        self.summary = QLabel("")
        self.target_kind = QComboBox()
        self.target_kind.addItems(["one device", "a group", "the whole fleet"])
        self.target = QLineEdit()
        self.arguments = QFormLayout()
        self.priority = QComboBox()
        self.priority.addItems(["server's choice", *PRIORITIES[1:]])
        self.valid_for = QLineEdit()
        self.valid_for.setPlaceholderText("default one day; 3600, 90m, 12h, 1d")
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #a40000")
        self.result = QLabel("")
        self.result.setWordWrap(True)

        what = QFormLayout()
        what.addRow("Command", self.command)
        what.addRow("", self.summary)
        target_row = QHBoxLayout()
        target_row.addWidget(self.target_kind)
        target_row.addWidget(self.target, 1)
        what.addRow("To", target_row)
        args_box = QGroupBox("Arguments")
        args_box.setLayout(self.arguments)
        options = QFormLayout()
        options.addRow("Priority", self.priority)
        options.addRow("Valid for", self.valid_for)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addLayout(what)
        layout.addWidget(args_box)
        layout.addLayout(options)
        layout.addLayout(buttons)
        layout.addWidget(self.problem)
        layout.addWidget(self.result)
        layout.addStretch(1)

        self.command.currentIndexChanged.connect(lambda _: self._build_arguments())
        self.target_kind.currentIndexChanged.connect(lambda _: self._target_changed())
        self.send_button.clicked.connect(self.send)
        self._build_arguments()
        self._target_changed()

    # -- the form ---------------------------------------------------------------------------

    def choose(self, command: str, *, device: str | None = None, group: str | None = None,
               fleet: bool = False, **arguments: str) -> None:
        """Fill the form: the command, the target and argument values (as typed)."""
        index = self.command.findData(command)
        if index < 0:
            raise ValueError(f"{command} is not in the command catalog")
        self.command.setCurrentIndex(index)
        kind = 2 if fleet else 1 if group is not None else 0
        self.target_kind.setCurrentIndex(kind)
        self.target.setText(group if group is not None else device or "")
        for name, value in arguments.items():
            widget = self.inputs[name]
            if isinstance(widget, QComboBox):
                widget.setCurrentText(value)
            else:
                widget.setText(value)

    def _spec_name(self) -> str:
        return str(self.command.currentData())

    def _build_arguments(self) -> None:
        while self.arguments.rowCount():
            self.arguments.removeRow(0)
        self.inputs = {}
        spec = BY_NAME[self._spec_name()]
        self.summary.setText(spec.summary + ("; admins only" if spec.role == "admin" else ""))
        for argument in spec.arguments:
            widget = self._input(argument)
            self.inputs[argument.name] = widget
            self.arguments.addRow(argument.name + ("" if argument.required else " (optional)"),
                                  widget)
        if not spec.arguments:
            self.arguments.addRow(QLabel("none"))
        self.problem.setText("")

    @staticmethod
    def _input(argument: Argument) -> QLineEdit | QComboBox:
        if argument.kind in ("flag", "choice"):
            box = QComboBox()
            choices = ("true", "false") if argument.kind == "flag" else argument.choices
            box.addItems(["", *choices] if not argument.required else list(choices))
            box.setToolTip(f"{argument.form}; empty: the default"
                           + (f" ({argument.default})" if argument.default else ""))
            return box
        edit = QLineEdit()
        edit.setPlaceholderText(argument.form + (f" (default {argument.default})"
                                                 if argument.default else ""))
        return edit

    def _target_changed(self) -> None:
        kind = TARGETS[self.target_kind.currentIndex()]
        self.target.setEnabled(kind != "fleet")
        self.target.setPlaceholderText({"device": "IMEI, IMSI or phone number",
                                        "group": "group name", "fleet": ""}[kind])

    def _values(self) -> dict[str, str]:
        values = {}
        for name, widget in self.inputs.items():
            widget.setStyleSheet("")
            values[name] = (widget.currentText() if isinstance(widget, QComboBox)
                            else widget.text())
        return values

    def _target(self) -> dict[str, Any]:
        kind = TARGETS[self.target_kind.currentIndex()]
        if kind == "fleet":
            return fleet_target()
        value = self.target.text().strip()
        if not value:
            raise ArgumentError("target", f"give the {kind} to send to")
        return device_target(value) if kind == "device" else group_target(value)

    # -- sending ----------------------------------------------------------------------------

    def send(self) -> None:
        """Check the form; confirm a destructive command; send it on a worker thread."""
        self.problem.setText("")
        self.result.setText("")
        self.target.setStyleSheet("")
        self.valid_for.setStyleSheet("")
        command = self._spec_name()
        try:
            target = self._target()
            arguments = check_arguments(command, self._values())
            valid_for = parse_duration(self.valid_for.text())
        except ArgumentError as exc:
            self.problem.setText(exc.message)
            bad = {"target": self.target, "valid_for": self.valid_for}.get(
                exc.name) or self.inputs.get(exc.name)
            if bad is not None:
                bad.setStyleSheet(_BAD)
            return
        priority = PRIORITIES[self.priority.currentIndex()] or None
        request = (command, target, arguments, priority, valid_for)
        if is_destructive(command, target):
            self._ask(request)
        else:
            self._send(request, confirm=None)

    def _ask(self, request: tuple[str, dict[str, Any], dict[str, str], str | None,
                                  int | None]) -> None:
        command, target = request[0], request[1]
        what = (f"{command} erases {target_text(target)}" if command == "wipe"
                else f"{command} {target_text(target)}")
        box = QMessageBox(QMessageBox.Icon.Warning, "Confirm a destructive command",
                          f"{what}. Send it?", QMessageBox.StandardButton.Yes
                          | QMessageBox.StandardButton.No, self)
        box.setInformativeText("Where two-person approval applies, nothing is sent until "
                               "a second admin approves.")
        box.setDefaultButton(QMessageBox.StandardButton.No)
        self.confirmation = box

        def answered(button: int) -> None:
            self.confirmation = None
            box.deleteLater()
            if button == QMessageBox.StandardButton.Yes:
                self._send(request, confirm=True)
            else:
                self.result.setText("not sent (not confirmed)")

        box.finished.connect(answered)
        box.open()

    def _send(self, request: tuple[str, dict[str, Any], dict[str, str], str | None,
                                   int | None], *, confirm: bool | None) -> None:
        command, target, arguments, priority, valid_for = request
        self.send_button.setEnabled(False)
        self.result.setText(f"sending {command} to {target_text(target)} …")
        self._tasks.run(self._client.send_command, command, target, args=arguments,
                        priority=priority, valid_for_s=valid_for, confirm=confirm,
                        on_done=lambda result: self._sent(command, target, result),
                        on_error=lambda exc: self._refused(command, target, exc))

    def _sent(self, command: str, target: dict[str, Any], result: SendResult) -> None:
        self.send_button.setEnabled(True)
        if result.approval is not None:
            self.result.setText(pending_text(result.approval)
                                + "\nanother admin approves it in the Approvals tab")
            self.approval_pending.emit(result.approval)
            return
        queued = result.queued
        assert queued is not None  # SendResult holds one of the two
        self.result.setText(queued_text(queued.command or command, queued.count,
                                        queued.command_id, queued.fanout_id))
        if queued.fanout_id is not None:
            self.fanout_started.emit(queued.fanout_id,
                                     f"{queued.command or command} to {target_text(target)}")

    def _refused(self, command: str, target: dict[str, Any], exc: BaseException) -> None:
        self.send_button.setEnabled(True)
        subject = f"device {target['device']}" if "device" in target else ""
        self.result.setText("")
        self.problem.setText(explain(exc, role=self._role,
                                     action=f"send {command} to {target_text(target)}",
                                     subject=subject).text)
