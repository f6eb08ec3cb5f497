"""``mepl demo``: the whole loop on embedded defaults, end to end, in one process.

Embedded PostgreSQL (migrated) -> server keys and CA -> a simulated fleet of
reference handsets enrolled in the registry -> the bundled SMSC simulator on
loopback, bound over SMPP -> the HTTP callback listener with an HMAC-signed
JSON gateway.  Then: a signed LOCK fanned out to the fleet's group, a status
query and a long notification (concatenated SMS) to single devices; a SIM
swap alert that the policy answers with a LOCK; a LOST alert arriving through
the HTTP gateway.  Every frame is verified on the handset and every reply on
the server; the summary says what was sent, answered and stored.

With a state directory (``mepl demo`` always gives one) the admin channel
runs too (:mod:`mepl.demoadmin`): the admin API on its UNIX socket, the
console proxy on 127.0.0.1 with mutual TLS, and one drive through it with
the client library.  ``serve`` keeps everything running until shutdown.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import treq
from sqlalchemy import Connection, text
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import HTTPConnectionPool

from blobstore.commands import NewCommand, insert_command_txn, insert_group_commands_txn
from blobstore.devices import (
    add_device_txn,
    device_by_imei_txn,
    set_device_key_txn,
    set_device_state_txn,
    update_identity_txn,
)
from blobstore.errors import DuplicateGroupError
from blobstore.groups import (
    add_members_txn,
    create_group_txn,
    group_device_ids_txn,
    remove_members_txn,
)
from blobstore.identity import luhn_check_digit
from blobstore.server_keys import pin_device_txn
from mepl.demoadmin import (
    AdminPki,
    console_lines,
    drive,
    ensure_admin_pki,
    proxy_url,
    start_proxy,
    stop_proxy,
    write_console_configs,
)
from mepl.fleet import SimulatedDevice, SimulatedFleet, make_device
from mepl.service import MeplService
from mepl.settings import Settings, load_settings
from mepl.signer import ServerSigner
from signing.alerts import make_alert
from signing.keystore import ServerKeyStore
from signing.transport import armour
from sms_gateway.http.auth import sign_body
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator

GROUP = "demo-fleet"
SERVER_NUMBER = "+447700900000"


@dataclass(frozen=True)
class DemoOptions:
    """The demo's knobs (see ``mepl demo --help``)."""

    devices: int = 20
    timeout: float = 60.0
    receipt_delay: float = 0.2
    state_dir: Path | None = None
    """Where the admin channel's PKI and console files live; None: no admin channel."""
    proxy_port: int | None = None
    """The proxy's port (0: any free one); None: 8443 if free, else any free port."""
    serve: bool = False
    """Keep the fleet, the API and the proxy running after the scenario, until shutdown."""


def demo_imei(index: int) -> str:
    """A valid (Luhn) IMEI for simulated device ``index``."""
    body = f"35{index:012d}"
    return body + luhn_check_digit(body)


def demo_settings(smsc_port: int, secret: str, sim_password: str,
                  admin: AdminPki | None = None) -> Settings:
    """Settings for the demo: one SMPP link to the simulator, one JSON gateway, and the
    admin API on its UNIX socket when ``admin`` is given."""
    extra: dict[str, Any] = {} if admin is None else {"admin": {
        "assertion_keys": [str(admin.assertion_pub)], "socket": str(admin.socket)}}
    return load_settings({**extra,
        "dispatch": {"server_number": SERVER_NUMBER, "poll_interval_s": 0.05},
        "smpp": {"links": {"simulator": {
            "host": "127.0.0.1", "port": smsc_port, "system_id": "mepl-demo",
            "password": sim_password, "window": 50, "source_addr": SERVER_NUMBER[1:],
            "reconnect_min": 0.2, "reconnect_max": 2.0}}},
        "http": {"host": "127.0.0.1", "port": 0, "gateways": {"hosted": {
            "format": "json", "auth": "hmac", "secret": secret}}},
    })


