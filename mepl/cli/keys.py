"""``mepl keys``: the deployment's CA and command-signing keys, bundles, test sealing.

``init`` creates ``<state_dir>/keys/`` (CA unless given, signing key 1 and its
certificate); ``rotate`` adds the next key, makes it active (old keys stay
for the overlap) and queues ``rotate_key`` for every enrolled device
(:mod:`mepl.app.keys`); ``show`` prints the public index and, with a
database, how many devices are on each key; ``export-provisioning``
prints a device's bundle as JSON or a QR string; ``seal`` signs a command
frame under the ``--counter`` it is given (for testing and test vectors only:
the MEPL seals in its dispatcher, with counters allocated in its database);
``verify-reply`` and ``verify-alert`` check device frames.  Private keys are
encrypted with ``$MEPL_KEY_PASSPHRASE`` or ``--passphrase-file`` when either
is set (at least 12 characters of two character classes, else refused;
PBKDF2-HMAC-SHA256 with 600,000 iterations), otherwise written as mode 0600
files with a ``mepl: warning:`` line on stderr, as is every read of an
unencrypted or weakly encrypted key.  Nothing here prints a private key or a
passphrase.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher

from blobstore.config import DatabaseConfig
from blobstore.database import Database
from mepl.app.keys import DEFAULT_ROTATION_VALIDITY, Rotation, key_usage_txn, rotate_server_key
from mepl.cli.common import (
    GeneralConfig,
    add_config_options,
    config_error,
    fail,
    general_config,
    load_raw_config,
)
from mepl.cli.db import cli_actor, cli_user, run_with_database, transactions
from mepl.config import ConfigError, build
from signing.commands import Command, Opcode, make_command, opcode_from_name, rotate_key_command
from signing.config import SigningConfig
from signing.errors import FrameRejected, SigningError
from signing.frames import open_alert, open_reply, seal_command
from signing.keyfiles import passphrase_from
from signing.keys import VerifyKey, device_key_id
from signing.keystore import ServerKeyStore
from signing.transport import armour
from sms_gateway.addresses import to_e164
from sms_gateway.errors import AddressError


def parse_now(text: str | None) -> datetime:
    """``--now`` as an aware datetime (ISO 8601; naive means UTC); default: the clock."""
    if text is None:
        return datetime.now(UTC)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def hex_bytes(text: str) -> bytes:
    """An argparse type for hexadecimal octets."""
    try:
        return bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        raise argparse.ArgumentTypeError("expected hexadecimal octets") from None


def iso_time(text: str) -> str:
    """An argparse type checking an ISO 8601 time."""
    try:
        parse_now(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return text


def add_passphrase_option(parser: argparse.ArgumentParser) -> None:
    """``--passphrase-file`` (else ``$MEPL_KEY_PASSPHRASE``, else unencrypted 0600 files)."""
    parser.add_argument("--passphrase-file", type=Path, metavar="FILE",
                        help="file whose first line is the key passphrase, at least 12 "
                             "characters mixing two of lowercase, uppercase, digits, other "
                             "(default: $MEPL_KEY_PASSPHRASE; none: unencrypted 0600 files, "
                             "with a warning)")


@contextmanager
def key_warnings_on_stderr() -> Iterator[None]:
    """While active, print the key-file warnings of :mod:`signing.keyfiles` (a key
    stored unencrypted, a weak key derivation) as ``mepl: warning: ...`` lines on
    stderr; they carry file paths, never a key or a passphrase."""
    def show(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "signing.keyfiles" and event.get(
                "log_level") is LogLevel.warn:
            print(f"mepl: warning: {formatEvent(event)}", file=sys.stderr)

    observer = cast(ILogObserver, show)  # a plain callable is a valid observer
    globalLogPublisher.addObserver(observer)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observer)


def register(subparsers: Any) -> None:
    """Add ``mepl keys ...``."""
    keys = subparsers.add_parser("keys", help="CA, command-signing keys and provisioning")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="create the CA (unless given) and signing key 1")
    init.add_argument("--ca-cert", type=Path, metavar="FILE", help="an existing CA certificate")
    init.add_argument("--ca-key", type=Path, metavar="FILE", help="its private key (PKCS#8 PEM)")
    init.add_argument("--trusted-number", action="append", default=[], metavar="NUMBER",
                      help="a server number devices accept commands from (repeatable)")
    init.set_defaults(func=_init)

    rotate = sub.add_parser(
        "rotate", help="create the next signing key and announce it to every enrolled device",
        description=ROTATE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    rotate.add_argument("--no-queue", action="store_true",
                        help="only create the key (no database needed): no device is told, "
                             "each stays on the key on record for it; a device with none "
                             "would be sent the new key (check devices_unpinned is 0 in "
                             "`mepl keys show` first)")
    rotate.add_argument("--valid-days", type=positive_days, metavar="DAYS",
                        default=DEFAULT_ROTATION_VALIDITY.days,
                        help="validity of the rotate_key commands, so handsets out of "
                             "coverage get them when they return "
                             f"(default: {DEFAULT_ROTATION_VALIDITY.days})")
    rotate.set_defaults(func=_rotate)

    show = sub.add_parser(
        "show", help="print the public key index as JSON, with the devices on each key",
        description="Print the key index (server id, active key, every key's public half, "
                    "trusted numbers) as JSON.  With a database configured it adds "
                    "devices_per_key (how many devices have accepted each key) and "
                    "devices_unpinned (enrolled devices with no key on record).")
    show.set_defaults(func=_show)

    export = sub.add_parser("export-provisioning", help="print a device's provisioning bundle")
    export.add_argument("--imei", required=True)
    export.add_argument("--format", choices=("json", "qr"), default="json")
    export.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    export.set_defaults(func=_export)

    seal = sub.add_parser(
        "seal", help="sign a command frame for a device (prints hex; testing only)",
        description="Sign one command frame for testing, debugging and test vectors. "
                    "The running server seals commands itself, under counters allocated "
                    "in its database; this command knows nothing of them, so the counter "
                    "is given explicitly and a device that has received the server's "
                    "commands refuses a counter it has already seen.")
    seal.add_argument("--imei", required=True)
    seal.add_argument("--opcode", required=True,
                      help="one of: " + ", ".join(op.name.lower() for op in Opcode))
    seal.add_argument("--args", default="{}", metavar="JSON", help='arguments, e.g. {"minutes": 5}')
    seal.add_argument("--counter", type=int, metavar="N",
                      help="required: the frame's counter (1..2^48-1, per key and device); "
                           "not taken from the server's database")
    seal.add_argument("--key-id", type=int, help="default: the active key (rotate_key: the one "
                                                 "before it)")
    seal.add_argument("--valid-minutes", type=int,
                      help="not-after = now + this (default: signing.command_validity_minutes)")
    seal.add_argument("--now", type=iso_time, help="ISO 8601 time to seal at (default: now)")
    seal.add_argument("--armour", action="store_true", help="print the text-armoured form")
    seal.set_defaults(func=_seal)

    reply = sub.add_parser("verify-reply", help="verify a device's reply to a command")
    alert = sub.add_parser("verify-alert", help="verify a device's alert")
    for parser in (reply, alert):
        parser.add_argument("--imei", required=True)
        parser.add_argument("--device-key", type=hex_bytes, required=True, metavar="HEX",
                            help="the device public key printed by `mepl handset init`")
    reply.add_argument("--command", type=hex_bytes, required=True, metavar="HEX")
    reply.add_argument("--reply", type=hex_bytes, required=True, metavar="HEX")
    reply.set_defaults(func=_verify_reply)
    alert.add_argument("--alert", type=hex_bytes, required=True, metavar="HEX")
    alert.set_defaults(func=_verify_alert)

    for parser in (init, rotate, show, export, seal, reply, alert):
        add_config_options(parser)
        add_passphrase_option(parser)


ROTATE_DESCRIPTION = """\
Create the next server signing key, make it active, and queue one rotate_key
command (security priority) for every device that has a public key and is
not retired.  Each is sealed with the key that device has accepted, so every
handset can verify it; the handset's signed ok reply moves the device to
the new key, and until then it keeps getting frames under its old key.
Devices with no key on record are first pinned to the key active until now.
`mepl keys show` counts the devices on each key while the fleet moves.
Needs the database (like `mepl devices`) unless --no-queue is given.
"""


def positive_days(text: str) -> int:
    """An argparse type for a whole number of days, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= value <= 365:
        raise argparse.ArgumentTypeError("must be between 1 and 365 days")
    return value


