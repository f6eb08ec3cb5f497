"""``mdm-proxy``: run the console proxy (the composition root: the only user of the reactor).

``mdm-proxy --config proxy.toml`` listens with mutual TLS, forwards admins'
requests to the admin API and reloads its TLS files when they change or on
SIGHUP (which also refetches the API's OpenAPI document).  Logs go to stderr
(``--log-format json`` for one JSON object per line).  See docs/console-proxy.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

from console_proxy.config import ConfigError, ProxyConfig, load_config
from console_proxy.tlsfront import TlsLoadError


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="mdm-proxy", description="The admins' TLS front to the MEPL admin API: client "
        "certificates, roles, rate limits, audit of refusals. See docs/console-proxy.md.")
    parser.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="the proxy's TOML configuration")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"))
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    return parser


def _start_logging(level: str, fmt: str) -> None:
    observer: Any = (jsonFileLogObserver(sys.stderr) if fmt == "json"
                else textFileLogObserver(sys.stderr))
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    filtered: Any = FilteringLogObserver(observer, [predicate])
    globalLogBeginner.beginLoggingTo([filtered],
                                     redirectStandardIO=False)


def run(config: ProxyConfig, reactor: Any) -> int:
    """Start the proxy on ``reactor`` and run until stopped; returns the exit status."""
    from console_proxy.service import ProxyService

    try:
        service = ProxyService(config, reactor, reactor)
    except (TlsLoadError, OSError, ValueError) as exc:
        print(f"mdm-proxy: error: {exc}", file=sys.stderr)
        return 2
    status: list[int] = []

    def started(_: object) -> None:
        listen = config.listen
        print(f"mdm-proxy: listening on {listen.host}:{service.port.getHost().port}",
              file=sys.stderr)

    def failed(failure: Any) -> None:
        print(f"mdm-proxy: error: {failure.getErrorMessage()}", file=sys.stderr)
        status.append(1)
        reactor.stop()

    def hangup(*_: object) -> None:
        reactor.callFromThread(service.reload)

    signal.signal(signal.SIGHUP, hangup)
    reactor.callWhenRunning(
        lambda: Deferred.fromCoroutine(service.start()).addCallbacks(started, failed))
    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: Deferred.fromCoroutine(service.stop()))
    reactor.run()
    return status[0] if status else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mdm-proxy`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mdm-proxy: error: configuration: {exc}", file=sys.stderr)
        return 2
    _start_logging(args.log_level, args.log_format)
    from twisted.internet import reactor
    return run(config, reactor)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
