"""``mdm-console gui``: the desktop console's composition root.

It alone reads the wall clock and creates the Qt application; the views
take the clock and the client from the :class:`~console_proxy.gui.signin.Session`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from PySide6.QtWidgets import QApplication, QDialog

from console_proxy.console.settings import Settings
from console_proxy.gui.signin import SignInDialog
from console_proxy.gui.window import MainWindow


def now() -> datetime:
    """The wall clock (aware, UTC)."""
    return datetime.now(UTC)


def application(argv: Sequence[str] = ()) -> QApplication:
    """The process's Qt application (made once)."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    app = QApplication([sys.argv[0] if sys.argv else "mdm-console", *argv])
    app.setApplicationName("mdm-console")
    app.setApplicationDisplayName("MEPL desktop console")
    app.setQuitOnLastWindowClosed(True)
    return app


def run(settings: Settings, passphrase: str | None = None) -> int:
    """Sign in (the dialog is pre-filled from ``settings``), then run the main window."""
    app = application()
    dialog = SignInDialog(now, proxy=settings.proxy or "", identity=settings.identity or "",
                          ca=settings.ca or "", passphrase=passphrase or "",
                          timeout=settings.timeout)
    if dialog.exec() != QDialog.DialogCode.Accepted or dialog.session is None:
        return 0
    window = MainWindow(dialog.session)
    window.show()
    window.start()
    try:
        return int(app.exec())
    finally:
        window.shutdown()
