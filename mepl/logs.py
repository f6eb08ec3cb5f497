"""Process-wide setup for the composition root: logging, and the garbage collector.

Logging is ``twisted.logger`` only.  Library code logs through its own
``Logger()`` with named fields; this module decides where those events go:
one line per event on stderr, filtered by level.  Phone numbers are masked
by the emitters (``mask_msisdn``); nothing here formats secrets.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error}


def start_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send log events at ``level`` and above to ``stream`` (stderr by default)."""
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    text: Any = textFileLogObserver(stream or sys.stderr)
    observer: Any = FilteringLogObserver(text, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def freeze_startup_objects() -> None:
    """Move everything allocated at start-up out of the collector's generations.

    Without it, a full collection walks every long-lived object (modules,
    config, SQLAlchemy metadata) and can stall the reactor by 100-300 ms.
    """
    gc.collect()
    gc.freeze()
