"""The device view: who the device is, its identity history, its commands, its messages.

- identity history: every IMSI or phone number change (SIM swaps);
- command timeline: each command with its state, and under it every state
  change (fetched when the command is opened; the newest opens by itself);
- messages both ways, decoded (frame fields, verification verdict,
  receipts); a message's raw bytes are shown on demand (the stored bytes
  when the API sends them, else the exact frame of the command it carried).
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client
from console_proxy.client.models import Command, Device, Event, Message, Page
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import carrier, cell, explain

ARROWS = {"out": "→ out", "outbound": "→ out", "in": "← in", "inbound": "← in"}
STATE_COLOURS = {"done": "#d4edda", "delivered": "#e2f0d9", "failed": "#f8d7da",
                 "refused": "#f8d7da", "expired": "#eeeeee", "cancelled": "#eeeeee",
                 "sent": "#dbe9f6", "sending": "#dbe9f6", "queued": "#fff3cd"}


def table(headers: list[str]) -> QTableWidget:
    """A read-only table with ``headers``, whole rows selected."""
    widget = QTableWidget(0, len(headers))
    widget.setHorizontalHeaderLabels(headers)
    widget.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    widget.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    widget.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    widget.verticalHeader().setVisible(False)
    widget.verticalHeader().setDefaultSectionSize(22)
    widget.horizontalHeader().setStretchLastSection(True)
    widget.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return widget


def fill(widget: QTableWidget, rows: list[list[Any]]) -> None:
    """Replace the rows of ``widget``."""
    widget.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            widget.setItem(r, c, QTableWidgetItem(cell(value)))


def texts(widget: QTableWidget, column: int) -> list[str]:
    """The texts of one column of ``widget``, top to bottom."""
    return [(widget.item(r, column) or QTableWidgetItem("")).text()
            for r in range(widget.rowCount())]


def raw_bytes(message: Message) -> str | None:
    """The message's bytes as hex when the API sent them with the message, else None."""
    details = message.raw.get("details")
    for value in (message.raw.get("payload_hex"), message.raw.get("hex"),
                  details.get("hex") if isinstance(details, dict) else None):
        if isinstance(value, str) and value:
            return value
    return None