def enrol_txn(conn: Connection, fleet: Sequence[SimulatedDevice]) -> int:
    """Register (or re-provision) every simulated device; the demo group becomes exactly
    this fleet (devices of earlier, larger runs leave it).  Returns the new members."""
    ids = []
    for device in fleet:
        record = device_by_imei_txn(conn, device.imei)
        if record is None:
            record = add_device_txn(conn, device.imei, imsi=device.imsi, msisdn=device.msisdn)
        else:
            update_identity_txn(conn, record.id, imsi=device.imsi, msisdn=device.msisdn,
                                source="demo:reprovision")
        set_device_key_txn(conn, record.id, device.handset.device_key.key_id,
                           device.public_key)
        # A fresh handset, provisioned with every key of the store: the newest is active.
        pin_device_txn(conn, record.id, max(device.handset.trusted_keys), replace=True)
        set_device_state_txn(conn, record.id, "provisioned")
        ids.append(record.id)
    try:
        with conn.begin_nested():
            create_group_txn(conn, GROUP, "simulated devices of mepl demo")
    except DuplicateGroupError:
        pass
    stale = sorted(set(group_device_ids_txn(conn, GROUP, limit=1_000_000)) - set(ids))
    if stale:
        remove_members_txn(conn, GROUP, stale)
    return add_members_txn(conn, GROUP, ids)


def queue_txn(conn: Connection, run: str, fleet: Sequence[SimulatedDevice],
              now: datetime) -> int:
    """Queue the demo's commands: LOCK to the group, a status query, a long notification."""
    not_after = now + timedelta(hours=1)
    count = insert_group_commands_txn(conn, GROUP, NewCommand(
        opcode="lock", requested_by=run, not_after=not_after,
        arguments={"emergency_dialer": True}))
    first = device_by_imei_txn(conn, fleet[0].imei)
    last = device_by_imei_txn(conn, fleet[-1].imei)
    assert first is not None and last is not None
    insert_command_txn(conn, first.id, NewCommand(
        opcode="status_query", requested_by=run, not_after=not_after,
        arguments={"features": ["battery", "lock_state", "sim"]}))
    insert_command_txn(conn, last.id, NewCommand(
        opcode="notify", requested_by=run, not_after=not_after,
        arguments={"text": "Depot closes at 18:00 today. Return handsets to the charging "
                           "racks by the east gate and sign the sheet. Thank you!"}))
    return count + 2


def progress_txn(conn: Connection, run: str, since: datetime) -> dict[str, int]:
    """Commands of this run, and of the policy since it started, by state."""
    rows = conn.execute(text(
        "SELECT state, count(*) FROM commands WHERE requested_by = :run "
        "OR (requested_by LIKE 'policy:%%' AND created_at >= :since) "
        "GROUP BY state"), {"run": run, "since": since})
    return {str(r[0]): int(r[1]) for r in rows}


def stored_txn(conn: Connection, since: datetime) -> list[tuple[str, str, str, int, int]]:
    """Messages stored since ``since``: (direction, channel, kind, rows, bytes)."""
    rows = conn.execute(text(
        "SELECT direction, channel, kind, count(*), coalesce(sum(octet_length(payload)), 0) "
        "FROM messages WHERE created_at >= :since GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
        {"since": since})
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]


def history_txn(conn: Connection, imei: str) -> list[tuple[str, str | None, str | None]]:
    """The identity history of one device."""
    rows = conn.execute(text(
        "SELECT h.kind, h.old_value, h.new_value FROM device_identity_history h "
        "JOIN devices d ON d.id = h.device_id WHERE d.imei = :imei ORDER BY h.id"),
        {"imei": imei})
    return [(str(r[0]), r[1], r[2]) for r in rows]


