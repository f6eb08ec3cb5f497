"""``mdm-console``'s device commands: find and list devices, send, follow and cancel commands.

Also ``fanout`` (a fan-out's progress) and ``history`` (a device's messages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from console_proxy.client import device_target, fleet_target, group_target, is_destructive
from console_proxy.client.models import Approval, SendResult
from console_proxy.console import output
from console_proxy.console.context import Context, Exit, UsageError
from console_proxy.console.render import show_page, target_text


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
    return show_page(ctx, page, ("IMEI", "IMSI", "PHONE", "STATE", "GROUPS", "LAST SEEN"),
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


def _confirm(ctx: Context, command: str, target: Mapping[str, Any]) -> bool:
    what = (f"{command} erases {target_text(target)}" if command.lower() == "wipe"
            else f"{command} {target_text(target)}")
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
    ctx.action = f"send {command} to {target_text(target)}"
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


def cmd_commands_list(ctx: Context) -> int:
    """``commands list``."""
    a = ctx.args
    ctx.action = "list commands"
    if a.device:
        ctx.subject = f"device {a.device}"
    page = ctx.client().list_commands(device=a.device, state=a.state, fanout=a.fanout,
                                      limit=a.limit, after=a.after)
    return show_page(ctx, page, ("ID", "COMMAND", "DEVICE", "STATE", "TRIES", "BY", "CREATED"),
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
    return show_page(ctx, page, ("AT", "DIR", "CHANNEL", "KIND", "COMMAND", "VERDICT",
                                 "SUMMARY"),
                     lambda m: (m.at, _ARROWS.get(m.direction, m.direction), m.channel,
                                m.kind, m.command_id, m.verdict, m.summary))
