"""The admin channel of ``mepl demo``: PKI, console proxy, and one drive through it.

Created once in ``STATE_DIR/pki`` (kept across runs): the deployment's admin
CA (key unencrypted, mode 0600 in a 0700 directory: a demo runs unattended),
the assertion key pair, a server certificate for 127.0.0.1 and localhost, and
two admin identities, ``demo-admin`` and ``demo-approver`` (PKCS#12 bundles
with their passphrase files, mode 0600, next to them).  Each run regenerates
the CRL (it has a next-update date), writes one ``mdm-console`` configuration
per identity in ``STATE_DIR/console`` and starts the proxy on 127.0.0.1.
:func:`drive` then uses the client library, as an admin would, through the
real proxy: whoami, find a device by its national phone number, send a status
query and wait until the handset answered.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError

from console_proxy import pki
from console_proxy.client import Client, Identity, device_target
from console_proxy.config import Listen, ProxyConfig, UpstreamConfig
from console_proxy.pkifiles import ensure_private_dir
from console_proxy.service import ProxyService

DEPLOYMENT = "mepl-demo"
ADMINS = (("demo-admin", "admin"), ("demo-approver", "admin"))
SERVER_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_PROXY_PORT = 8443
FINISHED = ("done", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class AdminIdentityFiles:
    """One admin's files: the PKCS#12 bundle, its passphrase, the console configuration."""

    name: str
    role: str
    bundle: Path
    passphrase_file: Path
    console_config: Path

    def identity(self) -> Identity:
        """The identity, opened with its passphrase file."""
        return Identity.from_pkcs12(self.bundle, self.passphrase_file.read_bytes().strip())


@dataclass(frozen=True)
class AdminPki:
    """The demo's PKI directory and what the proxy and the consoles need from it."""

    directory: Path
    state_dir: Path
    server_cert: Path
    server_key: Path
    admins: tuple[AdminIdentityFiles, ...]

    @property
    def ca(self) -> Path:
        """The admin CA's certificate (also the proxy's server CA)."""
        return self.directory / pki.CA_CERT

    @property
    def assertion_pub(self) -> Path:
        """The proxy's assertion public key, which the admin API trusts."""
        return self.directory / pki.ASSERTION_PUB

    @property
    def socket(self) -> Path:
        """The admin API's UNIX socket."""
        return self.state_dir / "admin" / "admin.sock"


def _passphrase() -> bytes:
    # Mixed classes by construction, so pki.check_passphrase always accepts it.
    return f"Demo-{secrets.token_urlsafe(18)}".encode()


