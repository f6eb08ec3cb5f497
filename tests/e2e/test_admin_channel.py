"""The admin channel end to end, every part real and in its own process where it runs so.

One stack for the module: the embedded PostgreSQL of the tests (migrated), an admin
PKI made with ``console_proxy.pki`` (CA, assertion key, an operator, a viewer, a
revoked admin, an expired operator), and ``mepl demo --serve`` as an OS process
(its real CLI entry point) on that database: the simulated fleet over SMPP, the
MEPL service with the admin API on its UNIX socket (trusting the PKI's
``assertion.pub``), the console proxy with mutual TLS on 127.0.0.1, plus the demo's
own two admins (``demo-admin``, ``demo-approver``) and server certificate.  The
tests then act as admins would: the client library and ``mdm-console``'s ``main``
connecting with the PKCS#12 identities, and a raw connection to the API socket.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, text

from console_proxy import pki
from console_proxy.client import (
    Client,
    Conflict,
    Event,
    EventStream,
    Forbidden,
    HandshakeRefused,
    Identity,
    device_target,
)
from console_proxy.console.main import Terminal
from console_proxy.console.main import main as console_main
from mepl.demo import demo_imei
from tests.support.pg import migrated_database

PASSPHRASE = b"e2e-Passphrase-42"
OTHERS = {"olga": "operator", "vic": "viewer", "rita": "admin", "eddie": "operator"}
PHONE = "+447700900001"  # the demo's device 0 (device 1 changes its number in the scenario)
DEVICE = demo_imei(0)
WIPE_DEVICE = demo_imei(1)


@dataclass
class Stack:
    """The running stack and how to reach it."""

    state: Path
    proxy: str
    engine: Engine

    @property
    def pki_dir(self) -> Path:
        return self.state / "pki"

    @property
    def ca(self) -> Path:
        return self.pki_dir / pki.CA_CERT

    @property
    def socket(self) -> Path:
        return self.state / "admin" / "admin.sock"

    def p12(self, name: str) -> Path:
        return self.pki_dir / pki.ISSUED_DIR / f"{name}.p12"

    def passphrase_file(self, name: str) -> Path:
        demo = self.pki_dir / pki.ISSUED_DIR / f"{name}.passphrase"
        return demo if demo.exists() else self.state / "others.passphrase"

    def identity(self, name: str) -> Identity:
        return Identity.from_pkcs12(self.p12(name),
                                    self.passphrase_file(name).read_bytes().strip())

    def client(self, name: str, *, check_clock: bool = True) -> Client:
        """The client library as ``name``; without the clock check the proxy judges expiry."""
        clock = (lambda: datetime.now(UTC)) if check_clock else None
        return Client.connect(self.proxy, self.identity(name), self.ca, clock=clock,
                              timeout=15)

    def console(self, name: str, *argv: str, pem: bool = False) -> tuple[int, str, str]:
        """``mdm-console`` (its main) as ``name``: (exit status, stdout, stderr).

        ``pem``: the PEM certificate and its key (encrypted with the bundle's passphrase)
        instead of the PKCS#12 bundle."""
        out, err = io.StringIO(), io.StringIO()
        term = Terminal(io.StringIO(), out, err, interactive=False)
        issued = self.pki_dir / pki.ISSUED_DIR
        who = (["--cert", str(issued / f"{name}.pem"), "--key", str(issued / f"{name}.key")]
               if pem else ["--identity", str(self.p12(name))])
        flags = ["--proxy", self.proxy, *who, "--ca", str(self.ca),
                 "--passphrase-file", str(self.passphrase_file(name))]
        status = console_main([*flags, *argv], terminal=term, env={})
        return status, out.getvalue(), err.getvalue()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def audit(self, **where: str) -> list[dict[str, Any]]:
        clauses = " AND ".join(f"{k} = :{k}" for k in where) or "true"
        return [dict(r._mapping) for r in self.rows(
            f"SELECT actor, role, action, target, details FROM audit WHERE {clauses} "
            "ORDER BY id", **where)]

    def wait_audit(self, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 10.0) -> dict[str, Any]:
        """The first audit row matching (TLS refusals are written just after the handshake)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.audit()
            found = [r for r in rows if predicate(r)]
            if found or time.monotonic() > deadline:
                assert found, f"no such audit row in the last ones: {rows[-4:]}"
                return found[0]
            time.sleep(0.1)


T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 20.0) -> T:
    """Read the running server's state every 0.1 s until ``done`` (a real process: no
    Clock to advance); fails with the last value read after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not done(value := read()):
        assert time.monotonic() < deadline, value
        time.sleep(0.1)
    return value


