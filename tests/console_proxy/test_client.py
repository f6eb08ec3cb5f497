"""The client library against a real mutual-TLS server on loopback that speaks the contract."""

# The fixtures come from console_fixtures (not a conftest the proxy's tests would share).
# ruff: noqa: F811

from __future__ import annotations

import json
import re
import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest

from console_proxy.client import (
    AuditEntry,
    Backoff,
    CertificateExpired,
    Client,
    Conflict,
    Forbidden,
    HandshakeRefused,
    Identity,
    NotFound,
    ProxyUnreachable,
    ServerNotTrusted,
    WrongPassphrase,
    device_target,
    fleet_target,
    group_target,
    is_destructive,
)
from console_proxy.client.events import SseParser
from tests.console_proxy.console_fixtures import (  # noqa: F401 - fixtures
    PASSPHRASE,
    FakeApi,
    FakeProxy,
    TestPki,
    fake_api,
    pki,
    proxy,
    proxy_factory,
)


def admin_client(pki: TestPki, proxy: FakeProxy, name: str = "alice",
                 role: str = "admin") -> Client:
    identity = Identity.from_pkcs12(pki.pkcs12(pki.issue(name, role)), PASSPHRASE)
    return Client.connect(proxy.url, identity, pki.ca.cert_file,
                          clock=lambda: datetime.now(UTC))


# -- identity and TLS --------------------------------------------------------------------------


def test_a_pkcs12_identity_opened_with_its_passphrase_is_the_admin_the_proxy_sees(
        pki: TestPki, proxy: FakeProxy) -> None:
    issued = pki.issue("alice", "operator")
    identity = Identity.from_pkcs12(pki.pkcs12(issued), PASSPHRASE)
    assert (identity.name, identity.role, identity.organisation) == (
        "alice", "operator", "Test Fleet")
    assert identity.fingerprint == issued.fingerprint
    assert "private_key" not in repr(identity)
    with Client.connect(proxy.url, identity, pki.ca.cert_file) as client:
        me = client.whoami()
    assert (me.name, me.role, me.fingerprint) == ("alice", "operator", issued.fingerprint)
    assert proxy.refusals == []