class Demo:
    """Runs the scenario against a started :class:`MeplService`."""

    def __init__(self, reactor: Any, options: DemoOptions, out: TextIO) -> None:
        self.reactor = reactor
        self.options = options
        self.out = out
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.admin_url = ""
        self._stopped: Deferred[None] | None = None

    def say(self, line: str) -> None:
        """Print one line of the demo's narrative."""
        print(line, file=self.out, flush=True)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """Collect the MEPL's events (replies, alerts, state changes)."""
        self.events.append((kind, data))

    @inlineCallbacks
    def wait_for(self, service: MeplService, run: str, since: datetime,
                 expected: int) -> Any:
        """Poll until ``expected`` commands of ``run`` are finished, or time out."""
        deadline = self.reactor.seconds() + self.options.timeout
        while True:
            states = yield service.pool.run_interaction("progress", progress_txn, run,
                                                        since)
            finished = sum(n for s, n in states.items()
                           if s in ("done", "failed", "expired", "cancelled"))
            if finished >= expected or self.reactor.seconds() > deadline:
                return states
            yield deferLater(self.reactor, 0.1, lambda: None)

    @inlineCallbacks
    def run(self, keys: ServerKeyStore, engine: Any) -> Any:
        """The whole scenario; returns the process exit status."""
        opts = self.options
        started = datetime.now(UTC)
        signer = ServerSigner.load(keys.directory, {})
        sim_password = secrets.token_hex(4)
        sim = SmscSimulator(SimulatorConfig(system_id="mepl-demo", password=sim_password,
                                            receipt_delay=opts.receipt_delay),
                            clock=self.reactor)
        port = yield TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(
            sim.factory())
        fleet = SimulatedFleet(sim, self.reactor, SERVER_NUMBER)
        devices = [make_device(keys.bundle(demo_imei(i)), f"+4477009{i + 1:05d}",
                               f"23415{i:010d}") for i in range(opts.devices)]
        for device in devices:
            fleet.add(device)
        secret = secrets.token_hex(16)
        admin = (ensure_admin_pki(opts.state_dir, started) if opts.state_dir is not None
                 else None)
        settings = demo_settings(port.getHost().port, secret, sim_password, admin)
        service = MeplService(settings, reactor=self.reactor, engine=engine, signer=signer,
                              on_event=self.on_event, worker="demo")
        service.startService()
        proxy = None
        try:
            if admin is not None:
                proxy = yield Deferred.fromCoroutine(
                    start_proxy(admin, self.reactor, opts.proxy_port))
                self.admin_url = proxy_url(proxy)
                write_console_configs(admin, self.admin_url)
                self.say(f"admin: API on {admin.socket}, console proxy (mutual TLS) on "
                         f"{self.admin_url}, identities in {admin.directory / 'issued'}")
            status = yield self._scenario(service, fleet, devices, secret, started, admin)
            if admin is not None and opts.serve:
                yield self._serve(admin, devices)
        finally:
            yield stop_proxy(proxy)
            yield service.stopService()
            sim.stop()
            yield port.stopListening()
            if self._stopped is not None:
                self._stopped.callback(None)
        return status

    def _serve(self, admin: AdminPki, devices: list[SimulatedDevice]) -> Deferred[None]:
        """Print the console lines; fires when the reactor begins to shut down (Ctrl-C)."""
        self.say("serving: the fleet, the admin API and the proxy run until Ctrl-C; try")
        for line in console_lines(admin, devices[0].imei):
            self.say(f"  {line}")
        stopping: Deferred[None] = Deferred()
        self._stopped = Deferred()

        def shutdown() -> Deferred[None] | None:
            stopping.callback(None)
            return self._stopped  # the reactor waits for the services to stop

        self.reactor.addSystemEventTrigger("before", "shutdown", shutdown)
        return stopping

    @inlineCallbacks
    def _scenario(self, service: MeplService, fleet: SimulatedFleet,
                  devices: list[SimulatedDevice], secret: str, started: datetime,
                  admin: AdminPki | None = None) -> Any:
        pool = service.pool
        members = yield pool.run_interaction("enrol", enrol_txn, devices)
        self.say(f"fleet: {len(devices)} simulated handsets enrolled "
                 f"(group {GROUP!r}, {members} new members)")
        yield service.when_bound()
        self.say("smpp: bound to the SMSC simulator on "
                 f"127.0.0.1:{settings_port(service)} as a transceiver")
        run = f"demo:{time.time_ns()}"  # unique even for runs within one second
        t0 = time.perf_counter()
        queued = yield pool.run_interaction("queue", queue_txn, run, devices, started)
        self.say(f"queued: LOCK to {queued - 2} devices, a status query and a "
                 "two-part notification")
        states = yield self.wait_for(service, run, started, queued)
        elapsed = time.perf_counter() - t0
        self.say(f"commands: {_fmt(states)} in {elapsed:.2f} s")
        swapped = devices[1]
        new_number = "+447700955555"
        self.say(f"alert: device {swapped.imei} reports SIM changed, new number "
                 f"{new_number[:6]}*****")
        yield fleet.raise_alert(swapped.msisdn, "sim_changed", new_msisdn=new_number,
                                imsi="234159999999999", msisdn=new_number)
        lost = devices[2]
        yield self._http_alert(service, lost, secret)
        states = yield self.wait_for(service, run, started, queued + 2)
        self.say(f"after alerts: {_fmt(states)} (policy LOCKs included)")
        history = yield pool.run_interaction("history", history_txn, swapped.imei)
        for kind, old, new in history:
            self.say(f"  identity history {swapped.imei}: {kind} {old} -> {new}")
        stored = yield pool.run_interaction("stored", stored_txn, started)
        for direction, channel, kind, rows, octets in stored:
            self.say(f"  stored {direction:>3} {channel:<4} {kind:<8} {rows:5d} rows "
                     f"{octets:7d} bytes")
        executed = sum(d.executed for d in devices)
        rejected = sum(d.rejected for d in devices)
        self.say(f"handsets: {executed} commands verified and executed, "
                 f"{rejected} frames rejected")
        replies = sum(1 for kind, _ in self.events if kind == "reply")
        alerts = [d for kind, d in self.events if kind == "alert"]
        self.say(f"server: {replies} signed replies verified, {len(alerts)} alerts verified")
        admin_ok = True
        if admin is not None:
            admin_ok = yield self._admin(admin, devices[0])
        ok = (states.get("done", 0) == queued + 2 and len(alerts) == 2 and rejected == 0
              and admin_ok)
        self.say("demo: OK" if ok else "demo: INCOMPLETE (see the counts above)")
        return 0 if ok else 1

    def _admin(self, admin: AdminPki, device: SimulatedDevice) -> Deferred[bool]:
        """The admin path through the real proxy with the client library (on a thread)."""
        national = f"0{device.msisdn[3:7]} {device.msisdn[7:]}"  # +447700900001: 07700 900001
        d: Deferred[bool] = deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), drive, self.admin_url, admin,
            national, "GB", self.options.timeout, self.say, lambda: datetime.now(UTC))
        if not self.options.serve:
            def hint(ok: bool) -> bool:
                self.say("admin: to use the console yourself, run `mepl demo --serve` (same "
                         "state directory) and then:")
                self.say(f"  {console_lines(admin, device.imei)[1]}")
                return ok
            d.addCallback(hint)

        def failed(failure: Any) -> bool:
            self.say(f"admin: the drive through the proxy failed: {failure.getErrorMessage()}")
            return False

        return d.addErrback(failed)

    @inlineCallbacks
    def _http_alert(self, service: MeplService, device: SimulatedDevice, secret: str) -> Any:
        """A LOST alert through the HTTP JSON gateway, armoured as text (signed request)."""
        frame = device.handset.alert(make_alert("lost", detail="reported by driver"),
                                     self.reactor.seconds())
        body = json.dumps({"id": hashlib.sha256(frame).hexdigest()[:16],
                           "from": device.msisdn, "to": SERVER_NUMBER,
                           "text": armour(frame)}).encode()
        address = service.http_address
        assert address is not None
        url = f"http://{address[0]}:{address[1]}/gateways/hosted/inbound"
        headers: Any = {"Content-Type": ["application/json"],
                   "X-Mepl-Signature": [sign_body(secret, body, int(self.reactor.seconds()))]}
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        response = yield treq.post(url, data=body, headers=headers, reactor=self.reactor,
                                   pool=pool)
        yield treq.content(response)
        self.say(f"alert: device {device.imei} reports LOST through the HTTP gateway "
                 f"(HTTP {response.code})")
        return None


def settings_port(service: MeplService) -> int:
    """The SMSC port of the demo's one link."""
    return next(iter(service.settings.smpp.links.values())).port


def _fmt(states: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"


def run_demo(reactor: Any, keys: ServerKeyStore, engine: Any, options: DemoOptions,
             out: TextIO) -> Deferred[Any]:
    """Run the demo scenario; fires with the exit status."""
    d: Deferred[Any] = Demo(reactor, options, out).run(keys, engine)
    return d
