"""``mepl sms send``: an operator's diagnostic that sends one SMS through a configured bind."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from typing import Any

from twisted.internet import defer, task

from mepl.cli.common import add_config_options, config_error, fail, general_config, load_raw_config
from mepl.config import ConfigError, build


def register(subparsers: Any) -> None:
    """Add ``mepl sms send``."""
    sms = subparsers.add_parser("sms", help="SMS diagnostics")
    sub = sms.add_subparsers(dest="sms_command", metavar="ACTION", required=True)
    send = sub.add_parser("send", help="send one SMS through a configured SMPP bind",
                          description="Binds, sends one message, prints its message id(s) "
                                      "and optionally waits for the final receipt.  A bind "
                                      "the SMSC refuses ends it at once, with the SMSC's "
                                      "status.")
    send.add_argument("--to", required=True, metavar="NUMBER", help="destination number")
    body = send.add_mutually_exclusive_group(required=True)
    body.add_argument("--hex", metavar="PAYLOAD", help="binary payload in hex (data_coding 4)")
    body.add_argument("--text", metavar="TEXT", help="text (GSM 7-bit if possible, else UCS-2)")
    send.add_argument("--bind", metavar="NAME", help="link name from [smpp.links] "
                                                     "(default: the only/first one)")
    send.add_argument("--port", type=int, metavar="N", help="override the link's port")
    send.add_argument("--dest-port", type=int, metavar="N", help="application port (UDH)")
    send.add_argument("--wait-receipt", action="store_true",
                      help="wait for the final (rolled-up) delivery receipt")
    send.add_argument("--timeout", type=float, default=30.0, metavar="S",
                      help="give up after S seconds (default 30)")
    add_config_options(send)
    send.set_defaults(func=send_sms)


def _payload(args: argparse.Namespace) -> tuple[bytes, int]:
    from sms_gateway.channel import DATA_CODING_BINARY, DATA_CODING_DEFAULT, DATA_CODING_UCS2
    from sms_gateway.coding import encode_gsm7_unpacked

    if args.hex is not None:
        return bytes.fromhex(args.hex), DATA_CODING_BINARY
    gsm = encode_gsm7_unpacked(args.text)
    if gsm is not None:
        return gsm, DATA_CODING_DEFAULT
    return args.text.encode("utf-16-be"), DATA_CODING_UCS2


def send_sms(args: argparse.Namespace) -> int:
    """Bind, send, print ids (and the receipt); exit 0 on success."""
    from sms_gateway.addresses import to_e164
    from sms_gateway.channel import OutboundMessage
    from sms_gateway.errors import SmsGatewayError
    from sms_gateway.smpp.config import SmppConfig

    try:
        raw = load_raw_config(args)
        general = general_config(raw)
        smpp = build(SmppConfig, raw.get("smpp", {}), "smpp")
    except ConfigError as exc:
        return config_error(exc)
    if not smpp.links:
        return fail("no SMPP link configured: add a [smpp.links.NAME] section")
    name = args.bind or next(iter(smpp.links))
    if name not in smpp.links:
        return fail(f"no SMPP link named {name!r} (configured: {', '.join(smpp.links)})")
    link = smpp.links[name]
    if args.port is not None:
        link = dataclasses.replace(link, port=args.port)
    try:
        destination = to_e164(args.to, general.default_region)
        payload, coding = _payload(args)
    except (SmsGatewayError, ValueError) as exc:
        return fail(str(exc))
    message = OutboundMessage(destination, payload, coding, dest_port=args.dest_port,
                              request_receipt=args.wait_receipt, reference="mepl-sms-send")
    outcome: dict[str, Any] = {}

    async def run(reactor: Any) -> None:
        outcome["status"] = await _send(reactor, name, link, message, args, outcome)

    with contextlib.suppress(SystemExit):
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    if "error" in outcome:
        print(f"mepl: error: {outcome['error']}", file=sys.stderr)
    return int(outcome.get("status", 1))


async def _send(reactor: Any, name: str, link: Any, message: Any, args: argparse.Namespace,
                outcome: dict[str, Any]) -> int:
    from sms_gateway.errors import SmsGatewayError
    from sms_gateway.events import DeliveryReceipt, DeliveryStatus
    from sms_gateway.smpp.bind import BindRefusedError, SmppBind
    from sms_gateway.smpp.links import endpoint_for
    from sms_gateway.smpp.receipts import MultipartTracker

    tracker: MultipartTracker[str] = MultipartTracker()
    final: defer.Deferred[DeliveryStatus] = defer.Deferred()
    early: list[DeliveryReceipt] = []

    def on_receipt(receipt: DeliveryReceipt) -> defer.Deferred[None]:
        early.append(receipt)
        done = tracker.update(receipt.message_id, receipt.status)
        if done is not None and not final.called:
            final.callback(done[1])
        return defer.succeed(None)

    bind = SmppBind(name, link, reactor=reactor, endpoint=endpoint_for(link, reactor),
                    on_inbound=lambda m: defer.succeed(None), on_receipt=on_receipt)
    bind.startService()
    try:
        up = bind.when_up(refusal_fails=True)  # a refused bind ends it at once
        up.addTimeout(args.timeout, reactor)
        try:
            await up
        except defer.TimeoutError:
            outcome["error"] = f"could not bind {name} to {link.host}:{link.port} in time"
            return 1
        except BindRefusedError as exc:
            outcome["error"] = str(exc)
            return 1
        try:
            result = await bind.submit(message)
        except SmsGatewayError as exc:
            outcome["error"] = f"submit failed: {exc}"
            return 1
        for index, message_id in enumerate(result.message_ids, start=1):
            print(f"part {index}/{len(result.message_ids)}: message id {message_id}", flush=True)
        if not args.wait_receipt:
            return 0
        tracker.register("message", result.message_ids)
        for receipt in early:  # receipts that raced the submit response
            done = tracker.update(receipt.message_id, receipt.status)
            if done is not None and not final.called:
                final.callback(done[1])
        final.addTimeout(args.timeout, reactor)
        try:
            status = await final
        except defer.TimeoutError:
            outcome["error"] = "no final receipt in time"
            return 1
        print(f"receipt: {status.value}", flush=True)
        return 0 if status is DeliveryStatus.DELIVERED else 3
    finally:
        await bind.stopService()
