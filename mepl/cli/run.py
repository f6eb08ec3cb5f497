"""``mepl run``: the MEPL service for real operation, configured by TOML and ``MEPL_*``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import react
from twisted.python.failure import Failure

from blobstore.database import Database
from mepl.cli.common import (
    GeneralConfig,
    add_config_options,
    config_error,
    fail,
    listen_failure,
    load_raw_config,
)
from mepl.cli.db import run_with_database
from mepl.config import ConfigError
from mepl.logs import freeze_startup_objects, start_logging
from mepl.service import MeplService
from mepl.settings import Settings, check_deployment, load_settings
from mepl.signer import ServerSigner
from signing.errors import SigningError
from signing.keystore import ServerKeyStore
from sms_gateway.addresses import mask_msisdn

DESCRIPTION = """\
Run the main event-processing loop: bind to every configured SMSC link
([smpp.links.NAME]), listen for gateway callbacks ([http] with
[http.gateways.NAME]), and dispatch queued commands, each signed with the
server key its device has accepted, from STATE_DIR/keys (`mepl keys init`
creates it; an encrypted key takes its passphrase from $MEPL_KEY_PASSPHRASE or
signing.passphrase_file; a key added by `mepl keys rotate` meanwhile is loaded
with the same passphrase, without a restart).
The schema must be current (`mepl db upgrade`).  Refused before anything
starts: no dispatch.server_number, or one the devices do not trust (it must
be one of the key index's trusted numbers, `mepl keys init --trusted-number`),
no trusted numbers at all, and no way to send (no SMPP link and no HTTP
gateway with send_url).  SIGINT or SIGTERM stops it
gracefully: dispatching stops, binds unbind after their outstanding submits,
stored-but-unflushed PDUs are written.  Several `mepl run` processes may
share one PostgreSQL.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl run``."""
    parser = subparsers.add_parser(
        "run", help="run the MEPL service (SMPP binds, gateway callbacks, dispatcher)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(parser)
    parser.add_argument("--check", action="store_true",
                        help="check configuration, database and keys, then exit")
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="log lines on stderr as text or one JSON object per line "
                             "(default: mepl.log_format, else text); phone numbers are "
                             "masked and secrets never logged in either")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        raw = load_raw_config(args)
        if args.log_format is not None:
            raw.setdefault("mepl", {})["log_format"] = args.log_format
        settings = load_settings(raw)
    except ConfigError as exc:
        return config_error(exc)
    key_dir = settings.signing.keys_path(settings.mepl.state_dir)
    try:
        signer = ServerSigner.load(key_dir, dict(os.environ), settings.signing.passphrase_file)
        trusted = ServerKeyStore(key_dir).load().trusted_numbers
    except (SigningError, OSError) as exc:
        return fail(f"cannot load the server signing key: {exc} "
                    "(run `mepl keys init` first)")
    try:
        check_deployment(settings, trusted)
    except ConfigError as exc:
        return config_error(exc)

    def body(database: Database, general: GeneralConfig) -> int:
        links = ", ".join(settings.smpp.links) or "none"
        gateways = ", ".join(settings.http.gateways) or "none"
        print(f"mepl: SMPP links: {links}; HTTP gateways: {gateways}; "
              f"signing key {signer.key_id}; server number "
              f"{mask_msisdn(settings.dispatch.server_number)}", flush=True)
        if args.check:
            return 0
        start_logging(settings.mepl.log_level, log_format=settings.mepl.log_format)
        return _serve(settings, database, signer)

    return run_with_database(args, body)


def _serve(settings: Settings, database: Database, signer: ServerSigner) -> int:
    failed: list[str] = []

    def main(reactor: Any) -> Deferred[None]:
        service = MeplService(settings, reactor=reactor, engine=database.engine,
                              signer=signer)
        try:
            service.startService()
        except Exception as exc:  # whatever failed, stop what started first
            failure = Failure()
            message = _listen_failure(exc, settings)
            stopped: Deferred[Any] = maybeDeferred(service.stopService)
            if message is None:
                return stopped.addBoth(lambda _: failure)  # react reports it, status 1
            failed.append(message)
            return stopped.addBoth(lambda _: None)
        freeze_startup_objects()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        return Deferred()  # runs until a signal stops the reactor

    status = 0
    try:
        react(main)
    except SystemExit as exc:
        status = int(exc.code) if isinstance(exc.code, int) else 0
    return fail(failed[0], status=1) if failed else status


def _listen_failure(exc: Exception, settings: Settings) -> str | None:
    """The one-line report of a listener that could not start (else None)."""
    http, metrics = settings.http, settings.metrics
    if isinstance(exc, CannotListenError) and metrics.port and (
            exc.interface, exc.port) == (metrics.host, metrics.port):
        return listen_failure(exc, metrics.host, metrics.port, host_key="metrics.host",
                              port_key="metrics.port")
    if isinstance(exc, CannotListenError) or (http.reuse_port and isinstance(exc, OSError)):
        return listen_failure(exc, http.host, http.port, host_key="http.host",
                              port_key="http.port")
    return None