def signing_config(raw: dict[str, Any]) -> SigningConfig:
    """Build the ``[signing]`` section."""
    return build(SigningConfig, raw.get("signing", {}), "signing")


def _store(args: argparse.Namespace) -> ServerKeyStore:
    raw = load_raw_config(args)
    return ServerKeyStore(signing_config(raw).keys_path(general_config(raw).state_dir))


def _passphrase(args: argparse.Namespace) -> bytes | None:
    path = args.passphrase_file or signing_config(load_raw_config(args)).passphrase_file
    return passphrase_from(os.environ, path)


def _guard(func: Any) -> Any:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            with key_warnings_on_stderr():
                status: int = func(args)
        except ConfigError as exc:
            return config_error(exc)
        except (SigningError, AddressError, ValueError, OSError) as exc:
            return fail(str(exc))
        return status
    wrapper.__doc__ = func.__doc__
    return wrapper


@_guard
def _init(args: argparse.Namespace) -> int:
    region = general_config(load_raw_config(args)).default_region
    numbers = tuple(to_e164(n, region) for n in args.trusted_number)
    index = _store(args).init(
        now=datetime.now(UTC), passphrase=_passphrase(args), trusted_numbers=numbers,
        ca_cert_path=args.ca_cert, ca_key_path=args.ca_key)
    print(json.dumps({"server_id": index.server_id.hex(), "key_id": index.active_key_id}))
    return 0


def _database_configured(args: argparse.Namespace) -> bool:
    """A database URL is set, or the embedded database exists in the state directory."""
    raw = load_raw_config(args)
    url = build(DatabaseConfig, raw.get("database", {}), "database").url
    return url is not None or (general_config(raw).state_dir / "pg").exists()