def _make_pki(directory: Path, now: datetime) -> None:
    pki.init_ca(directory, deployment="mepl-demo", passphrase=None, now=now)
    for name, role in OTHERS.items():
        when = now - timedelta(days=3) if name == "eddie" else now
        pki.issue_admin(directory, name, role, ca_passphrase=None,
                        bundle_passphrase=PASSPHRASE, now=when, days=1 if name == "eddie"
                        else pki.DEFAULT_ADMIN_DAYS)
    pki.revoke(directory, passphrase=None, now=now, name="rita")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    state = Path(tempfile.mkdtemp(prefix="e2e", dir="/tmp"))  # short: a UNIX socket lives here
    url = migrated_database("e2e")
    _make_pki(state / "pki", datetime.now(UTC))
    (state / "others.passphrase").write_bytes(PASSPHRASE)
    log = (state / "demo.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mepl.cli.main", "demo", "--serve", "--state-dir", str(state),
         "--database-url", url, "--devices", "3", "--proxy-port", "0",
         "--receipt-delay", "0.05", "--timeout", "30"],
        stdout=log, stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "MEPL_KEY_PASSPHRASE"})
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + 90
        output = ""
        while "serving:" not in output:
            assert proc.poll() is None and time.monotonic() < deadline, output
            time.sleep(0.2)
            output = (state / "demo.log").read_text()
        assert "demo: OK" in output, output
        proxy = next(word for line in output.splitlines() if "console proxy" in line
                     for word in line.split() if word.startswith("https://")).rstrip(",")
        yield Stack(state, proxy, engine)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        engine.dispose()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def test_whoami_names_each_admin_and_role_as_the_api_sees_them(stack: Stack) -> None:
    for name, role in (("demo-admin", "admin"), ("demo-approver", "admin"),
                       ("olga", "operator"), ("vic", "viewer")):
        with stack.client(name) as client:
            who = client.whoami()
        assert (who.name, who.role) == (name, role)
        assert who.fingerprint == stack.identity(name).fingerprint
    status, out, _ = stack.console("vic", "whoami")
    assert status == 0
    assert "vic" in out and "viewer" in out
    status, out, err = stack.console("olga", "whoami", "--json", pem=True)
    assert status == 0, err
    assert json.loads(out)["name"] == "olga"


def test_a_device_is_found_by_its_phone_number_written_nationally_or_internationally(
        stack: Stack) -> None:
    with stack.client("vic") as client:
        international = client.get_device("+44 7700 900001")
        national = client.get_device("07700 900001", region="GB")
    assert international.imei == national.imei == DEVICE
    status, out, _ = stack.console("vic", "devices", "find", "07700900001", "--json")
    assert status == 0, out
    assert json.loads(out)["imei"] == DEVICE


def test_a_viewer_is_refused_a_lock_with_the_role_it_needs_and_the_refusal_is_audited(
        stack: Stack) -> None:
    with stack.client("vic") as client, pytest.raises(Forbidden) as refused:
        client.send_command("lock", device_target(DEVICE))
    assert "needs the operator role" in refused.value.message
    status, _, err = stack.console("vic", "send", "lock", "--device", DEVICE, "--yes")
    assert status != 0
    assert "operator" in err and "viewer" in err
    row = stack.wait_audit(lambda r: r["target"] == "CN=vic,OU=viewer,O=mepl-demo"
                           and r["details"].get("event") == "role_refused")
    assert (row["actor"], row["role"], row["action"]) == ("vic", "viewer", "proxy.refused")
    assert row["details"]["via"] == "demo-proxy"
    assert row["details"]["fingerprint"] == stack.identity("vic").fingerprint
    assert row["details"]["admin_fingerprint"] == stack.identity("vic").fingerprint
    assert row["details"]["reason"] == "requires operator"
    assert row["details"]["path"] == "/v1/commands"
    assert stack.rows("SELECT count(*) FROM commands WHERE requested_by = 'vic'")[0][0] == 0


def test_an_operators_lock_is_queued_and_its_history_is_visible(stack: Stack) -> None:
    with stack.client("olga") as client:
        sent = client.send_command("lock", device_target(PHONE))
        assert sent.queued is not None and sent.queued.command_id is not None
        assert sent.queued.count == 1
        command_id = sent.queued.command_id
        command = poll(lambda: client.get_command(command_id), lambda c: c.state == "done")
    assert command.device == DEVICE
    assert [e.to_state for e in command.history][:1] == ["queued"]
    assert command.history[-1].to_state == "done"
    status, out, _ = stack.console("olga", "commands", "show", str(command_id))
    assert status == 0, out
    assert "lock" in out and "done" in out and "queued" in out


def test_an_operator_is_refused_a_wipe(stack: Stack) -> None:
    with stack.client("olga") as client, pytest.raises(Forbidden) as refused:
        client.send_command("wipe", device_target(WIPE_DEVICE))
    assert "needs the admin role" in refused.value.message
    stack.wait_audit(lambda r: (r["target"] or "").startswith("CN=olga,")
                     and r["details"].get("reason") == "requires admin")


