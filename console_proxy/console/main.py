"""``mdm-console``: the admins' command-line console, through the console proxy.

A thin front end of :mod:`console_proxy.client`: it parses, calls one
method, prints a table (or JSON with ``--json``) and turns every expected
failure into a message that says what to do, with a documented exit status
(never a stack trace).  It is the composition root of the console: it alone
reads the wall clock, the environment and the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from console_proxy.client import (
    ApiError,
    Client,
    ConnectionProblem,
    ConsoleError,
    Forbidden,
    Identity,
    IdentityProblem,
    NotFound,
    Unauthenticated,
    UpstreamUnavailable,
    device_target,
    fleet_target,
    group_target,
    is_destructive,
)
from console_proxy.client.models import Approval, Event, SendResult
from console_proxy.console import output
from console_proxy.console.settings import PASSPHRASE_ENV, Settings, SettingsError, resolve


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

PRIORITIES = ("security", "normal", "bulk")


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


def _passphrase(settings: Settings, env: Mapping[str, str], term: Terminal,
                label: str) -> str | None:
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
        passphrase = _passphrase(settings, env, term, settings.identity)
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
            passphrase = _passphrase(settings, env, term, settings.key)
        return Identity.from_pem(settings.cert, settings.key, passphrase)
    raise SettingsError(
        "no identity given",
        "give --identity FILE.p12 (or --cert FILE --key FILE), set MDM_CONSOLE_IDENTITY, "
        "or write identity = \"FILE.p12\" in ~/.config/mdm-console/config.toml")


# -- the commands ------------------------------------------------------------------------------


def _show_page(ctx: Context, page: Any, headers: Sequence[str],
               row: Callable[[Any], Sequence[Any]]) -> int:
    if ctx.json:
        output.dump(ctx.out, page.raw)
        return Exit.OK
    output.table(ctx.out, headers, [row(item) for item in page.items])
    output.more(ctx.out, page.next)
    return Exit.OK


def cmd_whoami(ctx: Context) -> int:
    """``whoami``: the identity here, and as the proxy and the API see it."""
    ctx.action = "ask who you are"
    me = ctx.client().whoami()
    identity = ctx.identity()
    if ctx.json:
        output.dump(ctx.out, {**me.raw, "certificate": {
            "subject": identity.certificate.subject.rfc4514_string(),
            "not_after": identity.not_after.isoformat(), "source": identity.source}})
        return Exit.OK
    output.fields(ctx.out, [
        ("name", me.name), ("role", me.role), ("fingerprint", me.fingerprint),
        ("deployment", identity.organisation), ("expires", identity.not_after.isoformat()),
        ("identity", identity.source), ("proxy", ctx.client().endpoint.url)])
    return Exit.OK


def cmd_devices_find(ctx: Context) -> int:
    """``devices find``: one device by IMEI, IMSI or phone number."""
    ctx.action, ctx.subject = "look at devices", f"device {ctx.args.identifier}"
    device = ctx.client().get_device(ctx.args.identifier, region=ctx.args.region)
    if ctx.json:
        output.dump(ctx.out, device.raw)
        return Exit.OK
    output.fields(ctx.out, [
        ("imei", device.imei), ("imsi", device.imsi), ("phone", device.msisdn),
        ("state", device.state), ("groups", list(device.groups)),
        ("key", device.key_id), ("last seen", device.last_seen_at),
        ("enrolled", device.raw.get("created_at"))])
    history = device.raw.get("identity_history")
    if isinstance(history, list) and history:
        print("identity history:", file=ctx.out)
        for change in history:
            if isinstance(change, dict):
                print(f"  {output.cell(change.get('changed_at'))}  {change.get('kind')}: "
                      f"{output.cell(change.get('old'))} -> {output.cell(change.get('new'))}",
                      file=ctx.out)
    return Exit.OK


def cmd_devices_list(ctx: Context) -> int:
    """``devices list``: a page of devices."""
    ctx.action = "list devices"
    a = ctx.args
    page = ctx.client().list_devices(q=a.query, group=a.group, state=a.state, limit=a.limit,
                                     after=a.after)
    return _show_page(ctx, page, ("IMEI", "IMSI", "PHONE", "STATE", "GROUPS", "LAST SEEN"),
                      lambda d: (d.imei, d.imsi, d.msisdn, d.state, list(d.groups),
                                 d.last_seen_at))


def _parse_args(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"argument {pair!r} is not NAME=VALUE",
                             "give command arguments as NAME=VALUE, e.g. minutes=30")
        values[name.strip()] = value
    return values


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m, 12h, 1d")
    return int(number) * units[unit]


def _target_text(target: Mapping[str, Any]) -> str:
    if "device" in target:
        return f"device {target['device']}"
    if "group" in target:
        return f"every device of group {target['group']}"
    return "the whole fleet"


def _confirm(ctx: Context, command: str, target: Mapping[str, Any]) -> bool:
    what = (f"{command} erases {_target_text(target)}" if command.lower() == "wipe"
            else f"{command} {_target_text(target)}")
    answer = ctx.term.ask(f"{what}. Send it? Type yes to confirm: ")
    if answer is None:
        print(f"mdm-console: not sent: {what} must be confirmed, and there is no terminal to "
              "ask\n  hint: add --yes to confirm it on the command line", file=ctx.term.stderr)
        return False
    if answer.lower() not in ("y", "yes"):
        print("mdm-console: not sent (not confirmed)", file=ctx.term.stderr)
        return False
    return True


def _pending(ctx: Context, approval: Approval, request_id: str | None) -> int:
    if ctx.json:
        output.dump(ctx.out, {"approval": approval.raw})
        return Exit.PENDING
    expires = f"; it expires at {output.cell(approval.expires_at)}" if approval.expires_at else ""
    print(f"pending approval {approval.id}, a second admin must approve "
          f"({approval.action}){expires}", file=ctx.out)
    print(f"  another admin runs: mdm-console approvals approve {approval.id}", file=ctx.out)
    if request_id:
        print(f"  request id: {request_id}", file=ctx.out)
    return Exit.PENDING


def cmd_send(ctx: Context) -> int:
    """``send``: queue a command for a device, a group or the fleet."""
    a = ctx.args
    command = a.command
    if a.all:
        target = fleet_target()
    elif a.group is not None:
        target = group_target(a.group)
    else:
        target = device_target(a.device)
        ctx.subject = f"device {a.device}"
    ctx.action = f"send {command} to {_target_text(target)}"
    arguments = _parse_args(a.arguments)
    confirm: bool | None = None
    if is_destructive(command, target):
        if not (a.yes or _confirm(ctx, command, target)):
            return Exit.NOT_CONFIRMED
        confirm = True
    result: SendResult = ctx.client().send_command(
        command, target, args=arguments, priority=a.priority, valid_for_s=a.valid_for,
        confirm=confirm)
    if result.approval is not None:
        return _pending(ctx, result.approval, result.request_id)
    queued = result.queued
    assert queued is not None  # SendResult holds one of the two
    if ctx.json:
        output.dump(ctx.out, {"queued": queued.raw})
        return Exit.OK
    ids = []
    if queued.command_id is not None:
        ids.append(f"command {queued.command_id}")
    if queued.fanout_id is not None:
        ids.append(f"fan-out {queued.fanout_id}")
    suffix = f" ({', '.join(ids)})" if ids else ""
    print(f"queued {queued.command or command} for {queued.count} device(s){suffix}",
          file=ctx.out)
    return Exit.OK


def cmd_approvals_list(ctx: Context) -> int:
    """``approvals list``."""
    ctx.action = "list approvals"
    status = None if ctx.args.status == "all" else ctx.args.status
    page = ctx.client().list_approvals(status=status, limit=ctx.args.limit, after=ctx.args.after)
    return _show_page(ctx, page, ("ID", "ACTION", "STATUS", "REQUESTED BY", "REQUESTED",
                                  "EXPIRES", "REQUEST"),
                      lambda p: (p.id, p.action, p.status, p.requested_by, p.requested_at,
                                 p.expires_at, _request_text(p.request)))


def _request_text(request: Mapping[str, Any]) -> str:
    command = request.get("command")
    target = request.get("target")
    if isinstance(command, str) and isinstance(target, dict):
        return f"{command} to {_target_text(target)}"
    return output.cell(dict(request))


def _decided(ctx: Context, approval: Approval, verb: str) -> int:
    if ctx.json:
        output.dump(ctx.out, approval.raw)
        return Exit.OK
    print(f"{verb} approval {approval.id} ({approval.action}): now {approval.status}",
          file=ctx.out)
    if approval.result is not None:
        result = approval.result
        ids = [f"command {result.command_id}"] if result.command_id is not None else []
        ids += [f"fan-out {result.fanout_id}"] if result.fanout_id is not None else []
        print(f"  queued {result.command} for {result.count} device(s)"
              + (f" ({', '.join(ids)})" if ids else ""), file=ctx.out)
    return Exit.OK


def cmd_approvals_approve(ctx: Context) -> int:
    """``approvals approve ID``."""
    ctx.action, ctx.subject = "approve requests", f"approval {ctx.args.id}"
    return _decided(ctx, ctx.client().approve(ctx.args.id), "approved")


def cmd_approvals_reject(ctx: Context) -> int:
    """``approvals reject ID``."""
    ctx.action, ctx.subject = "reject requests", f"approval {ctx.args.id}"
    return _decided(ctx, ctx.client().reject(ctx.args.id, ctx.args.reason), "rejected")


def cmd_commands_list(ctx: Context) -> int:
    """``commands list``."""
    a = ctx.args
    ctx.action = "list commands"
    if a.device:
        ctx.subject = f"device {a.device}"
    page = ctx.client().list_commands(device=a.device, state=a.state, fanout=a.fanout,
                                      limit=a.limit, after=a.after)
    return _show_page(ctx, page, ("ID", "COMMAND", "DEVICE", "STATE", "TRIES", "BY", "CREATED"),
                      lambda c: (c.id, c.opcode, c.device, c.state, c.attempts,
                                 c.requested_by, c.created_at))


def cmd_commands_show(ctx: Context) -> int:
    """``commands show ID``: the command and its history."""
    ctx.action, ctx.subject = "look at commands", f"command {ctx.args.id}"
    command = ctx.client().get_command(ctx.args.id)
    if ctx.json:
        output.dump(ctx.out, command.raw)
        return Exit.OK
    inner = command.raw.get("command")
    body = inner if isinstance(inner, dict) else command.raw
    output.fields(ctx.out, [
        ("command", command.id), ("opcode", command.opcode), ("device", command.device),
        ("state", command.state), ("priority", command.priority),
        ("attempts", command.attempts), ("requested by", command.requested_by),
        ("created", command.created_at), ("not after", body.get("not_after")),
        ("arguments", body.get("arguments", body.get("args"))),
        ("result", body.get("result")), ("last error", body.get("last_error"))])
    print("history:", file=ctx.out)
    output.table(ctx.out, ("AT", "FROM", "TO", "EVENT", "BY", "DETAILS"),
                 [(e.at, e.from_state, e.to_state, e.event, e.actor, e.details)
                  for e in command.history])
    return Exit.OK


def cmd_commands_cancel(ctx: Context) -> int:
    """``commands cancel ID``."""
    ctx.action, ctx.subject = "cancel commands", f"command {ctx.args.id}"
    done = ctx.client().cancel_command(ctx.args.id)
    if ctx.json:
        output.dump(ctx.out, done)
        return Exit.OK
    print(f"cancelled command {ctx.args.id}", file=ctx.out)
    return Exit.OK


def cmd_fanout(ctx: Context) -> int:
    """``fanout ID``: a fan-out's progress."""
    ctx.action, ctx.subject = "look at fan-outs", f"fan-out {ctx.args.id}"
    progress = ctx.client().get_fanout(ctx.args.id)
    if ctx.json:
        output.dump(ctx.out, progress.raw)
        return Exit.OK
    output.fields(ctx.out, [("fan-out", ctx.args.id), ("total", progress.total),
                            ("done", progress.done), ("failed", progress.failed)])
    output.table(ctx.out, ("STATE", "COMMANDS"), sorted(progress.by_state.items()))
    return Exit.OK


