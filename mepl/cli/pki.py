"""``mepl pki``: the admin PKI of the console proxy (a thin adapter over :mod:`console_proxy.pki`).

``init-ca`` creates the admin CA, its first CRL and the proxy's assertion key
pair; ``issue-server`` a TLS server certificate (the proxy's, or a remote admin
API's); ``issue-proxy`` the proxy's client certificate for a remote admin API;
``issue-admin`` an admin's
client certificate as a passphrase-protected PKCS#12 bundle plus PEM files;
``revoke`` and ``crl`` maintain the revocation list (regenerate it before its
next-update, e.g. daily from cron); ``list`` prints the index.  The CA key is
encrypted with ``--ca-passphrase-file`` or ``$MEPL_PKI_CA_PASSPHRASE`` when
given, else written as a 0600 file with a warning.  A bundle passphrase comes
from ``--passphrase-file`` or is prompted for; it is never printed or logged.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console_proxy import pki
from console_proxy.pkifiles import PkiError
from mepl.cli.common import DEFAULT_STATE_DIR, fail

CA_PASSPHRASE_ENV = "MEPL_PKI_CA_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def _first_line(path: Path) -> bytes:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PkiError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    if not lines or not lines[0]:
        raise PkiError(f"passphrase file {path} is empty")
    return lines[0].encode("utf-8")


def _prompt(label: str, *, twice: bool) -> bytes:
    if not sys.stdin.isatty():
        raise PkiError(f"no {label} passphrase: give a passphrase file (stdin is not a terminal)")
    first = getpass.getpass(f"{label} passphrase: ")
    if twice and getpass.getpass(f"{label} passphrase again: ") != first:
        raise PkiError(f"the two {label} passphrases differ")
    return first.encode("utf-8")


def ca_passphrase(args: argparse.Namespace, *, creating: bool) -> bytes | None:
    """The CA key passphrase: file, then environment, then a prompt if the key is encrypted."""
    if args.ca_passphrase_file is not None:
        return _first_line(args.ca_passphrase_file)
    value = os.environ.get(CA_PASSPHRASE_ENV)
    if value:
        return value.encode("utf-8")
    if creating:
        print("mepl: warning: the CA key is written unencrypted (mode 0600): give "
              f"--ca-passphrase-file or ${CA_PASSPHRASE_ENV} to encrypt it", file=sys.stderr)
        return None
    return _prompt("CA key", twice=False) if pki.ca_key_encrypted(args.dir) else None


def _now() -> datetime:
    return datetime.now(UTC)


def _init_ca(args: argparse.Namespace) -> int:
    files = pki.init_ca(args.dir, deployment=args.name, now=_now(), days=args.days,
                        passphrase=ca_passphrase(args, creating=True), crl_days=args.crl_days)
    for path in files:
        print(path)
    return 0


def _issue_server(args: argparse.Namespace) -> int:
    issued = pki.issue_server(args.dir, args.host, now=_now(), days=args.days,
                              ca_passphrase=ca_passphrase(args, creating=False),
                              client_auth=args.client_auth)
    print(f"serial {issued.entry.serial}")
    for path in issued.files:
        print(path)
    return 0


def _issue_proxy(args: argparse.Namespace) -> int:
    issued = pki.issue_proxy(args.dir, args.name, now=_now(), days=args.days,
                             ca_passphrase=ca_passphrase(args, creating=False))
    print(f"serial {issued.entry.serial}  fingerprint {issued.entry.fingerprint}")
    for path in issued.files:
        print(path)
    return 0


def _issue_admin(args: argparse.Namespace) -> int:
    ca = ca_passphrase(args, creating=False)
    bundle = (_first_line(args.passphrase_file) if args.passphrase_file is not None
              else _prompt(f"bundle ({args.name})", twice=True))
    issued = pki.issue_admin(args.dir, args.name, args.role, ca_passphrase=ca,
                             bundle_passphrase=bundle, now=_now(), days=args.days)
    print(f"serial {issued.entry.serial}  fingerprint {issued.entry.fingerprint}")
    for path in issued.files:
        print(path)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    entries = pki.revoke(args.dir, passphrase=ca_passphrase(args, creating=False), now=_now(),
                         serial=args.serial, cert_file=args.cert, name=args.name,
                         crl_days=args.crl_days)
    for entry in entries:
        print(f"revoked {entry.serial} ({entry.kind} {entry.name})")
    print(f"CRL regenerated: {args.dir / pki.CRL_FILE}")
    return 0


def _crl(args: argparse.Namespace) -> int:
    path = pki.make_crl(args.dir, passphrase=ca_passphrase(args, creating=False), now=_now(),
                        days=args.crl_days)
    print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    certs = pki.list_certs(args.dir)
    if args.json:
        print(json.dumps([asdict(c) for c in certs], indent=2))
        return 0
    print(f"{'serial':<40} {'kind':<6} {'name':<20} {'role':<8} {'not_after':<25} revoked_at")
    for c in certs:
        print(f"{c.serial:<40} {c.kind:<6} {c.name:<20} {c.role or '-':<8} "
              f"{c.not_after:<25} {c.revoked_at or '-'}")
    return 0


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except PkiError as exc:
            return fail(str(exc))
    return run


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid number of days {text!r} (at least 1)")
    return value


def register(subparsers: Any) -> None:
    """Add ``mepl pki ...``."""
    parser = subparsers.add_parser(
        "pki", help="admin CA, proxy and admin certificates, revocation (console proxy)",
        description="The admin PKI of the console proxy: CA, certificates, revocation list. "
                    "See docs/console-proxy.md.")
    sub = parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)

    def action(name: str, handler: Callable[[argparse.Namespace], int],
               text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
        p.add_argument("--dir", type=Path, default=DEFAULT_STATE_DIR / "admin-pki",
                       metavar="DIR", help="the PKI directory (default: %(default)s)")
        p.add_argument("--ca-passphrase-file", type=Path, metavar="FILE",
                       help=f"file whose first line is the CA key passphrase (default: "
                            f"${CA_PASSPHRASE_ENV}; prompted for when the key is encrypted)")
        p.set_defaults(func=_guarded(handler))
        return p

    init = action("init-ca", _init_ca, "create the admin CA, its CRL and the assertion key pair")
    init.add_argument("--name", default="mepl", metavar="DEPLOYMENT",
                      help="deployment name, the O= of every certificate (default: %(default)s)")
    init.add_argument("--days", type=_days, default=pki.DEFAULT_CA_DAYS,
                      help="CA validity in days (default: %(default)s)")
    init.add_argument("--crl-days", type=_days, default=pki.DEFAULT_CRL_DAYS,
                      help="days until the CRL's next-update (default: %(default)s)")

    server = action("issue-server", _issue_server,
                    "issue a TLS server certificate: the proxy's, or a remote admin API's")
    server.add_argument("--host", action="append", required=True, metavar="HOST",
                        help="DNS name or IP address clients connect to (repeatable)")
    server.add_argument("--days", type=_days, default=pki.DEFAULT_SERVER_DAYS,
                        help="validity in days (default: %(default)s)")
    server.add_argument("--client-auth", action="store_true",
                        help="also allow it as a client certificate (proxy to a remote API)")

    proxy = action("issue-proxy", _issue_proxy,
                   "issue the proxy's client certificate for an admin API on another host "
                   "(admin.listen)")
    proxy.add_argument("--name", required=True,
                       help="the proxy's name (the certificate's CN; its proxy.name)")
    proxy.add_argument("--days", type=_days, default=pki.DEFAULT_SERVER_DAYS,
                       help="validity in days (default: %(default)s)")

    admin = action("issue-admin", _issue_admin,
                   "issue an admin's client certificate (PKCS#12 bundle and PEM files)")
    admin.add_argument("--name", required=True, help="admin name (the certificate's CN)")
    admin.add_argument("--role", required=True, choices=pki.ROLES, help="the admin's role")
    admin.add_argument("--days", type=_days, default=pki.DEFAULT_ADMIN_DAYS,
                       help="validity in days (default: %(default)s)")
    admin.add_argument("--passphrase-file", type=Path, metavar="FILE",
                       help="file whose first line is the bundle passphrase (default: prompted)")

    rev = action("revoke", _revoke, "revoke certificates and regenerate the CRL")
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", help="serial number (hexadecimal, as `list` prints it)")
    which.add_argument("--cert", type=Path, metavar="FILE", help="the certificate (PEM)")
    which.add_argument("--name", help="every unrevoked certificate issued to this name")
    rev.add_argument("--crl-days", type=_days, default=pki.DEFAULT_CRL_DAYS,
                     help="days until the CRL's next-update (default: %(default)s)")

    crl = action("crl", _crl, "regenerate the CRL (do so before its next-update)")
    crl.add_argument("--crl-days", type=_days, default=pki.DEFAULT_CRL_DAYS,
                     help="days until the CRL's next-update (default: %(default)s)")

    lst = action("list", _list, "list the issued certificates")
    lst.add_argument("--json", action="store_true", help="JSON for scripts")
