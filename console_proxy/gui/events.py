"""Live events: the server-sent event stream on a worker thread, alerts, fan-out progress.

:class:`EventsWorker` iterates the client's
:class:`~console_proxy.client.EventStream` on a thread of its own (it
reconnects with backoff and resumes with ``Last-Event-ID`` by itself) and
hands each event to the UI thread through a queued signal; :meth:`stop`
wakes a blocked read from the UI thread.  :class:`EventsPanel` lists the
events, alerts (SIM swap, lost, left the territory) highlighted, and
:class:`FanoutPanel` shows a progress bar per fan-out, polled until every
command of it has ended.
"""

from __future__ import annotations

import contextlib
import threading
from functools import partial

from PySide6.QtCore import QObject, Qt, QTimer, Signal, SignalInstance
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client, ConsoleError, EventStream
from console_proxy.client.models import Event, FanoutProgress
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import event_line, explain

MAX_LINES = 5000
"""Events kept in the panel (the oldest go first)."""

_ALERT_BACKGROUND = QColor("#f8d7da")
_STATUS_WORDS = {"connected": "live", "disconnected": "connection lost",
                 "reconnecting": "reconnecting", "stopped": "stopped"}


class EventsWorker(QObject):
    """The event stream on a thread of its own; signals arrive on the UI thread.

    ``received(Event)``, ``status(state, detail)`` (``connected``,
    ``disconnected``, ``reconnecting``, ``stopped``) and ``failed(exc)``
    when the stream ends with a refusal that will not change.
    """

    received = Signal(object)
    status = Signal(str, str)
    failed = Signal(object)

    def __init__(self, client: Client, *, device: str | None = None,
                 last_event_id: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._device = device
        self._last_event_id = last_event_id
        self._stream: EventStream | None = None
        self._thread: threading.Thread | None = None

    @property
    def last_event_id(self) -> str | None:
        """The id to resume from (the last event seen)."""
        return self._stream.last_event_id if self._stream is not None else self._last_event_id

    def start(self) -> None:
        """Open the stream and read it on a worker thread."""
        self._stream = self._client.events(last_event_id=self._last_event_id,
                                           device=self._device, on_status=self._status)
        self._thread = threading.Thread(target=self._run, args=(self._stream,),
                                        name="mdm-events", daemon=True)
        self._thread.start()

    def _emit(self, signal: SignalInstance, *args: object) -> None:
        # RuntimeError: the window is gone; the thread is about to be stopped anyway.
        with contextlib.suppress(RuntimeError):
            signal.emit(*args)

    def _status(self, state: str, detail: str) -> None:
        self._emit(self.status, state, detail)

    def _run(self, stream: EventStream) -> None:
        try:
            for event in stream:
                self._emit(self.received, event)
        except ConsoleError as exc:
            if not stream.stopped:
                self._emit(self.failed, exc)

    def stop(self, timeout: float = 5.0) -> None:
        """End the stream (from the UI thread) and wait for the thread."""
        if self._stream is not None:
            self._stream.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._stream is not None:
            self._last_event_id = self._stream.last_event_id
            self._stream.close()


class FanoutPanel(QWidget):
    """One progress bar per fan-out, polled every ``interval_ms`` until it has ended."""

    def __init__(self, client: Client, tasks: Tasks, *, interval_ms: int = 2000,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._tasks = tasks
        self.bars: dict[int, QProgressBar] = {}
        self.details: dict[int, QLabel] = {}
        self._open: set[int] = set()
        self._layout = QVBoxLayout(self)
        self.empty = QLabel("Sends to a group or the fleet show their progress here.")
        self.empty.setWordWrap(True)
        self._layout.addWidget(self.empty)
        self._layout.addStretch(1)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)

    def track(self, fanout_id: int, label: str) -> None:
        """Show fan-out ``fanout_id`` and poll it until done."""
        if fanout_id not in self.bars:
            self.empty.hide()
            title = QLabel(f"fan-out {fanout_id}: {label}")
            bar = QProgressBar()
            bar.setFormat("…")
            detail = QLabel("waiting for the first count …")
            detail.setWordWrap(True)
            for widget in (title, bar, detail):
                self._layout.insertWidget(self._layout.count() - 1, widget)
            self.bars[fanout_id] = bar
            self.details[fanout_id] = detail
        self._open.add(fanout_id)
        self.poll()
        if not self.timer.isActive():
            self.timer.start()

    def poll(self) -> None:
        """Ask for the progress of every fan-out still running."""
        for fanout_id in sorted(self._open):
            self._tasks.run(self._client.get_fanout, fanout_id,
                            on_done=partial(self._progress, fanout_id),
                            on_error=partial(self._failed, fanout_id))
        if not self._open:
            self.timer.stop()

    def _progress(self, fanout_id: int, progress: FanoutProgress) -> None:
        bar = self.bars[fanout_id]
        ended = progress.done + progress.failed
        finished = progress.raw.get("finished")
        if isinstance(finished, int):
            ended = max(ended, finished)
        bar.setMaximum(max(progress.total, 1))
        bar.setValue(min(ended, progress.total))
        states = ", ".join(f"{n} {s}" for s, n in sorted(progress.by_state.items()))
        bar.setFormat(f"{ended} of {progress.total} ended")
        self.details[fanout_id].setText(f"{progress.done} done, {progress.failed} failed"
                                        + (f" — now {states}" if states else ""))
        if progress.total and ended >= progress.total:
            self._open.discard(fanout_id)

    def _failed(self, fanout_id: int, exc: BaseException) -> None:
        self._open.discard(fanout_id)
        self.details[fanout_id].setText(explain(exc).message)

    def stop(self) -> None:
        """Stop polling."""
        self.timer.stop()


class EventsPanel(QWidget):
    """The live events, newest first, alerts highlighted; the fan-outs beside them.

    ``alert(event)`` is emitted for every alert (the window notifies).
    """

    alert = Signal(object)

    def __init__(self, fanouts: FanoutPanel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = QLabel("live events: not connected")
        self.list = QListWidget()
        self.list.setUniformItemSizes(True)
        self.list.setAlternatingRowColors(True)
        self.fanouts = fanouts
        events_box = QGroupBox("Live events (newest first)")
        inner = QVBoxLayout(events_box)
        inner.addWidget(self.state)
        inner.addWidget(self.list)
        fanout_box = QGroupBox("Fan-out progress")
        QVBoxLayout(fanout_box).addWidget(fanouts)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(events_box)
        split.addWidget(fanout_box)
        split.setSizes([750, 350])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

    def add(self, event: Event) -> None:
        """Show ``event`` at the top (an alert highlighted and announced)."""
        item = QListWidgetItem(event_line(event))
        if event.is_alert:
            item.setBackground(QBrush(_ALERT_BACKGROUND))
            font = QFont(item.font())
            font.setBold(True)
            item.setFont(font)
        self.list.insertItem(0, item)
        while self.list.count() > MAX_LINES:
            self.list.takeItem(self.list.count() - 1)
        if event.is_alert:
            self.alert.emit(event)

    def lines(self) -> list[str]:
        """The events shown, newest first."""
        return [item.text() for item in (self.list.item(i) for i in range(self.list.count()))
                if item is not None]

    def is_highlighted(self, row: int) -> bool:
        """True when line ``row`` is shown as an alert."""
        item = self.list.item(row)
        return item is not None and item.font().bold()

    def set_status(self, state: str, detail: str) -> None:
        """Show the stream's state (``connected``, ``reconnecting`` ...)."""
        words = _STATUS_WORDS.get(state, state)
        self.state.setText(f"live events: {words}" + (f" — {detail}" if detail and
                                                      state != "connected" else ""))

    def set_failed(self, exc: BaseException) -> None:
        """The stream ended with a refusal: say why."""
        self.state.setText(f"live events stopped: {explain(exc).text}")
