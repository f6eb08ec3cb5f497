"""Process-wide setup for the composition root: logging, and the garbage collector.

Logging is ``twisted.logger`` only.  Library code logs through its own
``Logger()`` with named fields; this module decides where those events go:
one line per event on stderr, filtered by level, as text or as one JSON
object per line (``[mepl] log_format``).

Whatever the format, every event passes :func:`redact_event` first, in the
observer, so a slip in an emitter cannot leak: a field whose name says it
holds a secret (``password``, ``passphrase``, ``secret``, ``token``, ``key``...)
is replaced by ``"[redacted]"``, a field whose name says it holds a phone
number (``msisdn``, ``phone``, ``sender``...) is masked with ``mask_msisdn``,
and any ``+`` followed by 7 to 15 digits in a text field or in the formatted
message is masked the same way.
"""

from __future__ import annotations

import gc
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    globalLogBeginner,
)

from sms_gateway.addresses import mask_msisdn

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error}
LOG_FORMATS = ("text", "json")

REDACTED = "[redacted]"
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "key",
    "privkey", "authorization", "credential", "credentials", "cookie", "apikey",
})
_NOT_SECRET_SUFFIXES = frozenset({"id", "ids", "count", "counts", "file", "path", "length",
                                  "len", "n"})
_PHONE_WORDS = frozenset({"msisdn", "phone", "sender", "receiver", "destination",
                          "recipient", "number", "numbers", "source_addr",
                          "destination_addr"})
_PHONE = re.compile(r"\+[0-9]{7,15}(?![0-9])")
_WORDS = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=2048)
def is_secret_field(name: str) -> bool:
    """True when a field named ``name`` may hold a secret (its value is never logged).

    ``password``, ``bind_password``, ``key_passphrase``, ``private_key``,
    ``api_key``, ``secret``, ``auth_token``... are; ``key_id``,
    ``passphrase_file`` and ``password_length`` are not (they name or count).
    """
    words = _WORDS.findall(name.lower())
    if not words or words[-1] in _NOT_SECRET_SUFFIXES:
        return False
    return any(w in _SECRET_WORDS or w.endswith(("password", "secret", "passphrase", "token"))
               for w in words)


@lru_cache(maxsize=2048)
def _is_phone_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in _PHONE_WORDS or any(w in ("msisdn", "phone")
                                          for w in _WORDS.findall(lowered))


def mask_phone_numbers(text: str) -> str:
    """``text`` with every ``+`` and 7 to 15 digits masked (``+44******23``)."""
    return _PHONE.sub(lambda m: mask_msisdn(m.group(0)), text)


def _mask_number(value: str) -> str:
    bare = value.replace(" ", "")
    if _PHONE.fullmatch(bare) or bare.isdigit():
        return mask_msisdn(bare)
    return mask_phone_numbers(value)


def _redact_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if is_secret_field(name):
        return REDACTED
    if _is_phone_field(name) and isinstance(value, str | list | tuple | set | frozenset):
        return _mask_number(value) if isinstance(value, str) else [
            _mask_number(str(v)) for v in value]
    if isinstance(value, str):
        return mask_phone_numbers(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(name, v) for v in value]
    return value


