"""The ``[admin]`` configuration section: where the admin API listens and whom it trusts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ADMIN_SOCKET = Path("admin") / "admin.sock"
"""The default socket, under the state directory."""


@dataclass(frozen=True)
class AdminConfig:
    """Where the admin API listens, and the proxy keys its assertions are checked with.

    The API starts only when ``assertion_keys`` lists at least one public key
    (PEM, Ed25519; several for a key roll-over): without one no request could
    ever be accepted.  It listens on the UNIX socket ``socket`` (default
    ``STATE_DIR/admin/admin.sock``; directory mode 0750, socket 0660) or,
    with ``listen = "host:port"``, on TCP, and then only with TLS
    (``tls_cert``, ``tls_key``) and a client certificate signed by
    ``client_ca`` (the proxy's) required: a TCP address without them is
    refused.  An assertion is valid ``max_skew_s`` either side of its time.
    The live event stream sends a keep-alive every ``keepalive_s``, polls
    every ``poll_s`` (LISTEN/NOTIFY wakes it sooner) and drops a client that
    reads nothing for ``max_paused_s``.
    """

    assertion_keys: tuple[Path, ...] = ()
    socket: Path | None = None
    listen: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    max_skew_s: float = 30.0
    max_body_bytes: int = 1_048_576
    keepalive_s: float = 15.0
    poll_s: float = 1.0
    max_paused_s: float = 60.0

    def __post_init__(self) -> None:
        if self.listen:
            host, sep, port = self.listen.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"listen: {self.listen!r} is not host:port")
            missing = [name for name in ("tls_cert", "tls_key", "client_ca")
                       if getattr(self, name) is None]
            if missing:
                raise ValueError(
                    f"listen: the admin API on TCP ({self.listen}) needs TLS with the "
                    f"proxy's client certificate required; set {', '.join(missing)} "
                    "(admin.tls_cert, admin.tls_key, admin.client_ca), or leave listen "
                    "unset to use the UNIX socket")
        if self.max_skew_s <= 0 or self.keepalive_s <= 0 or self.poll_s <= 0:
            raise ValueError("max_skew_s, keepalive_s and poll_s must be > 0")
        if self.max_paused_s <= 0 or self.max_body_bytes < 1:
            raise ValueError("max_paused_s and max_body_bytes must be > 0")

    @property
    def enabled(self) -> bool:
        """Whether the API starts (at least one assertion key is configured)."""
        return bool(self.assertion_keys)

    @property
    def tcp(self) -> tuple[str, int] | None:
        """``listen`` as (host, port), or None for the UNIX socket."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def socket_path(self, state_dir: Path) -> Path:
        """The UNIX socket's path."""
        return self.socket if self.socket is not None else state_dir / ADMIN_SOCKET
