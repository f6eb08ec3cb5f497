"""``mepl simulate smsc``: run the SMSC simulator on loopback until interrupted.

Other simulators (devices) add their own subcommand under ``mepl simulate``
through :func:`simulate_subparsers`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogBeginner, textFileLogObserver

from mepl.cli.common import fail, listen_failure, port_number

_ATTRIBUTE = "_mepl_simulate_subparsers"


def simulate_subparsers(subparsers: Any) -> Any:
    """The ``mepl simulate`` sub-subparsers (created once per parser, shared by simulators).

    They are kept on the ``subparsers`` object itself, so each parser built by
    :func:`mepl.cli.main.build_parser` gets its own.
    """
    existing = getattr(subparsers, _ATTRIBUTE, None)
    if existing is None:
        parser = subparsers.add_parser("simulate", help="run a simulated peer (SMSC, devices)")
        existing = parser.add_subparsers(dest="simulator", metavar="SIMULATOR", required=True)
        setattr(subparsers, _ATTRIBUTE, existing)
    return existing


def register(subparsers: Any) -> None:
    """Add ``mepl simulate smsc``."""
    parser = simulate_subparsers(subparsers).add_parser(
        "smsc", help="an SMPP 3.4 SMSC simulator on loopback",
        description="Accepts binds, answers submits, sends receipts and injects faults.")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=2775,
                        help="TCP port (0: any free port)")
    parser.add_argument("--system-id", default="sim", help="accepted system_id")
    parser.add_argument("--password", default="secret", help="accepted password")
    parser.add_argument("--receipt-delay", type=float, default=0.5, metavar="S",
                        help="seconds before a receipt is sent (default 0.5)")
    parser.add_argument("--outcomes", default="delivered=1",
                        help="receipt outcome mix, e.g. delivered=0.9,undeliverable=0.1")
    parser.add_argument("--throttle-tps", type=float, default=0.0, metavar="N",
                        help="answer ESME_RTHROTTLED above N submits/s (0: never)")
    parser.add_argument("--disconnect-every", type=int, default=0, metavar="N",
                        help="drop the connection at every Nth submit (0: never)")
    parser.add_argument("--drop-responses", type=float, default=0.0, metavar="P",
                        help="probability of never answering a submit")
    parser.add_argument("--response-delay", type=float, default=0.0, metavar="S",
                        help="answer submits after S seconds")
    parser.add_argument("--bad-pdu-every", type=int, default=0, metavar="N",
                        help="send an invalid PDU at every Nth submit (0: never)")
    parser.add_argument("--reject-prefix", action="append", default=[], metavar="DIGITS",
                        help="refuse submits to destinations starting with DIGITS "
                             "(ESME_RINVDSTADR, permanent); repeatable")
    parser.add_argument("--window", type=int, default=10, help="deliver_sm window")
    parser.add_argument("--log-pdus", action="store_true", help="log every PDU (hex) to stderr")
    parser.set_defaults(func=run_smsc)


def run_smsc(args: argparse.Namespace) -> int:
    """Run the simulator until SIGINT/SIGTERM."""
    from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator, parse_outcomes

    try:
        config = SimulatorConfig(
            system_id=args.system_id, password=args.password, receipt_delay=args.receipt_delay,
            outcomes=parse_outcomes(args.outcomes), throttle_tps=args.throttle_tps,
            disconnect_every=args.disconnect_every, drop_responses=args.drop_responses,
            response_delay=args.response_delay, bad_pdu_every=args.bad_pdu_every,
            reject_prefixes=tuple(p.lstrip("+") for p in args.reject_prefix),
            window=args.window, log_pdus=args.log_pdus)
    except ValueError as exc:
        return fail(str(exc))
    if args.log_pdus:
        globalLogBeginner.beginLoggingTo([cast(Any, textFileLogObserver(sys.stderr))])

    failed: list[str] = []

    def main(reactor: Any) -> defer.Deferred[None]:
        sim = SmscSimulator(config, clock=reactor)
        try:
            port = reactor.listenTCP(args.port, sim.factory(), interface=args.host)
        except CannotListenError as exc:
            sim.stop()
            failed.append(listen_failure(exc, args.host, args.port, host_key="--host",
                                         port_key="--port") or str(exc))
            return defer.succeed(None)
        address = port.getHost()
        print(f"smsc simulator listening on {address.host}:{address.port}", flush=True)
        return defer.Deferred()  # runs until the reactor is stopped by a signal

    status = 0
    try:
        task.react(main)
    except SystemExit as exc:
        status = int(exc.code or 0)
    return fail(failed[0], status=1) if failed else status