def test_a_wipe_waits_for_a_second_admin_and_carries_both_names(stack: Stack) -> None:
    with stack.client("demo-admin") as admin:
        sent = admin.send_command("wipe", device_target(WIPE_DEVICE))
        assert sent.approval is not None and sent.queued is None  # 202
        approval = sent.approval
        assert (approval.status, approval.action) == ("pending", "command.wipe")
        assert stack.rows("SELECT count(*) FROM commands WHERE opcode = 'wipe'")[0][0] == 0
        with pytest.raises(Conflict) as same:
            admin.approve(approval.id)
        assert "demo-admin" in same.value.message
    status, out, _ = stack.console("demo-approver", "approvals", "approve", approval.id)
    assert status == 0, out
    assert "approved" in out
    with stack.client("demo-approver") as approver:
        decided = approver.get_approval(approval.id)
        assert decided.status == "approved" and decided.decided_by == "demo-approver"
        assert decided.result is not None and decided.result.command_id is not None
        command = approver.get_command(decided.result.command_id)
    assert command.opcode == "wipe"
    history = json.dumps(command.raw)
    assert "demo-admin" in history and "demo-approver" in history
    status, out, _ = stack.console("demo-admin", "audit", "--json")
    assert status == 0, out
    audit = json.loads(out)["items"]
    actors = {(e["actor"], e["action"]) for e in audit}
    assert ("demo-admin", "command.send") in actors
    assert ("demo-approver", "approval.approve") in actors
    refused = [e for e in audit if e["actor"] == "demo-admin"
               and e["action"] == "approval.approve"]
    assert refused and "conflict" in json.dumps(refused)


@pytest.mark.parametrize(("name", "reason"), [("rita", "revoked"), ("eddie", "expired")])
def test_a_revoked_or_expired_identity_is_refused_at_the_handshake_and_audited(
        stack: Stack, name: str, reason: str) -> None:
    with stack.client(name, check_clock=False) as client, \
            pytest.raises(HandshakeRefused) as refused:
        client.whoami()
    assert refused.value.reason == reason
    assert reason in refused.value.message
    status, _, err = stack.console(name, "whoami")
    assert status != 0
    assert reason in err
    row = stack.wait_audit(lambda r: r["details"].get("event") == "tls_refused"
                           and (r["target"] or "").startswith(f"CN={name},"))
    assert row["details"]["reason"] == reason
    assert row["details"]["admin_fingerprint"] == stack.identity(name).fingerprint


def test_the_api_socket_refuses_a_request_without_the_proxys_assertion(stack: Stack) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(10)
        raw.connect(str(stack.socket))
        raw.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert json.loads(body)["error"]["code"] == "unauthenticated"
    row = stack.wait_audit(lambda r: r["action"] == "request.refused"
                           and r["details"].get("status") == 401)
    assert row["details"]["outcome"].startswith("refused:")


def _collect(stream: EventStream, into: queue.Queue[Event]) -> threading.Thread:
    def run() -> None:
        for event in stream:
            into.put(event)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _events_of(events: queue.Queue[Event], command_id: int, last: str,
               timeout: float = 20.0) -> list[Event]:
    found: list[Event] = []
    deadline = time.monotonic() + timeout
    while not any(e.data.get("to") == last for e in found):
        event = events.get(timeout=max(0.1, deadline - time.monotonic()))
        if event.data.get("command_id") == command_id:
            found.append(event)
    return found


def test_watch_receives_a_sends_events_live_and_resumes_from_last_event_id(
        stack: Stack) -> None:
    with stack.client("olga") as client:
        live: queue.Queue[Event] = queue.Queue()
        connected = threading.Event()
        stream = client.events(device=DEVICE, on_status=lambda state, _detail: (
            connected.set() if state == "connected" else None))
        thread = _collect(stream, live)
        # "connected" comes with the stream's first bytes, sent once its starting
        # point is fixed: the command queued next is in the stream.
        assert connected.wait(10)
        sent = client.send_command("status_query", device_target(DEVICE),
                                   args={"features": "battery"})
        assert sent.queued is not None and sent.queued.command_id is not None
        command_id = sent.queued.command_id
        seen = _events_of(live, command_id, "done")
        stream.stop()
        thread.join(10)
        assert seen[0].data["to"] == "queued"
        assert seen[-1].data["opcode"] == "status_query"
        resumed: queue.Queue[Event] = queue.Queue()
        again = client.events(device=DEVICE, last_event_id=seen[0].id)
        thread = _collect(again, resumed)
        rest = _events_of(resumed, command_id, "done")
        again.stop()
        thread.join(10)
    assert [e.id for e in rest] == [e.id for e in seen[1:]]


def test_a_group_lock_waits_for_approval_and_its_fanout_progress_is_visible(
        stack: Stack) -> None:
    with stack.client("demo-admin") as admin:
        sent = admin.send_command("lock", {"group": "demo-fleet"})
        assert sent.approval is not None and sent.approval.action == "command.lock.group"
    with stack.client("demo-approver") as approver:
        decided = approver.approve(sent.approval.id)
        assert decided.result is not None and decided.result.fanout_id is not None
        assert decided.result.count == 3
        fanout_id = decided.result.fanout_id
        progress = poll(lambda: approver.get_fanout(fanout_id), lambda p: p.done >= 2)
    assert progress.total == 3
    assert sum(progress.by_state.values()) == 3
