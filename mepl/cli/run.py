"""``mepl run``: the MEPL service for real operation, configured by TOML and ``MEPL_*``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from blobstore.database import Database
from mepl.cli.common import GeneralConfig, add_config_options, config_error, fail, load_raw_config
from mepl.cli.db import run_with_database
from mepl.config import ConfigError
from mepl.logs import freeze_startup_objects, start_logging
from mepl.service import MeplService
from mepl.settings import Settings, load_settings
from mepl.signer import ServerSigner
from signing.errors import SigningError

DESCRIPTION = """\
Run the main event-processing loop: bind to every configured SMSC link
([smpp.links.NAME]), listen for gateway callbacks ([http] with
[http.gateways.NAME]), and dispatch queued commands, each signed with the
server key its device has accepted, from STATE_DIR/keys (`mepl keys init`
creates it; an encrypted key takes its passphrase from $MEPL_KEY_PASSPHRASE or
signing.passphrase_file; a key added by `mepl keys rotate` meanwhile is loaded
with the same passphrase, without a restart).
The schema must be current (`mepl db upgrade`).  SIGINT or SIGTERM stops it
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
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(load_raw_config(args))
    except ConfigError as exc:
        return config_error(exc)

    def body(database: Database, general: GeneralConfig) -> int:
        try:
            signer = ServerSigner.load(settings.signing.keys_path(general.state_dir),
                                       dict(os.environ), settings.signing.passphrase_file)
        except (SigningError, OSError) as exc:
            return fail(f"cannot load the server signing key: {exc} "
                        "(run `mepl keys init` first)")
        links = ", ".join(settings.smpp.links) or "none"
        gateways = ", ".join(settings.http.gateways) or "none"
        print(f"mepl: SMPP links: {links}; HTTP gateways: {gateways}; "
              f"signing key {signer.key_id}", flush=True)
        if args.check:
            return 0
        start_logging(settings.mepl.log_level)
        return _serve(settings, database, signer)

    return run_with_database(args, body)


def _serve(settings: Settings, database: Database, signer: ServerSigner) -> int:
    def main(reactor: Any) -> Deferred[None]:
        service = MeplService(settings, reactor=reactor, engine=database.engine,
                              signer=signer)
        service.startService()
        freeze_startup_objects()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        return Deferred()  # runs until a signal stops the reactor

    try:
        react(main)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 0
    return 0