_ARROWS = {"out": "->", "outbound": "->", "in": "<-", "inbound": "<-"}


def cmd_history(ctx: Context) -> int:
    """``history DEVICE``: the device's messages both ways, decoded."""
    ctx.action, ctx.subject = "read message history", f"device {ctx.args.device}"
    page = ctx.client().device_messages(ctx.args.device, limit=ctx.args.limit,
                                        after=ctx.args.after)
    return _show_page(ctx, page, ("AT", "DIR", "CHANNEL", "KIND", "COMMAND", "VERDICT",
                                  "SUMMARY"),
                      lambda m: (m.at, _ARROWS.get(m.direction, m.direction), m.channel,
                                 m.kind, m.command_id, m.verdict, m.summary))


def cmd_alerts(ctx: Context) -> int:
    """``alerts``: alerts and security events, newest first."""
    ctx.action = "read alerts"
    if ctx.args.device:
        ctx.subject = f"device {ctx.args.device}"
    page = ctx.client().list_alerts(device=ctx.args.device, since=ctx.args.since,
                                    limit=ctx.args.limit, after=ctx.args.after)
    return _show_page(ctx, page, ("AT", "DEVICE", "KIND", "DETAILS"),
                      lambda a: (a.at, a.imei, a.kind, a.details))


def cmd_audit(ctx: Context) -> int:
    """``audit``: the audit trail (admins)."""
    ctx.action = "read the audit"
    page = ctx.client().list_audit(actor=ctx.args.actor, action=ctx.args.action,
                                   limit=ctx.args.limit, after=ctx.args.after)
    return _show_page(ctx, page, ("AT", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME"),
                      lambda e: (e.at, e.actor, e.role, e.action, e.target, e.outcome))


def event_line(event: Event) -> str:
    """One live event as a line for people."""
    data = event.data
    at = output.cell(data.get("at"))
    if event.event == "alert":
        details = data.get("details")
        return (f"{at}  ALERT {data.get('kind')}  device {data.get('imei')}"
                + (f"  {output.cell(details)}" if details else ""))
    if event.event == "command":
        note = f"  {data['note']}" if data.get("note") else ""
        return (f"{at}  command {data.get('command_id')}  {data.get('opcode')}  device "
                f"{data.get('imei')}  {data.get('from') or '-'} -> {data.get('to')}  "
                f"({data.get('event')}){note}")
    return f"{at}  {event.event}  {output.cell(data)}"


def cmd_watch(ctx: Context) -> int:
    """``watch``: print live events until Ctrl-C (or ``--count`` events)."""
    ctx.action = "watch live events"
    if ctx.args.device:
        ctx.subject = f"device {ctx.args.device}"
    stream = ctx.client().events(last_event_id=ctx.args.last_event_id, device=ctx.args.device,
                                 on_status=lambda state, detail: _stream_status(ctx, state,
                                                                                 detail))
    seen = 0
    try:
        for event in stream:
            if ctx.json:
                print(json.dumps({"id": event.id, "event": event.event, "data": event.data},
                                 sort_keys=True), file=ctx.out, flush=True)
            else:
                print(event_line(event), file=ctx.out, flush=True)
            seen += 1
            if ctx.args.count and seen >= ctx.args.count:
                break
    except KeyboardInterrupt:
        print(f"\nstopped; resume with --last-event-id {stream.last_event_id or ''}".rstrip(),
              file=ctx.term.stderr)
    finally:
        stream.close()
    return Exit.OK


def cmd_gui(ctx: Context) -> int:
    """``gui``: the desktop console (needs the optional extra ``mepl[console]``, PySide6)."""
    try:
        app = importlib.import_module("console_proxy.gui.app")
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("PySide6", "shiboken6"):
            raise
        raise UsageError("the desktop console needs PySide6 (Qt for Python), which is not "
                         "installed", "install mepl[console]: pip install 'mepl[console]'"
                         ) from None
    passphrase = None
    if ctx.settings.passphrase_file or PASSPHRASE_ENV in ctx.env:
        passphrase = _passphrase(ctx.settings, ctx.env, ctx.term, "")
    return int(app.run(ctx.settings, passphrase))


def _stream_status(ctx: Context, state: str, detail: str) -> None:
    if state in ("disconnected", "reconnecting") and not ctx.json:
        print(f"mdm-console: event stream {state}: {detail}", file=ctx.term.stderr, flush=True)
    elif state == "connected" and detail and not ctx.json:
        print(f"mdm-console: event stream resumed after {detail}", file=ctx.term.stderr,
              flush=True)


# -- the parser --------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument("--json", action="store_true", default=s,
                        help="print JSON for scripts instead of tables")
    group = common.add_argument_group("connection (flags, then MDM_CONSOLE_*, then the config)")
    group.add_argument("--proxy", metavar="URL", default=s,
                       help="the console proxy, https://HOST:8443 (MDM_CONSOLE_PROXY)")
    group.add_argument("--identity", metavar="FILE.p12", default=s,
                       help="your PKCS#12 identity (MDM_CONSOLE_IDENTITY)")
    group.add_argument("--cert", metavar="FILE", default=s,
                       help="or your PEM certificate ... (MDM_CONSOLE_CERT)")
    group.add_argument("--key", metavar="FILE", default=s,
                       help="... and its PEM key (MDM_CONSOLE_KEY)")
    group.add_argument("--ca", metavar="FILE", default=s,
                       help="the deployment's CA certificate, to verify the proxy "
                            "(MDM_CONSOLE_CA)")
    group.add_argument("--passphrase-file", metavar="FILE", default=s,
                       help="read the identity's passphrase from FILE (else "
                            "MDM_CONSOLE_PASSPHRASE, else a prompt)")
    group.add_argument("--timeout", metavar="SECONDS", default=s,
                       help="network timeout (default 30)")
    group.add_argument("--config", metavar="FILE", default=s,
                       help="configuration file (MDM_CONSOLE_CONFIG; default "
                            "~/.config/mdm-console/config.toml)")
    return common


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, metavar="N", help="at most N (default 50, max 500)")
    parser.add_argument("--after", metavar="CURSOR", help="the page after this cursor")