def test_loading_a_pkcs12_identity_leaves_no_key_file_behind(
        pki: TestPki, proxy: FakeProxy, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path_factory.mktemp("scratch")
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with admin_client(pki, proxy) as client:
        assert client.whoami().name == "alice"
    assert list(scratch.iterdir()) == []


def test_a_wrong_passphrase_is_a_clear_error_naming_the_file(pki: TestPki) -> None:
    path = pki.pkcs12(pki.issue("alice", "admin"))
    with pytest.raises(WrongPassphrase) as caught:
        Identity.from_pkcs12(path, "not it")
    assert "wrong passphrase" in caught.value.message
    assert str(path) in caught.value.message
    assert "passphrase" in caught.value.hint


def test_a_pem_identity_with_an_encrypted_key_needs_its_passphrase(
        pki: TestPki, proxy: FakeProxy) -> None:
    from cryptography.hazmat.primitives import serialization
    issued = pki.issue("carol", "viewer")
    issued.key_file.write_bytes(issued.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pem secret")))
    with pytest.raises(WrongPassphrase, match="encrypted and no passphrase"):
        Identity.from_pem(issued.cert_file, issued.key_file)
    identity = Identity.from_pem(issued.cert_file, issued.key_file, "pem secret")
    with Client.connect(proxy.url, identity, pki.ca.cert_file) as client:
        assert client.whoami().role == "viewer"


def test_an_expired_certificate_is_refused_before_connecting_with_its_date(
        pki: TestPki, proxy: FakeProxy) -> None:
    issued = pki.issue("old", "admin", not_before=pki.now - timedelta(days=60),
                       not_after=pki.now - timedelta(days=1))
    identity = Identity.from_pkcs12(pki.pkcs12(issued), PASSPHRASE)
    with pytest.raises(CertificateExpired) as caught:
        Client.connect(proxy.url, identity, pki.ca.cert_file, clock=lambda: pki.now)
    assert "expired on" in caught.value.message
    assert "issue-admin" in caught.value.hint
    assert proxy.handshakes == 0 and proxy.refusals == []


@pytest.mark.parametrize(("case", "reason", "words"), [
    ("expired", "expired", "it has expired"),
    ("revoked", "revoked", "it has been revoked"),
    ("foreign", "unknown_ca", "it was not issued by this deployment's admin CA"),
])
def test_a_certificate_the_proxy_refuses_in_the_handshake_is_named_by_its_cause(
        pki: TestPki, proxy_factory: object, case: str, reason: str, words: str) -> None:
    if case == "expired":
        issued = pki.issue("old", "admin", not_before=pki.now - timedelta(days=60),
                           not_after=pki.now - timedelta(days=1))
    else:
        issued = pki.issue("eve", "admin", ca=pki.foreign_ca if case == "foreign" else None)
    if case == "revoked":
        pki.revoke(issued)
    server = proxy_factory()  # type: ignore[operator]
    identity = Identity.from_pem(issued.cert_file, issued.key_file)
    with Client.connect(server.url, identity, pki.ca.cert_file) as client, \
            pytest.raises(HandshakeRefused) as caught:
        client.whoami()  # no clock given: the proxy, not the client, refuses
    assert caught.value.reason == reason
    assert caught.value.message == f"the proxy refused your certificate: {words}"
    assert fake_requests(server) == []


def test_a_proxy_whose_certificate_a_foreign_ca_signed_is_not_trusted(
        pki: TestPki, proxy: FakeProxy) -> None:
    identity = Identity.from_pem(*(lambda i: (i.cert_file, i.key_file))(
        pki.issue("alice", "admin")))
    with Client.connect(proxy.url, identity, pki.foreign_ca.cert_file) as client, \
            pytest.raises(ServerNotTrusted) as caught:
        client.whoami()
    assert "not trusted" in caught.value.message
    assert "--ca" in caught.value.hint
    assert fake_requests(proxy) == []


def test_an_unreachable_proxy_says_so(pki: TestPki) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    identity = Identity.from_pem(*(lambda i: (i.cert_file, i.key_file))(
        pki.issue("alice", "admin")))
    with Client.connect(f"https://127.0.0.1:{port}", identity, pki.ca.cert_file) as client, \
            pytest.raises(ProxyUnreachable) as caught:
        client.whoami()
    assert "connection refused" in caught.value.message
    assert "mdm-proxy" in caught.value.hint


def fake_requests(server: FakeProxy) -> list[object]:
    return list(server.api.requests)


def test_idle_connections_are_reused_across_calls(pki: TestPki, proxy: FakeProxy) -> None:
    with admin_client(pki, proxy) as client:
        for _ in range(3):
            client.whoami()
    assert proxy.handshakes == 1


# -- the routes --------------------------------------------------------------------------------


def test_send_command_posts_the_contract_body_and_returns_the_queued_command(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    with admin_client(pki, proxy, "olga", "operator") as client:
        result = client.send_command("lock", device_target("+44 7700 900123"),
                                     args={"emergency_dialer": "yes"}, priority="security",
                                     valid_for_s=3600)
    (sent,) = fake_api.of("POST", "/v1/commands")
    assert sent.body == {"command": "lock", "args": {"emergency_dialer": "yes"},
                         "target": {"device": "+44 7700 900123"}, "priority": "security",
                         "valid_for_s": 3600}
    assert sent.headers["content-type"] == "application/json"
    assert not result.pending and result.queued is not None
    assert (result.queued.command_id, result.queued.count) == (42, 1)
    assert re.fullmatch(r"[0-9a-f]{32}", result.request_id or "")


def test_a_202_answer_is_a_pending_approval_not_an_error(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    with admin_client(pki, proxy) as client:
        result = client.send_command("lock", group_target("north"), confirm=True)
    assert result.pending and result.queued is None and result.approval is not None
    assert (result.approval.id, result.approval.action, result.approval.status) == (
        "ap1", "command.lock.group", "pending")
    assert result.approval.requested_by == "alice"
    assert fake_api.of("POST", "/v1/commands")[0].body["confirm"] is True


def test_an_error_answer_raises_with_code_message_hint_and_request_id(
        pki: TestPki, proxy: FakeProxy) -> None:
    with admin_client(pki, proxy, "vic", "viewer") as client:
        with pytest.raises(Forbidden) as forbidden:
            client.send_command("lock", device_target("356938035643809"))
        with pytest.raises(NotFound) as missing:
            client.get_device("12345")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    assert forbidden.value.message == "role viewer may not send lock"
    assert forbidden.value.hint == "ask an operator or an admin"
    assert re.fullmatch(r"[0-9a-f]{32}", forbidden.value.request_id or "")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_identifiers_are_sent_url_encoded_in_the_path(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    with admin_client(pki, proxy) as client:
        device = client.get_device("+44 7700 900123", region="GB")
        page = client.device_messages("+44 7700 900123", limit=5)
    assert device.imei == "356938035643809" and device.groups == ("north",)
    gets = [r for r in fake_api.requests if r.method == "GET"]
    assert [r.path for r in gets] == ["/v1/devices/%2B44%207700%20900123",
                                      "/v1/devices/%2B44%207700%20900123/messages"]
    assert gets[0].query == {"region": ["GB"]} and gets[1].query == {"limit": ["5"]}
    assert [m.direction for m in page] == ["in", "out"]


def test_list_routes_pass_their_filters_and_read_items_and_next(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    with admin_client(pki, proxy) as client:
        page = client.list_devices(group="north", state="active", limit=1, after="c1")
        commands = client.list_commands(device="356938035643809", state="done")
        alerts = client.list_alerts(since="2026-05-01T00:00:00Z")
        audit = client.list_audit(actor="alice")
    assert [d.imei for d in page] == ["356938035643809"] and page.next == "c2"
    (listed,) = fake_api.of("GET", "/v1/devices")
    assert listed.query == {"group": ["north"], "state": ["active"], "limit": ["1"],
                            "after": ["c1"]}
    assert commands.items[0].id == 42 and commands.items[0].device == "1"  # the device id
    assert alerts.items[0].kind == "sim_swap"
    assert audit.items[0].outcome == "ok"


def test_command_details_carry_the_history(pki: TestPki, proxy: FakeProxy) -> None:
    with admin_client(pki, proxy) as client:
        command = client.get_command(42)
        progress = client.get_fanout(9)
    assert (command.id, command.device, command.state) == (42, "356938035643809", "done")
    assert [(e.from_state, e.to_state) for e in command.history] == [
        (None, "queued"), ("queued", "sent"), ("sent", "done")]
    assert (progress.total, progress.done, progress.failed) == (10, 7, 1)


def test_approve_and_reject_post_to_the_approval_and_a_self_approval_is_a_conflict(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    with admin_client(pki, proxy, "alice") as alice, admin_client(pki, proxy, "bob") as bob:
        first = alice.send_command("wipe", device_target("356938035643809"), confirm=True)
        second = alice.send_command("lock", fleet_target(), confirm=True)
        assert first.approval is not None and second.approval is not None
        with pytest.raises(Conflict, match="different admin"):
            alice.approve(first.approval.id)
        approved = bob.approve(first.approval.id)
        rejected = bob.reject(second.approval.id, reason="not today")
        pending = bob.list_approvals()
        again = alice.get_approval(first.approval.id)
    assert approved.status == "approved" and approved.decided_by == "bob"
    assert approved.result is not None and approved.result.fanout_id == 9
    assert rejected.status == "rejected"
    assert (again.status, again.decided_by) == ("approved", "bob")
    assert fake_api.of("POST", "/v1/approvals/ap1/approve")[-1].body == {}
    assert fake_api.of("POST", "/v1/approvals/ap2/reject")[0].body == {"reason": "not today"}
    assert pending.items == ()
    assert fake_api.of("GET", "/v1/approvals")[0].query == {"status": ["pending"]}


def test_submit_runs_a_call_on_a_worker_thread(pki: TestPki, proxy: FakeProxy) -> None:
    with admin_client(pki, proxy) as client:
        future = client.submit(client.whoami)
        assert future.result(timeout=30).name == "alice"


def test_destructive_is_a_wipe_anywhere_or_a_lock_beyond_one_device() -> None:
    assert is_destructive("wipe", device_target("1"))
    assert is_destructive("lock", group_target("g")) and is_destructive("LOCK", fleet_target())
    assert not is_destructive("lock", device_target("1"))
    assert not is_destructive("unlock", fleet_target())


# -- live events -------------------------------------------------------------------------------


def _feed(api: FakeApi, count: int) -> None:
    for n in range(1, count + 1):
        api.add_event(f"c{n},s0", "command", {
            "command_id": 40 + n, "imei": "356938035643809", "opcode": "lock",
            "from": "queued", "to": "sent", "event": "submitted",
            "at": f"2026-05-01T10:00:0{n}+00:00", "note": None})


def test_the_event_stream_resumes_with_last_event_id_after_the_server_drops_it(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    _feed(fake_api, 3)
    fake_api.drop_stream_after = 2
    states: list[str] = []
    with admin_client(pki, proxy) as client:
        stream = client.events(backoff=Backoff(initial=0.0),
                               on_status=lambda state, detail: states.append(state))
        got = [next(stream) for _ in range(3)]
        stream.close()
    assert [e.id for e in got] == ["c1,s0", "c2,s0", "c3,s0"]
    assert [e.data["command_id"] for e in got] == [41, 42, 43]
    first, second = fake_api.of("GET", "/v1/events")
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "c2,s0"
    assert first.headers["accept"] == "text/event-stream"
    assert stream.connections == 2 and stream.last_event_id == "c3,s0"
    assert states[:3] == ["connected", "disconnected", "reconnecting"]


def test_stop_from_another_thread_ends_an_iteration_blocked_on_the_stream(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    connected = threading.Event()
    result: list[object] = []
    with admin_client(pki, proxy) as client:
        stream = client.events(last_event_id="c9,s3", on_status=lambda state, _: (
            connected.set() if state == "connected" else None))
        worker = threading.Thread(target=lambda: result.extend(stream), daemon=True)
        worker.start()
        assert connected.wait(30)
        stream.stop()
        worker.join(30)
    assert not worker.is_alive()
    assert result == []
    assert fake_api.of("GET", "/v1/events")[0].headers["last-event-id"] == "c9,s3"


def test_an_event_stream_refused_for_the_role_raises_at_once(
        pki: TestPki, proxy: FakeProxy, fake_api: FakeApi) -> None:
    fake_api.overrides[("GET", "/v1/events")] = (403, {"error": {
        "code": "forbidden", "message": "no", "hint": "ask an admin"}})
    with admin_client(pki, proxy) as client, pytest.raises(Forbidden):
        next(client.events())


def test_sse_parser_joins_data_lines_skips_comments_and_keeps_the_last_id() -> None:
    parser = SseParser()
    lines = [": keep-alive", "", "id: c1,s0", "event: alert", 'data: {"kind":', 'data: "lost"}',
             "", "retry: 2500", "data: not json", ""]
    events = [e for e in (parser.feed(line + "\n") for line in lines) if e is not None]
    assert [(e.id, e.event) for e in events] == [("c1,s0", "alert"), ("c1,s0", "message")]
    assert events[0].data == json.loads('{"kind":\n"lost"}')
    assert events[1].data == {"text": "not json"}
    assert parser.retry_ms == 2500


def test_an_audit_row_written_by_a_use_case_reads_as_ok() -> None:
    row = {"id": 7, "at": "2026-12-03T10:00:00Z", "actor": "alice", "role": "operator",
           "action": "command.send", "target": "fleet", "details": {"opcode": "lock"}}
    refused = {**row, "details": {"outcome": "refused:role"}}
    assert AuditEntry.parse(row).outcome == "ok"
    assert AuditEntry.parse(refused).outcome == "refused:role"
