"""Render each main view of the desktop console offscreen and save PNGs (docs/screenshots).

    python -m tests.gui.make_screenshots --out docs/screenshots

runs the console against the mutual-TLS stand-in for the proxy used by the
tests (a fleet of 100,000 synthetic devices, two admins), goes through
sign-in, the fleet, a device, a group lock with its confirmation, the second
admin's approval, live events with an alert, the charts and the audit, and
saves one PNG per view.  Against a running proxy (for example in front of
``mepl demo``)::

    MDM_CONSOLE_PASSPHRASE=... python -m tests.gui.make_screenshots --out shots \\
        --proxy https://127.0.0.1:8443 --identity alice.p12 --ca ca.pem \\
        [--second-identity bob.p12] [--device IMEI] [--send]

it only reads, unless ``--send`` is given: then it sends the group lock
(which waits for approval) and, with ``--second-identity``, approves it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QDeadlineTimer, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

from console_proxy.gui.signin import Session, SignInDialog
from console_proxy.gui.window import MainWindow
from tests.console_proxy.console_fixtures import (
    COMMAND,
    DEVICES,
    HISTORY,
    PASSPHRASE,
    FakeApi,
    FakeProxy,
    Recorded,
    TestPki,
)

SIZE = (1180, 720)
STATES = ("done", "done", "done", "delivered", "sent", "failed", "queued", "expired")


def now() -> datetime:
    return datetime.now(UTC)


class ShowcaseApi(FakeApi):
    """The stand-in with more to show: 100,000 devices, a week of commands and alerts."""

    def answer(self, req: Recorded) -> tuple[int, Any]:
        key = (req.method, req.path)
        q = {k: v[0] for k, v in req.query.items()}
        if key == ("GET", "/v1/devices") and not q.get("q"):
            after = int(q.get("after", "0"))
            last = min(after + int(q.get("limit", "50")), 100_000)
            items = [DEVICES[i - 1] if i <= len(DEVICES) else {
                "id": i, "imei": f"35{i:013d}", "imsi": f"2341{5 + i % 3}{i:010d}",
                "msisdn": f"+4477{i:08d}", "key_id": 7,
                "state": "lost" if i % 11 == 0 else "locked" if i % 7 == 0 else "provisioned",
                "groups": [f"depot-{'abc'[i % 3]}"],
                "last_seen_at": f"2026-05-0{1 + i % 7}T{i % 24:02d}:{i % 60:02d}:00+00:00"}
                for i in range(after + 1, last + 1)]
            return 200, {"items": items, "next": str(last) if last < 100_000 else None}
        if key == ("GET", "/v1/commands") and not q.get("device"):
            items = [{**COMMAND, "id": 1000 + i, "state": STATES[i % len(STATES)],
                      "created_at": f"2026-05-0{1 + i % 7}T{i % 24:02d}:00:00+00:00"}
                     for i in range(7 * 9)]
            return 200, {"items": items, "next": None}
        if key == ("GET", "/v1/commands/42"):
            status, body = super().answer(req)
            frame = "4d45" + "01" + "07" + "0000002a" + "01" * 8 + "0101" + "ab" * 64
            return status, {**body, "command": {**body["command"], "frame": frame}}
        if req.method == "GET" and req.path.startswith("/v1/commands/1"):
            delay = 2 + int(req.path.rsplit("/", 1)[1]) % 5 * 9
            history = [*HISTORY[:2], {**HISTORY[2], "to": "delivered",
                                      "at": f"2026-05-01T10:00:{1 + delay:02d}+00:00"}]
            return 200, {"command": {**COMMAND, "id": int(req.path.rsplit("/", 1)[1])},
                         "imei": DEVICES[0]["imei"], "history": history}
        if key == ("GET", "/v1/alerts"):
            kinds = ("sim_swap", "lost", "left_territory")
            items = [{"id": 100 + i, "imei": f"35{i * 37:013d}", "kind": kinds[i % 3],
                      "at": f"2026-05-0{1 + i % 6}T09:00:00+00:00", "details": {}}
                     for i in range(14)]
            return 200, {"items": items, "next": None}
        if key == ("GET", "/v1/audit"):
            status, body = super().answer(req)
            rows = [*body["items"], {
                "id": 78, "at": "2026-05-01T10:02:00+00:00", "actor": "val", "role": "viewer",
                "action": "request.refused", "target": "356938035643809",
                "details": {"outcome": "refused:role", "request_id": "r2", "status": 403,
                            "source": "10.0.0.7:50122"}}, {
                "id": 79, "at": "2026-05-01T10:05:00+00:00", "actor": "bob", "role": "admin",
                "action": "approval.approve", "target": "approval:ap1",
                "details": {"outcome": "ok", "request_id": "r3", "status": 200,
                            "source": "10.0.0.9:50310"}}]
            return status, {"items": rows, "next": None}
        return super().answer(req)


def wait_until(condition: Callable[[], object], timeout_ms: int = 15000) -> None:
    """Process Qt events until ``condition()`` is true (or fail after ``timeout_ms``)."""
    deadline = QDeadlineTimer(timeout_ms)
    while not condition():
        if deadline.hasExpired():
            raise SystemExit(f"timed out waiting for {condition}")
        QTest.qWait(20)


def save(widget: QWidget, out: Path, name: str) -> Path:
    """Grab ``widget`` and save it as a small PNG (256 colours are enough for a UI)."""
    QApplication.processEvents()
    image = widget.grab().toImage().convertToFormat(
        QImage.Format.Format_Indexed8, Qt.ImageConversionFlag.ThresholdDither
        | Qt.ImageConversionFlag.AvoidDither)
    path = out / f"{name}.png"
    if not image.save(str(path), "PNG", 9):
        raise SystemExit(f"cannot write {path}")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return path


def _passphrase(path: str | None) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return os.environ.get("MDM_CONSOLE_PASSPHRASE", "")


def sign_in(out: Path | None, proxy: str, identity: str, ca: str, passphrase: str) -> Session:
    dialog = SignInDialog(now, proxy=proxy, identity=identity, ca=ca, passphrase=passphrase)
    dialog.show()
    if out is not None:
        dialog.preview()
        save(dialog, out, "signin")
    dialog.sign_in.click()
    wait_until(lambda: dialog.session is not None or dialog.sign_in.isEnabled())
    if dialog.session is None:
        raise SystemExit(f"sign-in failed: {dialog.message.text()}")
    session = dialog.session
    dialog.close()
    return session


def window_for(session: Session) -> MainWindow:
    window = MainWindow(session, poll_ms=500)
    window.resize(*SIZE)
    window.show()
    window.start()
    return window


def tour(out: Path, first: Session, second: Session | None, *, device: str | None,
         send: bool, api: FakeApi | None) -> None:
    """Go through the views as an admin would, saving a PNG of each."""
    alice = window_for(first)
    fleet = alice.fleet
    wait_until(lambda: fleet.model.rowCount() > 0)
    for column in range(fleet.model.columnCount()):
        fleet.table.resizeColumnToContents(column)
    save(alice, out, "fleet")

    imei = device or fleet.model.item(0).imei
    alice.open_device(imei)
    view = alice.device
    wait_until(lambda: view.device is not None and view.message_table.rowCount() > 0
               and view.commands.topLevelItemCount() > 0)
    wait_until(lambda: any(c for _, c in view.timeline()))
    view.message_table.selectRow(min(1, view.message_table.rowCount() - 1))
    view.raw_button.click()
    wait_until(lambda: "— " in view.decoded.toPlainText())
    save(alice, out, "device")

    group = next((g for d in fleet.model.items() for g in d.groups), "north")
    alice.send.choose("lock", group=group)
    alice.tabs.setCurrentWidget(alice.send)
    if send:
        alice.send.send_button.click()
        wait_until(lambda: alice.send.confirmation is not None)
        box = alice.send.confirmation
        assert box is not None
        save(box, out, "confirm")
        box.button(box.StandardButton.Yes).click()
        wait_until(lambda: alice.send.result.text() != ""
                   and not alice.send.result.text().startswith("sending"))
    save(alice, out, "send")

    if second is not None:
        bob = window_for(second)
        bob.tabs.setCurrentWidget(bob.approvals)
        wait_until(lambda: bob.approvals.model.rowCount() > 0 or not bob.approvals.model.loading)
        if bob.approvals.model.rowCount():
            bob.approvals.table.selectRow(0)
        for column in range(bob.approvals.model.columnCount()):
            bob.approvals.table.resizeColumnToContents(column)
        save(bob, out, "approvals")
        if send and bob.approvals.model.rowCount():
            bob.approvals.approve_button.click()
            wait_until(lambda: bob.approvals.result.text() != "")
        bob.shutdown()
        bob.close()

    if api is not None:
        for i, (state_from, state_to, event) in enumerate((
                ("queued", "sent", "submitted"), ("sent", "delivered", "delivered"),
                ("delivered", "done", "replied"))):
            api.add_event(f"c{i + 1}", "command", {
                "command_id": 42, "imei": imei, "opcode": "lock", "from": state_from,
                "to": state_to, "event": event, "at": f"2026-05-01T10:00:0{i * 2}+00:00",
                "note": "ok" if state_to == "done" else None})
        api.add_event("s1", "alert", {"id": 6, "imei": imei, "kind": "sim_swap",
                                      "at": "2026-05-01T10:01:00+00:00",
                                      "details": {"old_imsi": "234150888888888"}})
        wait_until(lambda: alice.events.list.count() >= 4)
    if send and api is not None and 9 not in alice.fanouts.bars:  # the stand-in's fan-out
        alice.fanouts.track(9, f"lock to every device of group {group}")
    alice.tabs.setCurrentWidget(alice.events)
    wait_until(lambda: all(bar.format() != "…" for bar in alice.fanouts.bars.values()))
    save(alice, out, "events")

    alice.tabs.setCurrentWidget(alice.charts)
    wait_until(lambda: alice.charts.data is not None)
    save(alice, out, "charts")

    if alice.audit is not None:
        alice.tabs.setCurrentWidget(alice.audit)
        wait_until(lambda: alice.audit is not None and alice.audit.model.rowCount() > 0)
        for column in range(alice.audit.model.columnCount()):
            alice.audit.table.resizeColumnToContents(column)
        save(alice, out, "audit")
    alice.shutdown()
    alice.close()


def stand_in(out: Path) -> None:
    """The tour against the stand-in proxy."""
    with tempfile.TemporaryDirectory(prefix="mdm-shots-") as tmp:
        pki = TestPki(Path(tmp))
        api = ShowcaseApi()
        server = FakeProxy(pki, api)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        try:
            ca = str(pki.ca.cert_file)
            alice = sign_in(out, server.url, str(pki.pkcs12(pki.issue("alice", "admin"))), ca,
                            PASSPHRASE)
            bob = sign_in(None, server.url, str(pki.pkcs12(pki.issue("bob", "admin"))), ca,
                          PASSPHRASE)
            tour(out, alice, bob, device=None, send=True, api=api)
        finally:
            with api.cond:
                api.closing = True
                api.cond.notify_all()
            server.shutdown()
            server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/screenshots", type=Path)
    parser.add_argument("--proxy", help="a running proxy (default: the tests' stand-in)")
    parser.add_argument("--identity", help="the first admin's PKCS#12 identity")
    parser.add_argument("--second-identity", help="a second admin's, for the approvals view")
    parser.add_argument("--ca", help="the deployment's CA certificate")
    parser.add_argument("--passphrase-file", help="the first identity's passphrase "
                        "(default: $MDM_CONSOLE_PASSPHRASE)")
    parser.add_argument("--second-passphrase-file",
                        help="the second identity's (default: the first's)")
    parser.add_argument("--device", help="the device to show (default: the first listed)")
    parser.add_argument("--send", action="store_true",
                        help="send the group lock (it waits for approval) and approve it")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationDisplayName("MEPL desktop console")
    if args.proxy is None:
        stand_in(args.out)
        return 0
    if not (args.identity and args.ca):
        parser.error("--proxy needs --identity and --ca")
    passphrase = _passphrase(args.passphrase_file)
    first = sign_in(args.out, args.proxy, args.identity, args.ca, passphrase)
    second_passphrase = _passphrase(args.second_passphrase_file) if (
        args.second_passphrase_file) else passphrase
    second = (sign_in(None, args.proxy, args.second_identity, args.ca, second_passphrase)
              if args.second_identity else None)
    tour(args.out, first, second, device=args.device, send=args.send, api=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
