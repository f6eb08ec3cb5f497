"""Signing in: the certificate shown, the admin as the proxy sees them, clear refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pytestqt.qtbot import QtBot

from tests.console_proxy.console_fixtures import FakeProxy, TestPki
from tests.gui.harness import Gui


def refused(gui: Gui, qtbot: QtBot, **kwargs: object) -> str:
    dialog = gui.dialog(**kwargs)  # type: ignore[arg-type]
    dialog.sign_in.click()
    qtbot.waitUntil(lambda: dialog.sign_in.isEnabled() and dialog.message.text() != "",
                    timeout=10000)
    assert dialog.session is None
    return dialog.message.text()


def test_sign_in_shows_the_certificate_and_the_admin_as_the_proxy_sees_them(
        gui: Gui, qtbot: QtBot, proxy: FakeProxy) -> None:
    dialog = gui.dialog("alice", "admin")
    dialog.sign_in.click()
    qtbot.waitUntil(lambda: dialog.session is not None, timeout=10000)
    assert dialog.certificate.text().startswith("alice — role admin — Test Fleet — expires ")
    session = dialog.session
    assert session is not None
    assert (session.me.name, session.role) == ("alice", "admin")
    assert session.me.fingerprint == session.identity.fingerprint
    assert [r.path for r in proxy.api.requests] == ["/v1/whoami"]
    window = gui.window("bob", "operator")
    assert window.who.text().startswith("bob (operator) · Test Fleet · certificate expires ")
    assert proxy.url in window.who.text()


def test_the_certificate_is_shown_as_soon_as_the_identity_opens(
        gui: Gui, proxy: FakeProxy) -> None:
    dialog = gui.dialog("bob", "operator")
    dialog.preview()
    assert dialog.certificate.text().startswith("bob — role operator — Test Fleet — expires ")
    assert proxy.api.requests == []  # nothing asked of the proxy yet
    dialog.passphrase.setText("wrong")
    dialog.preview()
    assert dialog.certificate.text() == ""


def test_a_wrong_passphrase_is_a_clear_message(gui: Gui, qtbot: QtBot) -> None:
    text = refused(gui, qtbot, passphrase="not it")
    assert "wrong passphrase, or not a PKCS#12 file" in text
    assert "What to do: check the passphrase" in text


def test_an_expired_certificate_is_refused_naming_its_expiry(
        gui: Gui, qtbot: QtBot, pki: TestPki) -> None:
    gui.identity("old", "admin", pki.issue("old", "admin", not_before=pki.now
                                           - timedelta(days=60),
                                           not_after=pki.now - timedelta(days=1)))
    text = refused(gui, qtbot, name="old")
    assert "your certificate (old, admin) expired on " in text
    assert "issue-admin" in text
    assert gui.proxy.api.requests == []  # refused before connecting


def test_a_revoked_certificate_is_refused_by_the_proxy_and_says_so(
        gui: Gui, qtbot: QtBot, pki: TestPki,
        proxy_factory: Callable[[], FakeProxy]) -> None:
    issued = pki.issue("mallory", "admin", stem="mallory-admin")
    pki.revoke(issued)
    gui.identity("mallory", "admin", issued)
    text = refused(gui, qtbot, name="mallory", proxy=proxy_factory())
    assert "the proxy refused your certificate: it has been revoked" in text


def test_a_foreign_certificate_says_it_is_not_from_this_deployment(
        gui: Gui, qtbot: QtBot, pki: TestPki) -> None:
    gui.identity("eve", "admin", pki.issue("eve", "admin", ca=pki.foreign_ca, stem="eve"))
    text = refused(gui, qtbot, name="eve")
    assert "it was not issued by this deployment's admin CA" in text


def test_a_proxy_signed_by_another_ca_is_not_trusted(
        gui: Gui, qtbot: QtBot, pki: TestPki) -> None:
    text = refused(gui, qtbot, ca=pki.foreign_ca.cert_file)
    assert "is not trusted" in text
