"""The fault suite's world: PostgreSQL, the SMSC simulator on loopback TCP, a simulated
fleet of reference handsets, and real ``mepl run`` OS processes.

A :class:`FaultRig` belongs to one trial test case (its cleanups are
registered there).  It enrols ``devices`` handsets in the group ``fleet``,
starts processes with a TOML config whose timings are shortened so that
leases, stale claims and resends happen within seconds, queues fan-outs,
waits until everything is settled, stops the processes and checks the
invariants (:mod:`tests.faults.invariants`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from blobstore.commands import NewCommand, insert_group_commands_txn
from blobstore.devices import add_device_txn, set_device_key_txn, set_device_state_txn
from blobstore.groups import add_members_txn, create_group_txn
from blobstore.identity import luhn_check_digit
from mepl.fleet import SimulatedDevice, SimulatedFleet, make_device
from signing.keystore import ServerKeyStore
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.faults.invariants import Expect, check_invariants
from tests.faults.ledger import ScenarioResult
from tests.mepl.test_run_process import Collect
from tests.support.pg import migrated_database

SERVER = "+447700900000"
SYSTEM_ID = "op"
PASSWORD = "pw123456"
HTTP_SECRET = "0123456789abcdef0123456789abcdef"

# Short timings, so that what takes minutes in production happens within seconds.
DISPATCH = {
    "poll_interval_s": 0.1,
    "claim_batch": 10,
    "retry_delay_s": 0.5,
    "housekeeping_interval_s": 0.5,
    "callback_grace_s": 1.5,
    "stale_claim_s": 1.5,
    "resend_after_s": 2.5,
    "max_attempts": 30,
    "receipt_wait_s": 3.0,
}
LINK = {"window": 5, "reconnect_min": 0.2, "reconnect_max": 1.0, "response_timeout": 3.0,
        "throttle_pause_max": 1.0, "receipt_hold": 1.0}
# How long a bind may keep a receipt where the rig cannot see it: held (``receipt_hold``)
# until the next expiry tick (every max(0.5, receipt_hold / 4) s,
# sms_gateway.smpp.inbound_handler), then stored.  The SMSC forgets a deliver_sm
# unanswered when its connection drops, so a receipt held from a dropped bind shows
# nowhere but in time; :meth:`FaultRig.settle` confirms over longer than this.
RECEIPT_UNSEEN_S = LINK["receipt_hold"] + max(0.5, LINK["receipt_hold"] / 4)


@dataclass(frozen=True)
class Scale:
    """How big one run of a scenario is: quick (the normal suite) or full (tox -e faults)."""

    name: str
    devices: int
    faults: int


def imei(n: int) -> str:
    """A valid IMEI numbered ``n``."""
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _section(name: str, values: Mapping[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())


class FaultRig:
    """One scenario's world (see the module docstring)."""

    def __init__(self, case: TestCase, devices: int, *,
                 sim: SimulatorConfig | None = None, dispatch: Mapping[str, Any] | None = None,
                 http: bool = False, database_url: str | None = None,
                 reply_copies: int = 1, env: Mapping[str, str] | None = None) -> None:
        self.case = case
        self.device_count = devices
        self.sim_config = sim or SimulatorConfig(system_id=SYSTEM_ID, password=PASSWORD,
                                                 receipt_delay=0.05)
        self.dispatch = {**DISPATCH, **(dispatch or {})}
        self.http_port = free_port() if http else None
        self.url = database_url or migrated_database("faults")
        self.reply_copies = reply_copies
        self.env = {**os.environ, "MEPL_DATABASE_URL": self.url, **(env or {})}
        self.engine: Engine = create_engine(self.url, pool_pre_ping=True)
        case.addCleanup(self.engine.dispose)
        self.state = Path(tempfile.mkdtemp(prefix="mepl-faults-"))
        case.addCleanup(shutil.rmtree, self.state, True)
        self.keys = ServerKeyStore(self.state / "keys")
        self.processes: list[Collect] = []
        self.devices: dict[int, SimulatedDevice] = {}
        self.queued = 0
        self.sim: SmscSimulator
        self.fleet: SimulatedFleet
        self.smpp_port = 0
        self.stop_began: datetime | None = None

    @inlineCallbacks
    def start(self) -> Any:
        """Keys, the simulator on loopback, the fleet enrolled in the group ``fleet``."""
        self.keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER,))
        self.sim = SmscSimulator(self.sim_config, clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            self.sim.factory())
        self.case.addCleanup(port.stopListening)
        self.case.addCleanup(self.sim.stop)
        self.smpp_port = port.getHost().port
        self.fleet = SimulatedFleet(self.sim, reactor, SERVER, reply_copies=self.reply_copies)
        with self.engine.begin() as conn:
            create_group_txn(conn, "fleet")
            for i in range(self.device_count):
                device = make_device(self.keys.bundle(imei(i)), f"+4477009{i + 1:05d}",
                                     f"23415{i:010d}")
                self.fleet.add(device)
                record = add_device_txn(conn, device.imei, imsi=device.imsi,
                                        msisdn=device.msisdn)
                set_device_key_txn(conn, record.id, device.handset.device_key.key_id,
                                   device.public_key)
                set_device_state_txn(conn, record.id, "provisioned")
                self.devices[record.id] = device
            add_members_txn(conn, "fleet", list(self.devices))

    # ------------------------------------------------------------ processes
    def config(self, n: int) -> Path:
        """Write the TOML config of process ``n``; return its path."""
        link = {"host": "127.0.0.1", "port": self.smpp_port, "system_id": SYSTEM_ID,
                "password": PASSWORD, **LINK}
        parts = [_section("mepl", {"log_level": "info"}),
                 _section("dispatch", {"server_number": SERVER, **self.dispatch}),
                 _section("smpp.links.carrier", link)]
        if self.http_port is not None:
            parts += [_section("http", {"host": "127.0.0.1", "port": self.http_port}),
                      _section("http.gateways.hosted", {"format": "json", "auth": "hmac",
                                                        "secret": HTTP_SECRET})]
        path = self.state / f"mepl-{n}.toml"
        path.write_text("\n".join(parts))
        return path

    def spawn(self) -> Collect:
        """Start one more ``mepl run`` process."""
        config = self.config(len(self.processes) + 1)
        proto = Collect()
        reactor.spawnProcess(proto, sys.executable, [
            sys.executable, "-m", "mepl.cli.main", "run", "--config", str(config),
            "--state-dir", str(self.state)], env=self.env)
        self.processes.append(proto)
        return proto

    def live(self) -> list[Collect]:
        """The processes not ended yet."""
        return [p for p in self.processes if not p.ended.called]

    def kill9(self, proto: Collect) -> Any:
        """SIGKILL ``proto``; fires when it has ended."""
        proto.transport.signalProcess(signal.SIGKILL)
        return proto.ended

    @inlineCallbacks
    def stop(self) -> Any:
        """SIGTERM every live process; fails unless each stops with status 0."""
        live = self.live()
        self.stop_began = datetime.now(UTC)
        for proto in live:
            proto.transport.signalProcess(signal.SIGTERM)
        codes = yield gatherResults([p.ended for p in live])
        self.case.assertEqual(codes, [0] * len(live), self.output())

    def output(self, tail: int = 3000) -> str:
        """The tail of every process's output, for failure messages."""
        return "\n".join(f"--- process {n}\n" + p.output.decode(errors="replace")[-tail:]
                         for n, p in enumerate(self.processes, 1))

    # ------------------------------------------------------------ waiting
    @inlineCallbacks
    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 60.0,
                 step: float = 0.1) -> Any:
        """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.case.fail(f"timed out waiting for {what}: {self.progress()}\n"
                               + self.output())
            yield deferLater(reactor, step, lambda: None)

    def bound(self, count: int) -> Any:
        """Fires once ``count`` binds are up."""
        return self.wait_for(lambda: self.sim.bound_count() >= count, f"{count} binds",
                             timeout=90.0)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def progress(self) -> str:
        """Commands by state and the inbound queue by state (for messages)."""
        with self.engine.connect() as conn:
            commands = dict(conn.execute(text(
                "SELECT state, count(*) FROM commands GROUP BY state")).all())
            queue = dict(conn.execute(text(
                "SELECT state, count(*) FROM inbound_queue GROUP BY state")).all())
        return f"commands {commands}, inbound queue {queue}, simulator {self.sim.stats}"

    def settled(self) -> bool:
        """Every command final, the inbound queue drained, the simulator idle."""
        return bool(self.sim.pending() == 0 and self.scalar(
            "SELECT (SELECT count(*) FROM commands WHERE state NOT IN "
            "('done', 'refused', 'failed', 'expired')) + (SELECT count(*) FROM inbound_queue "
            "WHERE state <> 'failed')") == 0)

    @inlineCallbacks
    def settle(self, timeout: float = 90.0) -> Any:
        """Wait until :meth:`settled` holds twice, longer than a bind may hide a receipt apart.

        A receipt that came before its submit_sm_resp is held by the bind; if
        that response was lost with a dropped connection, it is stored only
        when the hold expires (:data:`RECEIPT_UNSEEN_S`), then waits for its
        submit and is dropped after ``receipt_wait_s``.
        """
        while True:
            yield self.wait_for(self.settled, "every command final and the queue drained",
                                timeout=timeout)
            yield deferLater(reactor, RECEIPT_UNSEEN_S + 0.3, lambda: None)
            if self.settled():
                return

    # ------------------------------------------------------------ work
    def fan_out(self, opcode: str = "status_query", **arguments: Any) -> int:
        """Queue one command for every device of the fleet; return how many."""
        args = arguments or {"features": ["battery", "signal"]}
        with self.engine.begin() as conn:
            count = insert_group_commands_txn(conn, "fleet", NewCommand(
                opcode=opcode, requested_by="faults", arguments=args,
                not_after=datetime.now(UTC) + timedelta(hours=1)))
        self.queued += count
        return count

    def count(self, sql: str) -> int:
        """A count from the database."""
        return int(self.scalar(sql))

    def check(self, scenario: str, scale: Scale, faults: Mapping[str, int],
              expect: Expect | None = None) -> ScenarioResult:
        """Check the invariants (after :meth:`stop`) and record them for the report."""
        base = expect or Expect()
        expect = Expect(states=base.states, parked=base.parked,
                        callbacks_acknowledged=base.callbacks_acknowledged,
                        smpp_deliver={"deliver_ok": self.sim.stats["deliver_ok"],
                                      "deliver_sm": self.sim.stats["deliver_sm"]})
        return check_invariants(self.engine, self.devices, scenario=scenario,
                                scale=scale.name, faults=faults, queued=self.queued,
                                expect=expect,
                                context=[f"stop began at {self.stop_began}", self.output()])
