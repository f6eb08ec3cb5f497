"""``mdm-console``'s argument parser: the commands, their options and the --help texts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from console_proxy.console.context import EXIT_STATUSES, Context
from console_proxy.console.devices import (
    cmd_commands_cancel,
    cmd_commands_list,
    cmd_commands_show,
    cmd_devices_find,
    cmd_devices_list,
    cmd_fanout,
    cmd_history,
    cmd_send,
)
from console_proxy.console.oversight import (
    cmd_alerts,
    cmd_approvals_approve,
    cmd_approvals_list,
    cmd_approvals_reject,
    cmd_audit,
    cmd_gui,
    cmd_pdus,
    cmd_watch,
    cmd_whoami,
)

PRIORITIES = ("security", "normal", "bulk")


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m, 12h, 1d")
    return int(number) * units[unit]


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

    pdus = add(sub, "pdus", cmd_pdus,
               "a link's raw SMPP PDUs in a time window, or one stored SMS's, oldest first")
    pdus.add_argument("--link", metavar="LINK", help="the SMPP link")
    pdus.add_argument("--message", type=int, metavar="ID",
                      help="the PDUs of this stored SMS (an id from `history`)")
    pdus.add_argument("--since", metavar="TIME", help="ISO 8601 time (default: ten minutes "
                                                     "before --until)")
    pdus.add_argument("--until", metavar="TIME", help="ISO 8601 time, excluded (default: now)")
    pdus.add_argument("--direction", choices=("in", "out"))
    pdus.add_argument("--command", metavar="NAME", help="e.g. deliver_sm")
    pdus.add_argument("--smsc-id", metavar="ID",
                      help="the submit_sm_resp giving this id and the receipts reporting it")
    pdus.add_argument("--reference", metavar="REF", help="e.g. cmd-42")
    pdus.add_argument("--address", metavar="NUMBER", help="to or from this number")
    _page_options(pdus)

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