def build_parser() -> argparse.ArgumentParser:
    """The ``mdm-console`` argument parser."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="mdm-console", parents=[common],
        description="The admins' console: devices, commands, approvals, history and live "
                    "events, through the console proxy (mutual TLS with your identity).",
        epilog=EXIT_STATUSES + "\nuser guide: docs/console.md",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    def add(parent: Any, name: str, handler: Callable[[Context], int], help_text: str,
            **kwargs: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text,
                                                       description=help_text, **kwargs)
        p.set_defaults(handler=handler)
        return p

    add(sub, "whoami", cmd_whoami, "who you are: your certificate, and as the proxy sees you")

    devices = sub.add_parser("devices", help="find and list devices")
    dsub = devices.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    find = add(dsub, "find", cmd_devices_find,
               "one device by IMEI, IMSI or phone number (any written form)")
    find.add_argument("identifier", metavar="IMEI|IMSI|PHONE")
    find.add_argument("--region", metavar="CC", help="read a national phone number in this "
                                                     "region (e.g. GB)")
    lst = add(dsub, "list", cmd_devices_list, "a page of devices")
    lst.add_argument("--query", "-q", metavar="TEXT", help="search IMEI, IMSI, phone")
    lst.add_argument("--group", metavar="NAME", help="members of this group")
    lst.add_argument("--state", metavar="STATE", help="e.g. active, lost, retired")
    _page_options(lst)

    send = add(sub, "send", cmd_send,
               "send a command to a device, a group or the whole fleet",
               epilog="A wipe, and a lock to a group or the whole fleet, ask for confirmation "
                      "unless --yes.\nWhere two-person approval applies the command waits: "
                      "the exit status is 7 and\nanother admin approves it with "
                      "`mdm-console approvals approve ID`.",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    send.add_argument("command", help="e.g. lock, unlock, status_query, locate, wipe, notify")
    send.add_argument("arguments", nargs="*", metavar="NAME=VALUE",
                      help="the command's arguments, e.g. minutes=30 'text=Call base'")
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", metavar="ID", help="IMEI, IMSI or phone number")
    target.add_argument("--group", metavar="NAME", help="every member of the group")
    target.add_argument("--all", action="store_true", help="the whole fleet")
    send.add_argument("--priority", choices=PRIORITIES,
                      help="lock, wipe, rotate_key and set_trusted_numbers are always security")
    send.add_argument("--valid-for", type=_duration, metavar="DURATION",
                      help="how long the command stays valid: 3600, 90m, 12h, 1d "
                           "(default: the server's, one day)")
    send.add_argument("--yes", "-y", action="store_true",
                      help="confirm a destructive command without being asked")

    approvals = sub.add_parser("approvals", help="two-person approvals: list, approve, reject")
    asub = approvals.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    alist = add(asub, "list", cmd_approvals_list, "approvals (pending ones by default)")
    alist.add_argument("--status", default="pending",
                       choices=("pending", "approved", "rejected", "expired", "all"))
    _page_options(alist)
    approve = add(asub, "approve", cmd_approvals_approve,
                  "approve another admin's request (admins)")
    approve.add_argument("id")
    reject = add(asub, "reject", cmd_approvals_reject, "reject another admin's request (admins)")
    reject.add_argument("id")
    reject.add_argument("--reason", help="why (kept in the audit)")

    commands = sub.add_parser("commands", help="list, show and cancel commands")
    csub = commands.add_subparsers(dest="commands_command", metavar="ACTION", required=True)
    clist = add(csub, "list", cmd_commands_list, "a page of commands")
    clist.add_argument("--device", metavar="ID", help="one device's (IMEI, IMSI or phone)")
    clist.add_argument("--state", help="e.g. queued, sent, delivered, done, failed")
    clist.add_argument("--fanout", metavar="ID", help="one fan-out's")
    _page_options(clist)
    show = add(csub, "show", cmd_commands_show, "one command and its full history")
    show.add_argument("id")
    cancel = add(csub, "cancel", cmd_commands_cancel, "withdraw a command that is still queued")
    cancel.add_argument("id")

    fanout = add(sub, "fanout", cmd_fanout, "a fan-out's progress (count by state)")
    fanout.add_argument("id")

    history = add(sub, "history", cmd_history,
                  "a device's messages both ways, decoded (newest first)")
    history.add_argument("device", metavar="IMEI|IMSI|PHONE")
    _page_options(history)

    alerts = add(sub, "alerts", cmd_alerts, "alerts and security events, newest first")
    alerts.add_argument("--device", metavar="ID")
    alerts.add_argument("--since", metavar="TIME", help="ISO 8601 time")
    _page_options(alerts)

    watch = add(sub, "watch", cmd_watch,
                "print live events as they happen (Ctrl-C to stop); reconnects and resumes")
    watch.add_argument("--device", metavar="ID", help="only this device's events")
    watch.add_argument("--last-event-id", metavar="ID",
                       help="resume after this event id (printed when you stop)")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N events")

    add(sub, "gui", cmd_gui, "the desktop console (install mepl[console]); the sign-in "
        "dialog is filled in from --proxy, --identity and --ca")

    audit = add(sub, "audit", cmd_audit, "the audit trail (admins)")
    audit.add_argument("--actor", metavar="NAME")
    audit.add_argument("--action", metavar="ACTION", help="e.g. command.send")
    _page_options(audit)
    return parser


# -- errors ------------------------------------------------------------------------------------


def _report(ctx: Context | None, term: Terminal, exc: ConsoleError, message: str,
            status: int) -> int:
    hint = exc.hint
    request_id = getattr(exc, "request_id", None)
    print(f"mdm-console: {message}", file=term.stderr)
    if hint:
        print(f"  hint: {hint}", file=term.stderr)
    if request_id:
        print(f"  request id: {request_id}", file=term.stderr)
    if ctx is not None and ctx.json:
        error: dict[str, Any] = {"message": message, "hint": hint or None,
                                 "code": getattr(exc, "code", type(exc).__name__),
                                 "request_id": request_id, "exit": int(status)}
        output.dump(ctx.out, {"error": error})
    return status


def _role_of(ctx: Context | None) -> str:
    if ctx is not None and ctx._identity is not None:
        return ctx._identity.role or "?"
    return "?"


def explain(ctx: Context | None, term: Terminal, exc: ConsoleError) -> int:
    """Print ``exc`` as a message that says what to do; its exit status."""
    if isinstance(exc, Forbidden):
        action = ctx.action if ctx is not None else "do this"
        message = f"your role {_role_of(ctx)} may not {action}: ask an admin ({exc.message})"
        exc.hint = exc.hint or "ask an admin to do it, or for an identity with a higher role"
        return _report(ctx, term, exc, message, Exit.FORBIDDEN)
    if isinstance(exc, NotFound):
        subject = ctx.subject if ctx is not None else ""
        if subject.startswith("device "):
            message = (f"unknown {subject}: no device has this IMEI, IMSI or phone number "
                       f"({exc.message})")
            exc.hint = exc.hint or ("check the number; `mdm-console devices list --query "
                                    "DIGITS` searches")
        else:
            message = f"not found: {subject + ': ' if subject else ''}{exc.message}"
        return _report(ctx, term, exc, message, Exit.NOT_FOUND)
    if isinstance(exc, Unauthenticated):
        exc.hint = exc.hint or "the proxy and the admin API disagree: tell their administrator"
        return _report(ctx, term, exc, f"the admin API refused the request: {exc.message}",
                       Exit.FORBIDDEN)
    if isinstance(exc, UpstreamUnavailable):
        return _report(ctx, term, exc, f"the proxy cannot reach the admin API: {exc.message}",
                       Exit.CONNECTION)
    if isinstance(exc, ApiError):
        return _report(ctx, term, exc, f"{exc.message} ({exc.code})", Exit.FAILED)
    if isinstance(exc, SettingsError | UsageError):
        return _report(ctx, term, exc, exc.message, Exit.USAGE)
    if isinstance(exc, IdentityProblem):
        return _report(ctx, term, exc, exc.message, Exit.IDENTITY)
    if isinstance(exc, ConnectionProblem):
        return _report(ctx, term, exc, exc.message, Exit.CONNECTION)
    return _report(ctx, term, exc, exc.message, Exit.FAILED)


def main(argv: Sequence[str] | None = None, *, terminal: Terminal | None = None,
         env: Mapping[str, str] | None = None,
         clock: Callable[[], datetime] | None = None) -> int:
    """Run ``mdm-console`` with ``argv``; the exit status (see :class:`Exit`)."""
    term = terminal or Terminal.system()
    environ = os.environ if env is None else env
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # argparse cannot take `send CMD --device X NAME=VALUE`: positionals after options.
            if getattr(args, "handler", None) is not cmd_send or any(
                    e.startswith("-") for e in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.arguments = [*args.arguments, *extra]
    except SystemExit as exc:  # --help, or argparse's usage error (already printed)
        return int(exc.code or 0) if isinstance(exc.code, int | None) else Exit.USAGE
    ctx: Context | None = None
    try:
        flags = {name: getattr(args, name, None) for name in
                 ("proxy", "identity", "cert", "key", "ca", "passphrase_file", "timeout")}
        settings = resolve(flags, environ, getattr(args, "config", None))
        ctx = Context(args, term, settings, environ, clock or (lambda: datetime.now(UTC)))
        return int(args.handler(ctx))
    except ConsoleError as exc:
        return int(explain(ctx, term, exc))
    except KeyboardInterrupt:
        print("\nmdm-console: interrupted", file=term.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        return Exit.OK
    finally:
        if ctx is not None:
            ctx.close()

