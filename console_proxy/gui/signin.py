"""Signing in: the admin's PKCS#12 identity, its passphrase, and the proxy that is asked who we are.

The dialog opens the identity (the certificate's name, role, deployment and
expiry are shown as soon as it opens), refuses an expired one with the date,
then asks the proxy ``whoami`` on a worker thread: only an answer proves the
proxy accepted the certificate (a revoked or foreign certificate is refused
in the TLS handshake, and the message says which).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console_proxy.client import Client, ConsoleError, Identity
from console_proxy.client.models import WhoAmI
from console_proxy.gui.tasks import Tasks
from console_proxy.gui.wording import explain

Clock = Callable[[], datetime]


@dataclass
class Session:
    """A signed-in admin: the client, the identity, who the API says we are, and the clock."""

    client: Client
    identity: Identity
    me: WhoAmI
    clock: Clock

    @property
    def role(self) -> str:
        """The role the API granted (``viewer``, ``operator``, ``admin``)."""
        return self.me.role or self.identity.role

    @property
    def summary(self) -> str:
        """``alice (admin) · Test Fleet · certificate expires 2026-06-01 · https://...``."""
        return (f"{self.me.name} ({self.role}) · {self.identity.organisation} · certificate "
                f"expires {self.identity.not_after:%Y-%m-%d %H:%M} UTC · "
                f"{self.client.endpoint.url}")

    def close(self) -> None:
        """Close the client's connections and worker threads."""
        self.client.close()


def describe_identity(identity: Identity) -> str:
    """The certificate as shown before connecting: name, role, deployment, expiry."""
    return (f"{identity.name} — role {identity.role or '?'} — {identity.organisation or '?'}"
            f" — expires {identity.not_after:%Y-%m-%d %H:%M} UTC")


class SignInDialog(QDialog):
    """Proxy address, identity file, CA file and passphrase; accepted once the proxy answers.

    After acceptance :attr:`session` holds the signed-in :class:`Session`.
    ``message`` shows what went wrong (wrong passphrase, expired, revoked,
    foreign CA, unreachable proxy), ``certificate`` the identity's name,
    role and expiry.
    """

    def __init__(self, clock: Clock, *, proxy: str = "", identity: str = "", ca: str = "",
                 passphrase: str = "", timeout: float = 30.0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign in — MEPL desktop console")
        self._clock = clock
        self._timeout = timeout
        self.session: Session | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdm-signin")
        self._tasks = Tasks(self._pool.submit, self)
        self._client: Client | None = None

        self.proxy = QLineEdit(proxy)
        self.proxy.setPlaceholderText("https://mdm-proxy.example.net:8443")
        self.identity_file = QLineEdit(identity)
        self.identity_file.setPlaceholderText("your PKCS#12 identity, NAME.p12")
        self.ca_file = QLineEdit(ca)
        self.ca_file.setPlaceholderText("the deployment's CA certificate, ca.pem")
        self.passphrase = QLineEdit(passphrase)
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.certificate = QLabel("")
        self.certificate.setWordWrap(True)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #a40000")

        form = QFormLayout()
        form.addRow("Proxy", self.proxy)
        form.addRow("Identity", self._with_browse(self.identity_file, "PKCS#12 (*.p12 *.pfx)"))
        form.addRow("CA certificate", self._with_browse(self.ca_file, "PEM (*.pem *.crt)"))
        form.addRow("Passphrase", self.passphrase)
        form.addRow("Certificate", self.certificate)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.sign_in = self.buttons.addButton("Sign in", QDialogButtonBox.ButtonRole.AcceptRole)
        self.sign_in.setDefault(True)
        self.buttons.accepted.connect(self.try_sign_in)
        self.buttons.rejected.connect(self.reject)
        self.identity_file.editingFinished.connect(self.preview)
        self.passphrase.editingFinished.connect(self.preview)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(560, 0)

    def _with_browse(self, edit: QLineEdit, pattern: str) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        button = QPushButton("Browse…")
        button.clicked.connect(lambda: self._browse(edit, pattern))
        row.addWidget(button)
        return box

    def _browse(self, edit: QLineEdit, pattern: str) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Choose a file", edit.text(), pattern)
        if chosen:
            edit.setText(chosen)

    def preview(self) -> None:
        """Show the certificate's name, role and expiry once the identity opens (no network)."""
        path, passphrase = self.identity_file.text().strip(), self.passphrase.text()
        if not path or not passphrase:
            return
        try:
            identity = Identity.from_pkcs12(path, passphrase)
        except ConsoleError:
            self.certificate.setText("")
            return
        self.certificate.setText(describe_identity(identity))

    def _fail(self, exc: BaseException) -> None:
        self.message.setText(explain(exc).text)
        self.sign_in.setEnabled(True)
        if self._client is not None:
            self._client.close()
            self._client = None

    def try_sign_in(self) -> None:
        """Open the identity, check it, and ask the proxy who we are (on a worker thread)."""
        self.message.setText("")
        if not self.proxy.text().strip():
            self.message.setText("Give the proxy's address, https://HOST:8443.")
            return
        if not self.identity_file.text().strip():
            self.message.setText("Choose your identity file (NAME.p12).")
            return
        try:
            identity = Identity.from_pkcs12(self.identity_file.text().strip(),
                                            self.passphrase.text())
            self.certificate.setText(describe_identity(identity))
            client = Client.connect(self.proxy.text().strip(), identity,
                                    self.ca_file.text().strip() or None, clock=self._clock,
                                    timeout=self._timeout)
        except ConsoleError as exc:
            self._fail(exc)
            return
        self._client = client
        self.sign_in.setEnabled(False)
        self.message.setStyleSheet("color: palette(text)")
        self.message.setText(f"Connecting to {client.endpoint.url} …")
        self._tasks.run(client.whoami, on_done=lambda me: self._signed_in(client, identity, me),
                        on_error=self._refused)

    def _refused(self, exc: BaseException) -> None:
        self.message.setStyleSheet("color: #a40000")
        self._fail(exc)

    def _signed_in(self, client: Client, identity: Identity, me: WhoAmI) -> None:
        self.session = Session(client, identity, me, self._clock)
        self._client = None
        self.accept()

    def done(self, result: int) -> None:
        """Close the dialog; a client not handed over as a session is closed."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._pool.shutdown(wait=False)
        super().done(result)
