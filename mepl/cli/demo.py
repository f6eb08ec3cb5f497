"""``mepl demo``: run the whole loop on embedded defaults with a simulated fleet."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from twisted.internet.task import react

from blobstore.config import DatabaseConfig
from blobstore.database import open_database
from blobstore.errors import StoreError
from blobstore.migrate import upgrade
from mepl.cli.common import (
    add_config_options,
    config_error,
    fail,
    general_config,
    load_raw_config,
    port_number,
)
from mepl.config import ConfigError, build
from mepl.demo import SERVER_NUMBER, DemoOptions, run_demo
from mepl.logs import start_logging
from signing.keyfiles import passphrase_from
from signing.keystore import ServerKeyStore

DESCRIPTION = """\
Run the whole MEPL loop on embedded defaults: a private PostgreSQL in the
state directory (migrated), the server's signing keys and deployment CA
(created on first run in STATE_DIR/keys), a simulated fleet of reference
handsets enrolled in the registry, the bundled SMSC simulator bound over SMPP
on 127.0.0.1, and the HTTP callback listener.  Signed commands go out to the
fleet, the handsets verify them and answer with signed replies, two devices
raise alerts (a SIM swap over SMPP, a loss over the HTTP gateway), and the
policy locks them.  The admin channel runs too: the admin PKI is created
once in STATE_DIR/pki (CA, assertion key, server certificate for 127.0.0.1,
two admin identities demo-admin and demo-approver, each a PKCS#12 bundle with
its passphrase file next to it), the admin API listens on
STATE_DIR/admin/admin.sock, the console proxy on 127.0.0.1 (port 8443 if
free, else any free port; --proxy-port to choose), and the demo drives it
once with the client library (whoami, find a device by its national number,
a status query answered).  The mdm-console settings of each identity are
written to STATE_DIR/console/NAME.toml.  Exit status 0 when every command
was answered and verified.  With --serve, everything keeps running after
the scenario until Ctrl-C, for mdm-console to use.  Re-running it in the
same state directory is fine, with any --devices: the demo group is reset
to this run's fleet, the PKI and identities are kept.
"""


def register(subparsers: Any) -> None:
    """Add ``mepl demo``."""
    parser = subparsers.add_parser(
        "demo", help="run the whole loop on embedded defaults with a simulated fleet",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(parser)
    parser.add_argument("--devices", type=int, default=20, metavar="N",
                        help="simulated handsets in the fleet (default 20, at least 3)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds to wait for the commands to finish (default 60)")
    parser.add_argument("--receipt-delay", type=float, default=0.2, metavar="S",
                        help="seconds before the simulator sends delivery receipts")
    parser.add_argument("--proxy-port", type=port_number, default=None, metavar="PORT",
                        help="the console proxy's port on 127.0.0.1 (0: any free port; "
                        "default 8443 if free, else any free port)")
    parser.add_argument("--serve", action="store_true",
                        help="after the scenario, keep the fleet, the admin API and the proxy "
                        "running until Ctrl-C, and print mdm-console lines to try")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.devices < 3:
        return fail("--devices must be at least 3")
    try:
        raw = load_raw_config(args)
        general = general_config(raw)
        db_config = build(DatabaseConfig, raw.get("database", {}), "database")
    except ConfigError as exc:
        return config_error(exc)
    print(f"state directory: {general.state_dir.resolve()}", flush=True)
    try:
        database = open_database(db_config, general.state_dir)
    except (DBAPIError, OSError, StoreError) as exc:
        return fail(f"cannot open the database: {str(exc).splitlines()[0]}")
    try:
        upgrade(database.engine)
        print(f"database: {database.display_url} (schema at head)", flush=True)
        keys = ServerKeyStore(general.state_dir / "keys")
        if not keys.exists():
            keys.init(now=datetime.now(UTC), passphrase=passphrase_from(os.environ),
                      trusted_numbers=(SERVER_NUMBER,))
        index = keys.load()
        if index.trusted_numbers and SERVER_NUMBER not in index.trusted_numbers:
            return fail(f"the keys in {keys.directory} do not trust the demo's server number "
                        f"{SERVER_NUMBER} (they trust {', '.join(index.trusted_numbers)}): "
                        "run the demo with its own --state-dir")
        print(f"keys: server id {index.server_id.hex()[:16]}..., active key "
              f"{index.active_key_id}", flush=True)
        options = DemoOptions(devices=args.devices, timeout=args.timeout,
                              receipt_delay=args.receipt_delay,
                              state_dir=general.state_dir.resolve(),
                              proxy_port=args.proxy_port, serve=args.serve)
        # Log events so far are buffered by twisted and written from here on.
        start_logging("info" if args.verbose else "warn")
        status: list[int] = []

        def main(reactor: Any) -> Any:
            d = run_demo(reactor, keys, database.engine, options, sys.stdout)
            return d.addCallback(status.append)

        try:
            react(main)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return int(exc.code) if isinstance(exc.code, int) else 1
        return status[0] if status else 1
    finally:
        database.close()