@_guard
def _rotate(args: argparse.Namespace) -> int:
    store = _store(args)
    passphrase = _passphrase(args)
    validity = timedelta(days=args.valid_days)

    def rotate(database: Database | None) -> int:
        rotation: Rotation = rotate_server_key(
            None if database is None else database.engine, store, passphrase=passphrase,
            now=datetime.now(UTC), actor=cli_actor(), validity=validity)
        print(json.dumps(rotation.to_json()))
        return 0

    if args.no_queue:
        return rotate(None)
    if not _database_configured(args):
        return fail("no database is configured ([database] url, $MEPL_DATABASE_URL, "
                    "--database-url, or an embedded one in the state directory), so no "
                    "device could be told of a new key; give --no-queue to only create it")
    return run_with_database(args, lambda database, general: rotate(database))


@_guard
def _show(args: argparse.Namespace) -> int:
    index = _store(args).load()
    shown: dict[str, Any] = {
        "server_id": index.server_id.hex(),
        "active_key_id": index.active_key_id,
        "keys": [{"key_id": k.key_id, "public_key": k.raw.hex()} for k in index.keys],
        "trusted_numbers": list(index.trusted_numbers),
        "devices_per_key": None,
        "devices_unpinned": None,
    }
    if not _database_configured(args):
        print(json.dumps(shown, indent=2))
        print("mepl: devices per key: database not configured", file=sys.stderr)
        return 0
    printed = False

    def body(database: Database, general: GeneralConfig) -> int:
        nonlocal printed
        usage = transactions(database).run("keys show", key_usage_txn, cli_user())
        shown["devices_unpinned"] = usage.unpinned
        shown["devices_per_key"] = {str(k): n for k, n in sorted(usage.devices_per_key.items())}
        print(json.dumps(shown, indent=2))
        printed = True
        return 0

    status = run_with_database(args, body)
    if not printed:
        print(json.dumps(shown, indent=2))
        print("mepl: devices per key: database unavailable (see above)", file=sys.stderr)
    return status


@_guard
def _export(args: argparse.Namespace) -> int:
    bundle = _store(args).bundle(args.imei)
    text = json.dumps(bundle.to_json(), indent=2) if args.format == "json" else bundle.to_qr()
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _command(args: argparse.Namespace, store: ServerKeyStore) -> tuple[Command, int]:
    index = store.load()
    params = json.loads(args.args)
    if not isinstance(params, dict):
        raise ValueError("--args must be a JSON object")
    opcode = opcode_from_name(args.opcode)
    if opcode is Opcode.ROTATE_KEY and not params:
        older = [k.key_id for k in index.keys if k.key_id < index.active_key_id]
        if not older:
            raise ValueError("no earlier key to sign the rotation: run `mepl keys rotate` first")
        active = index.key(index.active_key_id)
        signer = args.key_id if args.key_id is not None else max(older)
        return rotate_key_command(active.key_id, active.raw), signer
    signer = args.key_id if args.key_id is not None else index.active_key_id
    return make_command(opcode, **params), signer


@_guard
def _seal(args: argparse.Namespace) -> int:
    if args.counter is None:
        return fail("--counter N is required: the server's counters are in its database "
                    "and `mepl keys seal` does not use them (it is for testing and test "
                    "vectors); give the counter the device should see")
    store = _store(args)
    command, signer = _command(args, store)
    key = store.signing_key(signer, _passphrase(args))
    counter = args.counter
    now = parse_now(args.now)
    minutes = args.valid_minutes
    if minutes is None:
        minutes = signing_config(load_raw_config(args)).command_validity_minutes
    frame = seal_command(command, key=key, server_id=store.load().server_id, imei=args.imei,
                         counter=counter, not_after=now + timedelta(minutes=minutes))
    print(armour(frame) if args.armour else frame.hex())
    return 0


def _device_key(raw: bytes) -> VerifyKey:
    return VerifyKey.from_raw(device_key_id(raw), raw)


@_guard
def _verify_reply(args: argparse.Namespace) -> int:
    try:
        reply = open_reply(args.reply, device_key=_device_key(args.device_key),
                           server_id=_store(args).load().server_id, imei=args.imei,
                           command_frame=args.command)
    except FrameRejected as exc:
        print(f"mepl: rejected: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({
        "imei": reply.header.imei, "command_key_id": reply.header.command_key_id,
        "command_counter": reply.header.command_counter, "status": reply.status.name.lower(),
        "items": [{"tag": tag, "value": value.hex()} for tag, value in reply.items],
    }))
    return 0


@_guard
def _verify_alert(args: argparse.Namespace) -> int:
    try:
        opened = open_alert(args.alert, device_key=_device_key(args.device_key),
                            server_id=_store(args).load().server_id, imei=args.imei)
    except FrameRejected as exc:
        print(f"mepl: rejected: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"imei": opened.header.imei, "counter": opened.header.counter,
                      "raised_minutes": opened.header.raised_minutes, **opened.alert.to_json()}))
    return 0
