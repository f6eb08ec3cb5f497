"""The live event stream (``GET /v1/events``, server-sent events) as a stoppable iterator.

:class:`EventStream` yields :class:`~console_proxy.client.models.Event`
objects as they arrive.  When the connection drops it reconnects with
exponential backoff and resumes where it was: it sends the id of the last
event it saw as ``Last-Event-ID`` (the server's ids are compound,
``c<command event>,s<security event>``, and are echoed as they are).
:meth:`EventStream.stop` may be called from any thread (a desktop console's
UI thread, a signal handler's thread): it wakes a blocked read or a backoff
wait and ends the iteration.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from console_proxy.client.errors import (
    ApiError,
    ConnectionProblem,
    ConsoleError,
    ProxyUnreachable,
)
from console_proxy.client.models import Event

RETRIABLE_STATUSES = frozenset((429, 500, 502, 503))
"""Answers after which a reconnect is worth trying; any other error ends the stream."""


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial`` s, times ``factor`` per failure, up to ``maximum``.

    The delay starts over once a connection is accepted.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def delay(self, failures: int) -> float:
        """The wait before reconnect attempt number ``failures`` (1 = the first)."""
        return float(min(self.maximum, self.initial * self.factor ** max(0, failures - 1)))


class SseParser:
    """The server-sent events line protocol (WHATWG HTML, "Interpreting an event stream")."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> Event | None:
        """Take one line (its end of line stripped or not); return the event it completes."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value or None
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, kind = self._data, self._event or "message"
        self._data, self._event = [], ""
        if not data:
            return None
        text = "\n".join(data)
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = None
        return Event(self.last_event_id, kind,
                     payload if isinstance(payload, dict) else {"text": text})


class StreamResponse(Protocol):
    """What :class:`EventStream` reads: an open streaming answer."""

    def readline(self) -> bytes:
        """The next line (b"" at the end of the stream)."""

    def close(self) -> None:
        """Release it."""


@dataclass
class OpenStream:
    """An open ``GET /v1/events`` answer and the socket under it (to wake a blocked read)."""

    response: StreamResponse
    sock: socket.socket | None
    request_id: str | None = None


StatusCallback = Callable[[str, str], None]
"""``on_status(state, detail)``: ``connected``, ``disconnected``, ``reconnecting``, ``stopped``."""


class EventStream(Iterator[Event]):
    """Live events; reconnects and resumes with ``Last-Event-ID``; stop() from any thread.

    ``open_stream(last_event_id)`` opens one connection (the client's
    :meth:`~console_proxy.client.api.Client.events` provides it).  Errors
    while connecting for the first time are raised (a wrong proxy address
    should say so at once); after the stream was up, a dropped connection,
    an unreachable proxy or a 429/5xx answer is retried with ``backoff``,
    and a refusal that will not change (401, 403, 404, a refused
    certificate) is raised.  ``reconnect=False`` ends the iteration when the
    connection drops.
    """

    def __init__(self, open_stream: Callable[[str | None], OpenStream], *,
                 last_event_id: str | None = None, reconnect: bool = True,
                 backoff: Backoff | None = None,
                 on_status: StatusCallback | None = None) -> None:
        self._open = open_stream
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._on_status = on_status
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: OpenStream | None = None
        self._parser = SseParser()
        self._parser.last_event_id = last_event_id
        self._ever_connected = False
        self._failures = 0
        self.connections = 0
        """How many times the stream was (re)opened."""

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event seen: what a resume sends as ``Last-Event-ID``."""
        return self._parser.last_event_id

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def _status(self, state: str, detail: str = "") -> None:
        if self._on_status is not None:
            self._on_status(state, detail)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        while not self._stop.is_set():
            current = self._current or self._connect()
            if current is None:
                continue
            try:
                line = current.response.readline()
            except (OSError, http.client.HTTPException, ValueError):
                line = b""
            if not line:
                self._drop("the connection was closed")
                continue
            event = self._parser.feed(line.decode("utf-8", errors="replace"))
            if event is not None:
                return event
        self._close_current()
        raise StopIteration

    def _connect(self) -> OpenStream | None:
        try:
            opened = self._open(self._parser.last_event_id)
        except (ConnectionProblem, ApiError) as exc:
            retriable = isinstance(exc, ProxyUnreachable) or (
                isinstance(exc, ApiError) and exc.status in RETRIABLE_STATUSES)
            if not (self._ever_connected and self._reconnect and retriable):
                raise
            self._wait_before_retry(str(exc))
            return None
        with self._lock:
            if self._stop.is_set():
                opened.response.close()
                return None
            self._current = opened
        self._ever_connected = True
        self._failures = 0
        self.connections += 1
        self._status("connected", self._parser.last_event_id or "")
        return opened

    def _drop(self, reason: str) -> None:
        self._close_current()
        if self._stop.is_set():
            return
        self._status("disconnected", reason)
        if not self._reconnect:
            self._stop.set()
            return
        self._wait_before_retry(reason)

    def _wait_before_retry(self, reason: str) -> None:
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        if self._parser.retry_ms is not None:
            delay = max(delay, self._parser.retry_ms / 1000)
        self._status("reconnecting", f"{reason}; next try in {delay:.1f} s")
        self._stop.wait(delay)

    def _close_current(self) -> None:
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                current.response.close()

    def stop(self) -> None:
        """End the stream (thread-safe): wake a blocked read or wait; iteration then stops."""
        self._stop.set()
        with self._lock:
            current = self._current
        if current is not None and current.sock is not None:
            # Shut the raw socket down under TLS: the blocked read sees the end of stream.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(current.sock, socket.SHUT_RDWR)
        self._status("stopped")

    def close(self) -> None:
        """Stop and release the connection."""
        self.stop()
        self._close_current()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def not_a_stream(content_type: str) -> ConsoleError:
    """The error for an events answer that is not ``text/event-stream``."""
    return ConsoleError(f"the server answered the event stream with {content_type or 'nothing'}"
                        ", not text/event-stream",
                        "check that --proxy points at the MEPL console proxy")
