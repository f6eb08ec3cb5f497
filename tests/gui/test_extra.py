"""The GUI is an optional extra: only console_proxy.gui imports PySide6, and without it
``mdm-console gui`` says what to install."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import pytest

from console_proxy.console.main import Exit, Terminal, main

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("mepl", "sms_gateway", "signing", "console_proxy", "blobstore", "migrations")


def qt_imports(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n.split(".")[0] in ("PySide6", "shiboken6", "pytestqt") for n in names):
            lines.append(node.lineno)
    return lines


def test_the_checker_sees_every_form_of_a_qt_import() -> None:
    assert qt_imports("import PySide6\nfrom PySide6.QtCore import Qt\nimport os\n"
                      "import shiboken6 as s\n") == [1, 2, 4]


def test_only_console_proxy_gui_imports_pyside6() -> None:
    gui = ROOT / "console_proxy" / "gui"
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
                 if gui not in path.parents
                 for line in qt_imports(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_console_the_client_and_the_proxy_load_without_qt() -> None:
    code = ("import sys, console_proxy.console.main, console_proxy.client, "
            "console_proxy.main, console_proxy.proxy\n"
            "assert not [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))]")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_gui_without_pyside6_says_to_install_the_console_extra(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "PySide6"] + ["PySide6"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "console_proxy.gui.app", raising=False)
    term = Terminal(io.StringIO(), io.StringIO(), io.StringIO(), interactive=False)
    code = main(["gui", "--proxy", "https://127.0.0.1:1"], terminal=term,
                env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)})
    err = term.stderr.getvalue()  # type: ignore[attr-defined]
    assert code == Exit.USAGE
    assert "the desktop console needs PySide6" in err
    assert "install mepl[console]: pip install 'mepl[console]'" in err


def test_mdm_console_lists_the_gui_command(capsys: pytest.CaptureFixture[str]) -> None:
    term = Terminal(io.StringIO(), io.StringIO(), io.StringIO(), interactive=False)
    assert main(["--help"], terminal=term) == 0
    assert "the desktop console (install mepl[console])" in capsys.readouterr().out


def test_gui_fills_the_sign_in_dialog_from_the_settings_and_the_passphrase_variable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, qapp: object) -> None:
    from PySide6.QtWidgets import QDialog

    from console_proxy.gui.signin import SignInDialog

    shown: list[tuple[str, str, str, str]] = []

    def exec_(dialog: SignInDialog) -> int:
        shown.append((dialog.proxy.text(), dialog.identity_file.text(), dialog.ca_file.text(),
                      dialog.passphrase.text()))
        return QDialog.DialogCode.Rejected.value

    monkeypatch.setattr(SignInDialog, "exec", exec_)
    term = Terminal(io.StringIO(), io.StringIO(), io.StringIO(), interactive=False)
    code = main(["gui", "--proxy", "https://proxy:8443", "--identity", "/id/alice.p12",
                 "--ca", "/id/ca.pem"], terminal=term,
                env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
                     "MDM_CONSOLE_PASSPHRASE": "s3cret"})
    assert code == Exit.OK  # cancelled sign-in: nothing to do
    assert shown == [("https://proxy:8443", "/id/alice.p12", "/id/ca.pem", "s3cret")]
