"""Shared plumbing for CLI subcommands: common options and configuration loading.

Every subcommand that reads configuration calls :func:`add_config_options` on
its parser and :func:`load_raw_config` in its handler, then builds the typed
section it needs with :func:`mepl.config.build`, for example
``build(DatabaseConfig, raw.get("database", {}), "database")``.
Precedence: built-in defaults < TOML file < ``MEPL_*`` environment < options.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet.error import CannotListenError

from mepl.config import ConfigError, apply_env_overrides, build, load_toml
from sms_gateway.addresses import normalise_region
from sms_gateway.errors import AddressError

DEFAULT_STATE_DIR = Path("mepl-state")


@dataclass(frozen=True)
class GeneralConfig:
    """The ``[mepl]`` section: where state lives and how numbers are read.

    ``default_region`` is an ISO 3166 two-letter code with a numbering plan
    (``GB``, ``US``...); lower case is accepted and upper-cased, anything else
    is refused at start.  ``log_format`` is ``text`` (one line per event) or
    ``json`` (one JSON object per line) for ``mepl run``'s log on stderr.
    """

    state_dir: Path = DEFAULT_STATE_DIR
    default_region: str = "GB"
    log_level: str = "info"
    log_format: str = "text"

    def __post_init__(self) -> None:
        try:
            region = normalise_region(self.default_region)
        except AddressError as exc:
            raise ValueError(f"default_region: {exc}") from None
        object.__setattr__(self, "default_region", region)
        if self.log_level not in ("debug", "info", "warn", "error"):
            raise ValueError("log_level must be one of debug, info, warn, error")
        if self.log_format not in ("text", "json"):
            raise ValueError("log_format must be text or json")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--state-dir``, ``--database-url`` and ``--region``."""
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", type=Path, metavar="FILE",
                       default=os.environ.get("MEPL_CONFIG"),
                       help="TOML configuration file (default: $MEPL_CONFIG, else none)")
    group.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="state directory: keys, embedded database (default: ./mepl-state)")
    group.add_argument("--database-url", metavar="URL",
                       help="external PostgreSQL URL; without one an embedded server is used")
    group.add_argument("--region", metavar="CC",
                       help="default region for national phone numbers (ISO 3166, e.g. GB)")


def load_raw_config(args: argparse.Namespace,
                    environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge the TOML file, ``MEPL_*`` variables and command-line options."""
    env = os.environ if environ is None else environ
    path: Path | None = getattr(args, "config", None)
    raw: dict[str, Any] = load_toml(Path(path)) if path else {}
    raw = apply_env_overrides(raw, env)
    if getattr(args, "state_dir", None) is not None:
        raw.setdefault("mepl", {})["state_dir"] = str(args.state_dir)
    if getattr(args, "region", None) is not None:
        raw.setdefault("mepl", {})["default_region"] = args.region
    if getattr(args, "database_url", None) is not None:
        raw.setdefault("database", {})["url"] = args.database_url
    return raw


def general_config(raw: Mapping[str, Any]) -> GeneralConfig:
    """Build the ``[mepl]`` section."""
    return build(GeneralConfig, raw.get("mepl", {}), "mepl")


def fail(message: str, status: int = 2) -> int:
    """Print ``mepl: error: message`` to stderr and return ``status``."""
    print(f"mepl: error: {message}", file=sys.stderr)
    return status


def config_error(exc: ConfigError) -> int:
    """Report a configuration error (which names its key) and return exit status 2."""
    return fail(f"configuration: {exc}")


def port_number(text: str) -> int:
    """argparse type for a TCP port: ``0`` (any free port) to ``65535``."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (0 to 65535)")
    return value


_PORT_ERRORS = (errno.EADDRINUSE, errno.EACCES)


def listen_failure(exc: BaseException, host: str, port: int, *, host_key: str,
                   port_key: str) -> str | None:
    """One line for a listener that could not start, or None for any other error.

    ``exc`` is twisted's :class:`CannotListenError` (its address wins) or the
    :class:`OSError` of a bind; the line names the option or configuration key
    to change: ``port 127.0.0.1:8088 is already in use (http.port)``.
    """
    if isinstance(exc, CannotListenError):
        host, port = exc.interface or host, exc.port
        cause: BaseException = exc.socketError
    elif isinstance(exc, OSError) and exc.errno is not None:
        cause = exc
    else:
        return None
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        return f"port {address} is already in use ({port_key})"
    key = port_key if code in _PORT_ERRORS else host_key
    if isinstance(cause, OSError) and not isinstance(cause, socket.gaierror) and code:
        reason = os.strerror(code).lower()
    else:
        reason = getattr(cause, "strerror", None) or str(cause)
    return f"cannot listen on {address} ({key}): {reason}"


def iso_time(text: str) -> datetime:
    """argparse type for ``--since``: ISO 8601, a date or a time; without an offset, UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r} (ISO 8601, e.g. 2026-12-01 or 2026-12-01T09:30+01:00)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def limit_type(most: int) -> Callable[[str], int]:
    """An argparse type for ``--limit``: a whole number from 1 to ``most``."""
    def limit(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"invalid limit {text!r} (1 to {most})")
        return value
    return limit
