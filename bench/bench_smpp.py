"""Submit throughput through one SMPP bind against the simulator on loopback.

The simulator runs in a separate process (``mepl simulate smsc``), so the CPU
figure is the ESME's alone (``time.process_time`` of this process).
Prints messages/s and ESME CPU µs per message at each window; ``--runs N``
reports medians.

Targets: >= 5,000 submit_sm/s at window 100 with <= 150 µs ESME CPU per
message; >= 2,000/s at window 10.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from sms_gateway.channel import OutboundMessage
from sms_gateway.smpp.bind import SmppBind
from sms_gateway.smpp.config import SmppLinkConfig

ROOT = Path(__file__).resolve().parents[1]
records: list[Any] = []


def start_simulator() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mepl.cli.main", "simulate", "smsc", "--port", "0",
         "--system-id", "bench", "--password", "bench"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


async def one_run(reactor: Any, port: int, window: int, count: int,
                  sink: bool) -> tuple[float, float]:
    config = SmppLinkConfig(host="127.0.0.1", port=port, system_id="bench", password="bench",
                            window=window)
    bind = SmppBind("bench", config, reactor=reactor,
                    endpoint=TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                    on_inbound=lambda m: defer.succeed(None),
                    on_receipt=lambda r: defer.succeed(None),
                    pdu_sink=records.append if sink else None)
    bind.startService()
    await bind.when_up()
    records.clear()
    payload = bytes(range(140))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = await defer.gatherResults([
        bind.submit(OutboundMessage("+447700900123", payload, request_receipt=False))
        for _ in range(count)])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    assert len(results) == count and bind.stats["failed"] == 0
    await bind.stopService()
    return count / wall, cpu / count * 1e6


async def main(reactor: Any, args: argparse.Namespace) -> None:
    proc, port = start_simulator()
    try:
        print(f"simulator pid {proc.pid} on port {port}; {args.count} submits per run, "
              f"{args.runs} runs (medians){'; pdu_sink on' if args.sink else ''}")
        for window in args.windows:
            rates, cpus = [], []
            for _ in range(args.runs):
                rate, cpu = await one_run(reactor, port, window, args.count, args.sink)
                rates.append(rate)
                cpus.append(cpu)
            print(f"window {window:>4}: {statistics.median(rates):>9,.0f} submit_sm/s   "
                  f"ESME CPU {statistics.median(cpus):6.1f} us/message   "
                  f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=10_000, help="submits per run")
    parser.add_argument("--sink", action="store_true",
                        help="record every PDU through pdu_sink (as the MEPL does)")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 10, 100])
    cli = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, cli)))
