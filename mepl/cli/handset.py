"""``mepl handset``: the reference handset on the command line.

State lives in ``--state DIR``: ``state.json`` (trusted keys, IMEI, trusted
numbers, counter windows, stored replies, alert counter; no secrets) and
``device.key.pem`` (the device's private key: mode 0600, or encrypted with
``$MEPL_KEY_PASSPHRASE`` / ``--passphrase-file``).  ``receive`` prints the
decoded command as JSON and exits 0, or prints the rejection reason on
stderr and exits 1; ``alert`` prints a signed alert frame in hex.  The
handset's own number (``init --msisdn``, or the ``--msisdn`` of its last
``alert sim-changed``) is kept in the state; ``alert sim-changed --msisdn``
signs the new SIM's number into the alert: the number the server may record,
never the SMS sender.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mepl.cli.common import fail
from mepl.cli.keys import (
    add_passphrase_option,
    hex_bytes,
    iso_time,
    key_warnings_on_stderr,
    parse_now,
)
from signing.alerts import AlertType, make_alert
from signing.errors import FrameRejected, SigningError
from signing.handset import Handset
from signing.keyfiles import (
    passphrase_from,
    read_json,
    read_private_key,
    write_json,
    write_private_key,
)
from signing.keys import SigningKey, device_key_id
from signing.provisioning import parse_bundle
from signing.transport import dearmour

STATE_FILE = "state.json"
KEY_FILE = "device.key.pem"


def register(subparsers: Any) -> None:
    """Add ``mepl handset ...``."""
    handset = subparsers.add_parser("handset", help="the reference handset (debugging, simulator)")
    sub = handset.add_subparsers(dest="handset_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="create a handset from a provisioning bundle")
    init.add_argument("--bundle", type=Path, required=True, metavar="FILE",
                      help="bundle from `mepl keys export-provisioning` (JSON or QR string)")
    init.add_argument("--imei", required=True)
    init.add_argument("--msisdn", metavar="NUMBER",
                      help="the handset's own number, E.164 with + (if it knows it)")
    init.set_defaults(func=_warning_keys(_init))

    receive = sub.add_parser("receive", help="process one command frame")
    receive.add_argument("--from", dest="sender", required=True, metavar="NUMBER")
    source = receive.add_mutually_exclusive_group(required=True)
    source.add_argument("--hex", type=hex_bytes, metavar="FRAME", help="the frame in hex")
    source.add_argument("--text", metavar="TEXT", help="the text-armoured frame (M1:...)")
    receive.add_argument("--now", type=iso_time, help="ISO 8601 time (default: now)")
    receive.set_defaults(func=_warning_keys(_receive))

    alert = sub.add_parser("alert", help="sign an alert (prints the frame in hex)")
    alert.add_argument("type", choices=[t.name.lower().replace("_", "-") for t in AlertType])
    alert.add_argument("--imsi")
    alert.add_argument("--iccid")
    alert.add_argument("--msisdn", metavar="NUMBER",
                       help="sim-changed, invalid-sim: the SIM's own number, E.164 with + "
                            "(signed; sim-changed also records it as the handset's number)")
    alert.add_argument("--defect", type=int)
    alert.add_argument("--detail")
    alert.add_argument("--fence-id", type=int)
    alert.add_argument("--lat-e7", type=int)
    alert.add_argument("--lon-e7", type=int)
    alert.add_argument("--now", type=iso_time, help="ISO 8601 time (default: now)")
    alert.set_defaults(func=_warning_keys(_alert))

    show = sub.add_parser("show", help="print the handset state (no private key)")
    show.set_defaults(func=_show)

    for parser in (init, receive, alert, show):
        parser.add_argument("--state", type=Path, required=True, metavar="DIR",
                            help="the handset's state directory")
        add_passphrase_option(parser)


def _warning_keys(func: Callable[[argparse.Namespace], int]) -> Callable[
        [argparse.Namespace], int]:
    """Run ``func`` printing key-file warnings (an unencrypted device key) on stderr."""
    def wrapper(args: argparse.Namespace) -> int:
        with key_warnings_on_stderr():
            return func(args)
    return wrapper


def _passphrase(args: argparse.Namespace) -> bytes | None:
    return passphrase_from(os.environ, args.passphrase_file)


def _save(state_dir: Path) -> Any:
    def persist(handset: Handset) -> None:
        write_json(state_dir / STATE_FILE, handset.to_json())
    return persist


def _load(args: argparse.Namespace) -> Handset:
    data = read_json(args.state / STATE_FILE)
    key = read_private_key(args.state / KEY_FILE, int(data["device_key_id"]), _passphrase(args))
    handset = Handset.from_json(data, key)
    handset.persist = _save(args.state)
    return handset


def _init(args: argparse.Namespace) -> int:
    try:
        bundle = parse_bundle(args.bundle.read_text(encoding="utf-8"))
        bundle.verify(parse_now(None))
        if bundle.imei != args.imei:
            return fail(f"the bundle is for IMEI {bundle.imei}, not {args.imei}")
        if (args.state / STATE_FILE).exists():
            return fail(f"{args.state} already holds a handset")
        args.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = SigningKey.generate(1)
        key = SigningKey(device_key_id(fresh.public.raw), fresh.private_key)
        handset = Handset.from_bundle(bundle, key, msisdn=args.msisdn)
        write_private_key(args.state / KEY_FILE, key, _passphrase(args))
        _save(args.state)(handset)
    except (SigningError, ValueError, OSError) as exc:
        return fail(str(exc))
    print(key.public.raw.hex())
    return 0


def _receive(args: argparse.Namespace) -> int:
    try:
        handset = _load(args)
        frame = args.hex if args.hex is not None else dearmour(args.text)
        outcome = handset.receive(frame, args.sender, parse_now(args.now))
    except FrameRejected as exc:
        print(f"mepl: rejected: {exc.reason.value}", file=sys.stderr)
        return 1
    except (SigningError, ValueError, OSError) as exc:
        return fail(str(exc))
    opened = outcome.frame
    print(json.dumps({
        "command": opened.command.to_json(),
        "key_id": opened.key_id,
        "counter": opened.counter,
        "not_after": datetime.fromtimestamp(opened.not_after, UTC).isoformat(),
        "duplicate": outcome.duplicate,
        "reply": outcome.reply_frame.hex(),
    }))
    return 0


def _alert(args: argparse.Namespace) -> int:
    fields = {"imsi": args.imsi, "iccid": args.iccid, "msisdn": args.msisdn,
              "defect": args.defect, "detail": args.detail, "fence_id": args.fence_id,
              "lat_e7": args.lat_e7, "lon_e7": args.lon_e7}
    try:
        handset = _load(args)
        alert = make_alert(args.type, **{k: v for k, v in fields.items() if v is not None})
        frame = handset.alert(alert, parse_now(args.now))
    except (SigningError, ValueError, OSError) as exc:
        return fail(str(exc))
    print(frame.hex())
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        data = read_json(args.state / STATE_FILE)
    except (SigningError, OSError) as exc:
        return fail(str(exc))
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0
