"""Network calls off the UI thread, their results delivered back on it.

Every call of the client library blocks, so the desktop console never makes
one on the UI thread: :class:`Tasks` hands it to the client's worker pool
(:meth:`console_proxy.client.Client.submit`) and, when the future is done,
emits a queued Qt signal, so the callback runs on the UI thread where
widgets may be touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

Submit = Callable[..., "Future[Any]"]
"""``submit(fn, *args, **kwargs) -> Future``: runs ``fn`` on a worker thread."""


class Tasks(QObject):
    """Runs blocking calls on worker threads; ``on_done``/``on_error`` run on the UI thread.

    ``error`` is emitted for a failure that has no ``on_error`` of its own
    (the main window shows it).  ``busy`` tells whether calls are under way
    (for a busy indicator; the tests wait on results, not on this).
    """

    error = Signal(object)
    busy = Signal(bool)
    _finished = Signal(object, object, object)

    def __init__(self, submit: Submit, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._submit = submit
        self.running = 0
        self.closed = False
        # Queued even when the future was already done: callbacks never run inside run().
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def run(self, fn: Callable[..., Any], *args: Any,
            on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[BaseException], None] | None = None,
            **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a worker thread; call back on the UI thread."""
        if self.closed:
            dropped: Future[Any] = Future()
            dropped.cancel()
            return dropped
        future = self._submit(fn, *args, **kwargs)
        self.running += 1
        if self.running == 1:
            self.busy.emit(True)
        future.add_done_callback(lambda done: self._relay(on_done, on_error, done))
        return future

    def _relay(self, on_done: Callable[[Any], None] | None,
               on_error: Callable[[BaseException], None] | None, future: Future[Any]) -> None:
        # RuntimeError: the window was closed while the call ran, nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._finished.emit(on_done, on_error, future)

    def close(self) -> None:
        """Run nothing more, and drop the results of calls still under way (window closed)."""
        self.closed = True

    @Slot(object, object, object)
    def _deliver(self, on_done: Callable[[Any], None] | None,
                 on_error: Callable[[BaseException], None] | None,
                 future: Future[Any]) -> None:
        self.running -= 1
        if self.running == 0:
            self.busy.emit(False)
        if future.cancelled() or self.closed:
            return
        exc = future.exception()
        if exc is None:
            if on_done is not None:
                on_done(future.result())
        elif on_error is not None:
            on_error(exc)
        else:
            self.error.emit(exc)
