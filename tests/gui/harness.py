"""Sign in to the desktop console as a given admin against the stand-in proxy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from console_proxy.gui.signin import Session, SignInDialog
from console_proxy.gui.window import MainWindow
from tests.console_proxy.console_fixtures import PASSPHRASE, FakeProxy, Issued, TestPki


def now() -> datetime:
    return datetime.now(UTC)


class Gui:
    """Identities, sign-in dialogs and main windows for the tests, closed at the end."""

    def __init__(self, pki: TestPki, proxy: FakeProxy, qtbot: QtBot, tmp: Path) -> None:
        self.pki, self.proxy, self.qtbot, self.tmp = pki, proxy, qtbot, tmp
        self.identities: dict[tuple[str, str], Path] = {}
        self.windows: list[MainWindow] = []

    def identity(self, name: str, role: str, issued: Issued | None = None) -> Path:
        if (name, role) not in self.identities:
            self.identities[(name, role)] = self.pki.pkcs12(
                issued or self.pki.issue(name, role, stem=f"{name}-{role}"))
        return self.identities[(name, role)]

    def dialog(self, name: str = "alice", role: str = "admin", *,
               passphrase: str = PASSPHRASE, proxy: FakeProxy | None = None,
               ca: Path | None = None) -> SignInDialog:
        dialog = SignInDialog(now, proxy=(proxy or self.proxy).url,
                              identity=str(self.identity(name, role)),
                              ca=str(ca or self.pki.ca.cert_file), passphrase=passphrase,
                              timeout=10)
        self.qtbot.addWidget(dialog)
        return dialog

    def session(self, name: str = "alice", role: str = "admin") -> Session:
        dialog = self.dialog(name, role)
        dialog.sign_in.click()
        self.qtbot.waitUntil(lambda: dialog.session is not None, timeout=10000)
        assert dialog.session is not None
        return dialog.session

    def window(self, name: str = "alice", role: str = "admin", **options: Any) -> MainWindow:
        window = MainWindow(self.session(name, role), **options)
        self.qtbot.addWidget(window)
        self.windows.append(window)
        window.show()
        window.start()
        return window

    def close(self) -> None:
        for window in self.windows:
            window.shutdown()


@pytest.fixture
def gui(pki: TestPki, proxy: FakeProxy, qtbot: QtBot, tmp_path: Path) -> Iterator[Gui]:
    harness = Gui(pki, proxy, qtbot, tmp_path)
    yield harness
    harness.close()