def _write_secret(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # left by a run that stopped before issuing the bundle
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")


def ensure_admin_pki(state_dir: Path, now: datetime) -> AdminPki:
    """Create what is missing of the demo's PKI in ``state_dir/pki``; refresh the CRL."""
    directory = state_dir / "pki"
    if not (directory / pki.CA_CERT).exists():
        pki.init_ca(directory, deployment=DEPLOYMENT, passphrase=None, now=now)
    else:
        pki.make_crl(directory, passphrase=None, now=now)
    issued = directory / pki.ISSUED_DIR
    ensure_private_dir(issued)
    server_cert = issued / f"server-{SERVER_HOSTS[0]}.pem"
    server_key = issued / f"server-{SERVER_HOSTS[0]}.key"
    if not server_cert.exists():
        pki.issue_server(directory, SERVER_HOSTS, ca_passphrase=None, now=now)
    admins = []
    for name, role in ADMINS:
        files = AdminIdentityFiles(name, role, issued / f"{name}.p12",
                                   issued / f"{name}.passphrase",
                                   state_dir / "console" / f"{name}.toml")
        if not files.bundle.exists():
            secret = _passphrase()
            _write_secret(files.passphrase_file, secret)
            pki.issue_admin(directory, name, role, ca_passphrase=None,
                            bundle_passphrase=secret, now=now)
        admins.append(files)
    return AdminPki(directory, state_dir, server_cert, server_key, tuple(admins))


def write_console_configs(files: AdminPki, proxy_url: str) -> None:
    """One ``mdm-console --config`` file per demo identity (rewritten: the port may change)."""
    for admin in files.admins:
        admin.console_config.parent.mkdir(parents=True, exist_ok=True)
        admin.console_config.write_text(
            f"# mdm-console settings for {admin.name} ({admin.role}), written by mepl demo\n"
            f"proxy = \"{proxy_url}\"\n"
            f"identity = \"{admin.bundle.resolve()}\"\n"
            f"passphrase_file = \"{admin.passphrase_file.resolve()}\"\n"
            f"ca = \"{files.ca.resolve()}\"\n", encoding="utf-8")


def proxy_config(files: AdminPki, port: int) -> ProxyConfig:
    """The proxy in front of the demo's admin API socket, on 127.0.0.1:``port``."""
    return ProxyConfig(
        name="demo-proxy", listen=Listen("127.0.0.1", port),
        server_cert=files.server_cert, server_key=files.server_key, client_ca=files.ca,
        crl=files.directory / pki.CRL_FILE,
        assertion_key=files.directory / pki.ASSERTION_KEY,
        upstream=UpstreamConfig(socket=files.socket), reload_check_s=1.0,
        rate_per_s=50.0, burst=100)


async def start_proxy(files: AdminPki, reactor: Any, port: int | None) -> ProxyService:
    """Start the proxy on ``port`` (None: 8443 if free, else any free port)."""
    try:
        service = ProxyService(proxy_config(files, DEFAULT_PROXY_PORT if port is None
                                            else port), reactor, reactor)
        await service.start()
    except CannotListenError:
        if port is not None:
            raise
        service = ProxyService(proxy_config(files, 0), reactor, reactor)
        await service.start()
    return service


def proxy_url(service: ProxyService) -> str:
    """``https://127.0.0.1:PORT`` of a started proxy."""
    return f"https://127.0.0.1:{service.port.getHost().port}"


def drive(url: str, files: AdminPki, phone: str, region: str, timeout: float,
          say: Callable[[str], None], clock: Callable[[], datetime]) -> bool:
    """Blocking (run it on a thread): the admin path through the proxy, as ``demo-admin``.

    whoami, the device found by ``phone`` as written nationally in ``region``, a
    status query sent to it, then its command polled until finished.  True when
    it is done."""
    admin = files.admins[0]
    with Client.connect(url, admin.identity(), files.ca, clock=clock) as client:
        who = client.whoami()
        say(f"admin: whoami through the proxy: {who.name} ({who.role}), "
            f"certificate {who.fingerprint[:16]}...")
        device = client.get_device(phone, region=region)
        say(f"admin: found device {device.imei} by its national number {phone[:5]}*****")
        sent = client.send_command("status_query", device_target(device.imei),
                                   args={"features": "battery,lock_state"})
        if sent.queued is None or sent.queued.command_id is None:
            say("admin: the status query was not queued")
            return False
        command_id = sent.queued.command_id
        deadline = time.monotonic() + timeout
        while True:
            command = client.get_command(command_id)
            if command.state in FINISHED or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        steps = " -> ".join(e.to_state or e.event for e in command.history)
        say(f"admin: status query {command_id} through the proxy: {command.state} ({steps})")
        return command.state == "done"


def console_lines(files: AdminPki, imei: str) -> list[str]:
    """The ``mdm-console`` lines to try against the running demo."""
    config = files.admins[0].console_config
    base = f"mdm-console --config {config}"
    return [f"{base} whoami", f"{base} devices list",
            f"{base} send lock --device {imei}", f"{base} history {imei}", f"{base} watch"]


def stop_proxy(service: ProxyService | None) -> Deferred[None]:
    """Stop the proxy if it started."""
    if service is None:
        return Deferred.fromCoroutine(_nothing())
    return Deferred.fromCoroutine(service.stop())


async def _nothing() -> None:
    return None