def hex_dump(text: str) -> str:
    """Hex as 16 octets a line with offsets."""
    octets = [text[i:i + 2] for i in range(0, len(text), 2)]
    return "\n".join(f"{i * 16:04x}  " + " ".join(octets[i * 16:(i + 1) * 16])
                     for i in range((len(octets) + 15) // 16))


class DeviceView(QWidget):
    """One device; :meth:`load` shows another.  ``send_to(imei)`` asks for the send form."""

    send_to = Signal(str)

    def __init__(self, client: Client, tasks: Tasks, *, role: str = "?",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._tasks = tasks
        self._role = role
        self.device: Device | None = None
        self.messages: list[Message] = []
        self._messages_next: str | None = None
        self._loaded_history: set[int] = set()

        self.title = QLabel("Choose a device in the fleet view.")
        self.title.setStyleSheet("font-size: 15px; font-weight: bold")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.fields = QLabel("")
        self.fields.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.send_button = QPushButton("Send a command to this device…")
        self.send_button.setEnabled(False)
        self.send_button.clicked.connect(lambda: self.device and self.send_to.emit(
            self.device.imei))
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.reload)

        self.identity = table(["Changed", "What", "Old", "New", "Seen in"])
        self.commands = QTreeWidget()
        self.commands.setHeaderLabels(["Command", "State", "When", "By / event", "Details"])
        self.commands.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.commands.itemExpanded.connect(self._expanded)
        self.message_table = table(["At", "Way", "Channel", "Kind", "Command", "Verdict",
                                    "Summary"])
        self.message_table.itemSelectionChanged.connect(self._message_chosen)
        self.more_messages = QPushButton("Older messages")
        self.more_messages.setEnabled(False)
        self.more_messages.clicked.connect(self._older_messages)
        self.decoded = QPlainTextEdit()
        self.decoded.setReadOnly(True)
        self.decoded.setPlaceholderText("Choose a message to see its decoded fields.")
        self.raw_button = QPushButton("Show raw bytes")
        self.raw_button.setEnabled(False)
        self.raw_button.clicked.connect(self.show_raw)

        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.refresh_button)
        head.addWidget(self.send_button)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self._boxed("Identity history", self.identity))
        left.addWidget(self._boxed("Command timeline", self.commands))
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self._boxed("Messages both ways, decoded",
                                    self._with_button(self.message_table, self.more_messages)))
        right.addWidget(self._boxed("Message", self._with_button(self.decoded,
                                                                 self.raw_button)))
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(right)
        body.setSizes([480, 620])
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.fields)
        layout.addWidget(self.status)
        layout.addWidget(body, 1)

    @staticmethod
    def _with_button(widget: QWidget, button: QPushButton) -> QWidget:
        both = QWidget()
        layout = QVBoxLayout(both)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(widget)
        layout.addWidget(button, 0, Qt.AlignmentFlag.AlignRight)
        return both

    @staticmethod
    def _boxed(title: str, widget: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        inner = QVBoxLayout(box)
        inner.setContentsMargins(4, 4, 4, 4)
        inner.addWidget(widget)
        return box

    # -- loading ----------------------------------------------------------------------------

    def load(self, identifier: str) -> None:
        """Show the device ``identifier`` (IMEI, IMSI or phone number)."""
        self.status.setText(f"loading {identifier} …")
        self._tasks.run(self._client.get_device, identifier, on_done=self._device,
                        on_error=lambda exc: self._failed(exc, f"device {identifier}"))

    def reload(self) -> None:
        """Fetch the shown device again, with its commands and messages."""
        if self.device is not None:
            self.load(self.device.imei)

    def _failed(self, exc: BaseException, subject: str = "") -> None:
        self.status.setText(explain(exc, role=self._role, action="look at this device",
                                    subject=subject).text)

    def _device(self, device: Device) -> None:
        self.device = device
        self.status.setText("")
        self.title.setText(f"Device {device.imei}")
        self.send_button.setEnabled(True)
        self.fields.setText(
            f"IMSI {cell(device.imsi)} · phone {cell(device.msisdn)} · carrier "
            f"{carrier(device.imsi)} · state {device.state} · groups "
            f"{cell(list(device.groups))} · key {cell(device.key_id)} · last seen "
            f"{cell(device.last_seen_at)} · enrolled {cell(device.raw.get('created_at'))}")
        history = device.raw.get("identity_history")
        if isinstance(history, list):
            self._identity([h for h in history if isinstance(h, dict)])
        else:
            self._tasks.run(self._client.device_identity, device.imei, on_done=self._identity,
                            on_error=self._failed)
        self.load_commands()
        self.messages, self._messages_next = [], None
        self.message_table.setRowCount(0)
        self.decoded.setPlainText("")
        self._tasks.run(self._client.device_messages, device.imei, on_done=self._messages,
                        on_error=self._failed)

    def _identity(self, history: list[dict[str, Any]]) -> None:
        fill(self.identity, [[h.get("changed_at"), h.get("kind"), h.get("old"), h.get("new"),
                              h.get("source")] for h in history])

    def load_commands(self) -> None:
        """Fetch the device's commands again (a live event said one changed)."""
        if self.device is None:
            return
        self._tasks.run(self._client.list_commands, device=self.device.imei,
                        on_done=self._commands, on_error=self._failed)

    def _commands(self, page: Page[Command]) -> None:
        self.commands.clear()
        self._loaded_history.clear()
        for command in page.items:
            item = QTreeWidgetItem([f"#{command.id} {command.opcode}", command.state,
                                    cell(command.created_at), cell(command.requested_by),
                                    cell(command.raw.get("arguments"))])
            item.setData(0, Qt.ItemDataRole.UserRole, command.id)
            colour = STATE_COLOURS.get(command.state)
            if colour:
                item.setBackground(1, QBrush(QColor(colour)))
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.commands.addTopLevelItem(item)
        newest = self.commands.topLevelItem(0)
        if newest is not None:
            newest.setExpanded(True)

    def _expanded(self, item: QTreeWidgetItem) -> None:
        command_id = item.data(0, Qt.ItemDataRole.UserRole)
        if not isinstance(command_id, int) or command_id in self._loaded_history:
            return
        self._loaded_history.add(command_id)
        self._tasks.run(self._client.get_command, command_id, on_done=self._history,
                        on_error=self._failed)

    def _item(self, command_id: int) -> QTreeWidgetItem | None:
        for i in range(self.commands.topLevelItemCount()):
            item = self.commands.topLevelItem(i)
            if item is not None and item.data(0, Qt.ItemDataRole.UserRole) == command_id:
                return item
        return None

    def _history(self, command: Command) -> None:
        # Looked up again: the timeline may have been refilled while the history was fetched.
        item = self._item(command.id)
        if item is None:
            return
        item.takeChildren()
        item.setText(1, command.state)
        for event in command.history:
            child = QTreeWidgetItem([event.event, f"{event.from_state or '-'} → "
                                                  f"{event.to_state or '-'}", cell(event.at),
                                     cell(event.actor), cell(event.details)])
            item.addChild(child)

    def timeline(self) -> list[tuple[str, list[str]]]:
        """The command timeline as text: each command and the states it went through."""
        shown = []
        items = (self.commands.topLevelItem(i) for i in range(self.commands.topLevelItemCount()))
        for item in items:
            if item is not None:
                children = (item.child(j) for j in range(item.childCount()))
                shown.append((f"{item.text(0)} {item.text(1)}",
                              [c.text(1) for c in children if c is not None]))
        return shown

    # -- messages ---------------------------------------------------------------------------

    def _messages(self, page: Page[Message]) -> None:
        self.messages.extend(page.items)
        self._messages_next = page.next
        self.more_messages.setEnabled(page.next is not None)
        fill(self.message_table, [[m.at, ARROWS.get(m.direction, m.direction), m.channel,
                                   m.kind, m.command_id, m.verdict, m.summary]
                                  for m in self.messages])

    def _older_messages(self) -> None:
        if self.device is not None and self._messages_next is not None:
            self._tasks.run(self._client.device_messages, self.device.imei,
                            after=self._messages_next, on_done=self._messages,
                            on_error=self._failed)

    def _selected_message(self) -> Message | None:
        rows = self.message_table.selectionModel().selectedRows()
        return self.messages[rows[0].row()] if rows else None

    def _message_chosen(self) -> None:
        message = self._selected_message()
        self.raw_button.setEnabled(message is not None)
        if message is None:
            return
        shown = {k: v for k, v in message.raw.items() if k not in ("payload_hex",)}
        self.decoded.setPlainText(json.dumps(shown, indent=2, sort_keys=True))

    def show_raw(self) -> None:
        """Add the chosen message's raw bytes under its decoded fields."""
        message = self._selected_message()
        if message is None:
            return
        data = raw_bytes(message)
        if data is not None:
            self._append_raw(f"raw bytes ({len(data) // 2} octets)", data)
        elif message.command_id is not None:
            self._tasks.run(self._client.get_command, message.command_id,
                            on_done=self._frame, on_error=self._failed)
        else:
            self._append_raw("raw bytes", "")

    def _frame(self, command: Command) -> None:
        inner = command.raw.get("command")
        body = inner if isinstance(inner, dict) else command.raw
        frame = body.get("frame")
        if isinstance(frame, str) and frame:
            self._append_raw(f"frame of command {command.id} as sealed "
                             f"({len(frame) // 2} octets)", frame)
        else:
            self._append_raw(f"command {command.id}", "")

    def _append_raw(self, title: str, data: str) -> None:
        text = hex_dump(data) if data else "(the server did not send the bytes)"
        self.decoded.appendPlainText(f"\n— {title} —\n{text}")
        bar = self.decoded.verticalScrollBar()
        bar.setValue(bar.maximum())  # the bytes just asked for, in view

    def on_event(self, event: Event) -> None:
        """A live event: refresh the timeline when it is about the device shown."""
        if (self.device is not None and event.event == "command"
                and event.data.get("imei") == self.device.imei):
            self.load_commands()


__all__ = ["DeviceView", "fill", "hex_dump", "table", "texts"]