def redact_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` with secrets replaced and phone numbers masked.

    Twisted's own keys (``log_*``) are kept as they are, except ``log_format``
    (literal text of the emitter) whose phone numbers are masked.
    """
    clean: dict[str, Any] = {}
    for name, value in event.items():
        if name.startswith("log_"):
            clean[name] = mask_phone_numbers(value) if (
                name == "log_format" and isinstance(value, str)) else value
        else:
            clean[name] = _redact_value(name, value)
    return clean


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return mask_phone_numbers(str(value))


def json_line(event: Mapping[str, Any]) -> str:
    """The JSON object (one line, no newline) for an already redacted ``event``.

    Keys: ``timestamp`` (ISO 8601, UTC), ``level``, ``namespace``, ``message``
    (the formatted text, phone numbers masked), ``traceback`` for a failure,
    then the event's own named fields.
    """
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(float(when), UTC).isoformat(
            timespec="milliseconds") if when is not None else None,
        "level": level.name if isinstance(level, type(LogLevel.info)) else str(level),
        "namespace": event.get("log_namespace", "-"),
        "message": mask_phone_numbers(message_text(event)),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = mask_phone_numbers(failure.getTraceback())
    for name, value in event.items():
        if not name.startswith("log_") and name not in record and name.isidentifier():
            record[name] = _jsonable(value)
    return json.dumps(record, ensure_ascii=False, default=str)


def json_file_observer(stream: TextIO) -> Callable[[Mapping[str, Any]], None]:
    """An observer writing each (redacted) event to ``stream`` as one line of JSON."""

    def observe(event: Mapping[str, Any]) -> None:
        try:
            line = json_line(redact_event(event))
        except Exception as exc:  # a bad field must not lose the line, nor crash the loop
            line = json.dumps({"level": "error", "namespace": "mepl.logs",
                               "message": f"unloggable event: {type(exc).__name__}"})
        stream.write(line + "\n")
        stream.flush()

    return observe


def message_text(event: Mapping[str, Any]) -> str:
    """The event's message, as Twisted's ``formatEvent`` gives it.

    The usual event (a ``log_format`` of named fields, no failure) is
    formatted by ``str.format_map``, in C: Twisted's own formatter is
    written in Python and took most of a log line's cost.  Anything else
    (the ``{name()}`` call syntax, a flattened event, a field that fails
    to format) goes to Twisted, so the text is the same either way.
    """
    fmt = event.get("log_format")
    if isinstance(fmt, str) and "()" not in fmt and "log_flattened" not in event:
        try:
            return fmt.format_map(event)
        except Exception:  # noqa: S110 - Twisted says what could not be formatted
            pass
    return formatEvent(dict(event))


class ClassicText:
    """Twisted's classic text line for an event (``formatEventAsClassicLogText``), faster.

    ``2026-12-04T03:10:00+0000 [namespace#level] message``: the same line,
    with the message from :func:`message_text` and the time stamp made once
    per second (its format has one-second resolution).  An event with a
    failure goes to Twisted whole (the traceback).
    """

    def __init__(self) -> None:
        # (second, its stamp), replaced whole: events come from several threads.
        self._last: tuple[int, str] | None = None

    def _time(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = math.floor(round(when, 6))  # datetime rounds to the microsecond first
        last = self._last
        if last is None or last[0] != second:
            last = (second, formatTime(second))
            self._last = last
        return last[1]

    def __call__(self, event: Mapping[str, Any]) -> str | None:
        """The line (newline included) for ``event``, or None when it has no text."""
        if "log_failure" in event:
            return formatEventAsClassicLogText(dict(event), formatTime=self._time)
        text = message_text(event)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        else:
            try:
                system = str(system)
            except Exception:
                system = "UNFORMATTABLE"
        line = f"{self._time(event.get('log_time'))} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"


def redacting_observer(inner: Callable[[Any], None]) -> Callable[[Mapping[str, Any]], None]:
    """Wrap ``inner`` so every event reaches it through :func:`redact_event`."""

    def observe(event: Mapping[str, Any]) -> None:
        inner(redact_event(event))

    return observe


def build_observer(level: str = "info", stream: TextIO | None = None,
                   log_format: str = "text") -> Any:
    """The filtered, redacting observer for ``level`` and ``log_format`` on ``stream``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    out = stream or sys.stderr
    inner: Any = (json_file_observer(out) if log_format == "json"
                  else redacting_observer(FileLogObserver(out, ClassicText())))
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    return FilteringLogObserver(inner, [predicate])


def start_logging(level: str = "info", stream: TextIO | None = None,
                  log_format: str = "text") -> None:
    """Send log events at ``level`` and above to ``stream`` (stderr by default),
    as text lines or JSON objects (``log_format``), secrets and numbers redacted."""
    globalLogBeginner.beginLoggingTo([build_observer(level, stream, log_format)],
                                     redirectStandardIO=False)


YOUNG_COLLECTION_THRESHOLD = 20_000
"""Allocations between young-generation collections (Python's default is 700)."""


def freeze_startup_objects() -> None:
    """Move everything allocated at start-up out of the collector's generations,
    and collect the young generation less often.

    Without the freeze, a full collection walks every long-lived object
    (modules, config, SQLAlchemy metadata) and can stall the reactor by
    100-300 ms.  The loop allocates and frees thousands of short-lived objects
    per batch (rows, PDUs, Deferreds); at the default threshold the collector
    ran every 700 of them and walked whatever batch was in flight, about 5 %
    of MEPL's CPU in a fan-out (perf).  Cyclic garbage waits a little longer
    (at most ``YOUNG_COLLECTION_THRESHOLD`` objects, a few MB).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
