"""``mdm-console``'s oversight commands: who am I, approvals, alerts, audit, live events, gui."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime

from console_proxy.client.models import Approval
from console_proxy.console import output
from console_proxy.console.context import Context, Exit, UsageError, read_passphrase
from console_proxy.console.render import event_line, request_text, show_page
from console_proxy.console.settings import PASSPHRASE_ENV


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


def cmd_approvals_list(ctx: Context) -> int:
    """``approvals list``."""
    ctx.action = "list approvals"
    status = None if ctx.args.status == "all" else ctx.args.status
    page = ctx.client().list_approvals(status=status, limit=ctx.args.limit, after=ctx.args.after)
    return show_page(ctx, page, ("ID", "ACTION", "STATUS", "REQUESTED BY", "REQUESTED",
                                 "EXPIRES", "REQUEST"),
                     lambda p: (p.id, p.action, p.status, p.requested_by, p.requested_at,
                                p.expires_at, request_text(p.request)))


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


def cmd_alerts(ctx: Context) -> int:
    """``alerts``: alerts and security events, newest first."""
    ctx.action = "read alerts"
    if ctx.args.device:
        ctx.subject = f"device {ctx.args.device}"
    page = ctx.client().list_alerts(device=ctx.args.device, since=ctx.args.since,
                                    limit=ctx.args.limit, after=ctx.args.after)
    return show_page(ctx, page, ("AT", "DEVICE", "KIND", "DETAILS"),
                     lambda a: (a.at, a.imei, a.kind, a.details))


def cmd_pdus(ctx: Context) -> int:
    """``pdus``: a link's raw SMPP PDUs in a window, or one stored SMS's, oldest first."""
    ctx.action = "read PDUs"
    args = ctx.args
    ctx.subject = f"message {args.message}" if args.message else f"link {args.link}"
    page = ctx.client().list_pdus(
        link=args.link, message=args.message, since=args.since, until=args.until,
        direction=args.direction, command=args.command, smsc_id=args.smsc_id,
        reference=args.reference, address=args.address, limit=args.limit, after=args.after)
    others = page.raw.get("other_links")
    if isinstance(others, list) and not ctx.json:
        print(f"no PDUs stored for link {args.link} at any time; links with PDUs: "
              f"{', '.join(map(str, others)) or 'none'}", file=ctx.out)
    return show_page(ctx, page, ("AT (UTC)", "DIR", "COMMAND", "SEQ", "STATUS", "REF",
                                 "SMSC ID", "RECEIPT FOR", "OCTETS", "MESSAGE"),
                     lambda p: (_microseconds(p.at), p.direction, p.command, p.sequence,
                                p.status, p.reference, p.smsc_message_id, p.receipt_for,
                                p.octets, p.message_id))


def _microseconds(at: str | None) -> str | None:
    """``2026-12-04 19:04:26.448575``: a PDU's time keeps its microseconds (PDUs of one
    second are told apart by them), unlike the other tables' times."""
    if at is None:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return at
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


def cmd_audit(ctx: Context) -> int:
    """``audit``: the audit trail (admins)."""
    ctx.action = "read the audit"
    page = ctx.client().list_audit(actor=ctx.args.actor, action=ctx.args.action,
                                   limit=ctx.args.limit, after=ctx.args.after)
    return show_page(ctx, page, ("AT", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME"),
                     lambda e: (e.at, e.actor, e.role, e.action, e.target, e.outcome))


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
        passphrase = read_passphrase(ctx.settings, ctx.env, ctx.term, "")
    return int(app.run(ctx.settings, passphrase))


def _stream_status(ctx: Context, state: str, detail: str) -> None:
    if state in ("disconnected", "reconnecting") and not ctx.json:
        print(f"mdm-console: event stream {state}: {detail}", file=ctx.term.stderr, flush=True)
    elif state == "connected" and detail and not ctx.json:
        print(f"mdm-console: event stream resumed after {detail}", file=ctx.term.stderr,
              flush=True)
