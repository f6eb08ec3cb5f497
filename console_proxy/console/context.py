"""One ``mdm-console`` run: its exit statuses, its terminal, its settings and its client.

:class:`Context` carries what every command handler needs; the identity
(asking for its passphrase when needed) and the client are made on first use.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from console_proxy.client import Client, ConsoleError, Identity, IdentityProblem
from console_proxy.console.settings import PASSPHRASE_ENV, Settings, SettingsError


class Exit(IntEnum):
    """``mdm-console``'s exit statuses (documented in docs/console.md and --help)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CONNECTION = 3
    IDENTITY = 4
    FORBIDDEN = 5
    NOT_FOUND = 6
    PENDING = 7
    NOT_CONFIRMED = 8
    INTERRUPTED = 130


EXIT_STATUSES = """\
exit status:
  0  done
  1  the server refused or failed (invalid request, conflict, rate limited, ...)
  2  usage: bad arguments or a missing setting
  3  no connection: proxy unreachable, proxy not trusted (--ca), certificate
     refused in the TLS handshake, or the proxy cannot reach the admin API
  4  identity unusable: unreadable, wrong passphrase, certificate expired
  5  your role may not do this (403), or the API refused the proxy (401)
  6  not found: unknown device, command, approval, group
  7  pending: a second admin must approve (two-person approval)
  8  not confirmed: a destructive command was not confirmed (answer yes, or --yes)
  130 interrupted (Ctrl-C; `watch` ends with 0)
"""


@dataclass
class Terminal:
    """The console's streams and whether a person is there to answer questions."""

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    interactive: bool
    read_secret: Callable[[str], str] = getpass.getpass

    @classmethod
    def system(cls) -> Terminal:
        """The process's own terminal."""
        return cls(sys.stdin, sys.stdout, sys.stderr,
                   interactive=sys.stdin is not None and sys.stdin.isatty())

    def ask(self, prompt: str) -> str | None:
        """The person's one-line answer, or None when nobody can answer."""
        if not self.interactive:
            return None
        print(prompt, end="", file=self.stderr, flush=True)
        line = self.stdin.readline()
        return line.strip() if line else None


class UsageError(ConsoleError):
    """Bad command-line arguments (exit status 2)."""


@dataclass
class Context:
    """One run: the arguments, the settings, and the client made from them on first use."""

    args: argparse.Namespace
    term: Terminal
    settings: Settings
    env: Mapping[str, str]
    clock: Callable[[], datetime]
    action: str = "do this"
    subject: str = ""
    _identity: Identity | None = field(default=None, repr=False)
    _client: Client | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        """``--json`` was given."""
        return bool(getattr(self.args, "json", False))

    @property
    def out(self) -> TextIO:
        """Where results go."""
        return self.term.stdout

    def identity(self) -> Identity:
        """The admin's identity, loaded once (asking for its passphrase if needed)."""
        if self._identity is None:
            self._identity = load_identity(self.settings, self.env, self.term)
        return self._identity

    def client(self) -> Client:
        """The client, made once."""
        if self._client is None:
            proxy = self.settings.require_proxy()
            self._client = Client.connect(proxy, self.identity(), self.settings.ca,
                                          clock=self.clock, timeout=self.settings.timeout)
        return self._client

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()


def read_passphrase(settings: Settings, env: Mapping[str, str], term: Terminal,
                    label: str) -> str | None:
    """The identity's passphrase: from --passphrase-file, the environment or a prompt.

    None when none is given and there is no terminal to ask on.
    """
    if settings.passphrase_file:
        try:
            with open(settings.passphrase_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except OSError as exc:
            raise IdentityProblem(f"cannot read the passphrase file {settings.passphrase_file}:"
                                  f" {exc.strerror or exc}",
                                  "check --passphrase-file") from None
    if PASSPHRASE_ENV in env:
        return env[PASSPHRASE_ENV]
    if term.interactive:
        return term.read_secret(f"passphrase for {label}: ")
    return None


def load_identity(settings: Settings, env: Mapping[str, str], term: Terminal) -> Identity:
    """The identity the settings name: a PKCS#12 bundle, or a PEM certificate and key."""
    if settings.identity:
        passphrase = read_passphrase(settings, env, term, settings.identity)
        if passphrase is None:
            raise IdentityProblem(
                f"the identity {settings.identity} needs its passphrase and there is no "
                "terminal to ask it on",
                f"give --passphrase-file FILE or set {PASSPHRASE_ENV}")
        return Identity.from_pkcs12(settings.identity, passphrase)
    if settings.cert and settings.key:
        passphrase = None
        try:
            encrypted = b"ENCRYPTED" in Path(settings.key).read_bytes()
        except OSError:
            encrypted = False  # from_pem names the unreadable file
        if encrypted:
            passphrase = read_passphrase(settings, env, term, settings.key)
        return Identity.from_pem(settings.cert, settings.key, passphrase)
    raise SettingsError(
        "no identity given",
        "give --identity FILE.p12 (or --cert FILE --key FILE), set MDM_CONSOLE_IDENTITY, "
        "or write identity = \"FILE.p12\" in ~/.config/mdm-console/config.toml")
