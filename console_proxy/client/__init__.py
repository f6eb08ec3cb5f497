"""The client library of the admin channel, shared by ``mdm-console`` and the desktop console.

It talks to the admin API through the console proxy over mutual TLS, as the
admin whose identity (PKCS#12 or PEM certificate and key) it presents::

    identity = Identity.from_pkcs12("alice.p12", passphrase)
    with Client.connect("https://proxy:8443", identity, "ca.pem", clock=now) as client:
        device = client.get_device("+44 7700 900123")
        result = client.send_command("lock", device_target(device.imei))
        for event in client.events():          # stop() from another thread ends it
            ...

Calls block; they are thread-safe, so a UI runs them on worker threads
(:meth:`Client.submit`).  Errors are :class:`ConsoleError` subclasses with a
message and a hint; answers of the API also carry the code and request id.
The package imports nothing of MEPL: it knows the API only by its wire.
"""

from console_proxy.client.api import (
    Client,
    device_target,
    fleet_target,
    group_target,
    is_destructive,
)
from console_proxy.client.errors import (
    ApiError,
    AuditUnavailable,
    CertificateExpired,
    Conflict,
    ConnectionProblem,
    ConsoleError,
    Forbidden,
    HandshakeRefused,
    IdentityProblem,
    InternalError,
    InvalidRequest,
    NotFound,
    ProtocolError,
    ProxyUnreachable,
    RateLimited,
    ServerNotTrusted,
    Unauthenticated,
    UpstreamUnavailable,
    WrongPassphrase,
)
from console_proxy.client.events import Backoff, EventStream
from console_proxy.client.identity import ROLES, Identity, client_context
from console_proxy.client.models import (
    Alert,
    Approval,
    AuditEntry,
    Command,
    CommandEvent,
    Device,
    Event,
    FanoutProgress,
    Group,
    Message,
    Page,
    Queued,
    SendResult,
    WhoAmI,
)

__all__ = [
    "ROLES",
    "Alert",
    "ApiError",
    "Approval",
    "AuditEntry",
    "AuditUnavailable",
    "Backoff",
    "CertificateExpired",
    "Client",
    "Command",
    "CommandEvent",
    "Conflict",
    "ConnectionProblem",
    "ConsoleError",
    "Device",
    "Event",
    "EventStream",
    "FanoutProgress",
    "Forbidden",
    "Group",
    "HandshakeRefused",
    "Identity",
    "IdentityProblem",
    "InternalError",
    "InvalidRequest",
    "Message",
    "NotFound",
    "Page",
    "ProtocolError",
    "ProxyUnreachable",
    "Queued",
    "RateLimited",
    "SendResult",
    "ServerNotTrusted",
    "Unauthenticated",
    "UpstreamUnavailable",
    "WhoAmI",
    "WrongPassphrase",
    "client_context",
    "device_target",
    "fleet_target",
    "group_target",
    "is_destructive",
]
