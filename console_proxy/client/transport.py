"""HTTPS to the console proxy: a small pool of keep-alive TLS connections, usable from any thread.

Every failure below HTTP becomes a :class:`~console_proxy.client.errors.ConnectionProblem`
that names its cause: the proxy unreachable, its certificate not trusted,
or the admin's certificate refused in the handshake (expired, revoked,
issued by another CA, missing).  With TLS 1.3 the server judges the client
certificate after the client considers the handshake done, so a refusal can
surface on the first read; it is mapped the same way.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from console_proxy.client.errors import (
    ConnectionProblem,
    ConsoleError,
    HandshakeRefused,
    ProxyUnreachable,
    ServerNotTrusted,
)

DEFAULT_PORT = 8443
"""The proxy's port when the URL names none."""

_MAX_IDLE = 4

_NEW_IDENTITY = ("ask the deployment's administrator for a new identity "
                 "(mepl pki issue-admin --name NAME --role ROLE)")

# OpenSSL alert reasons the proxy's refusal arrives as -> (reason, what happened, hint).
_ALERTS: tuple[tuple[str, str, str, str], ...] = (
    ("CERTIFICATE_EXPIRED", "expired", "the proxy refused your certificate: it has expired",
     _NEW_IDENTITY),
    ("CERTIFICATE_REVOKED", "revoked", "the proxy refused your certificate: it has been revoked",
     _NEW_IDENTITY),
    ("UNKNOWN_CA", "unknown_ca",
     "the proxy refused your certificate: it was not issued by this deployment's admin CA",
     "use the identity issued for this deployment (check --identity and --proxy)"),
    ("CERTIFICATE_REQUIRED", "no_certificate",
     "the proxy refused the connection: it requires a client certificate",
     "give your identity with --identity FILE.p12 (or --cert and --key)"),
    ("BAD_CERTIFICATE", "bad_certificate",
     "the proxy refused your certificate (bad certificate)", _NEW_IDENTITY),
    ("UNSUPPORTED_CERTIFICATE", "bad_certificate",
     "the proxy refused your certificate (unsupported certificate)", _NEW_IDENTITY),
    ("ACCESS_DENIED", "bad_certificate", "the proxy refused your certificate (access denied)",
     _NEW_IDENTITY),
)


@dataclass(frozen=True)
class Endpoint:
    """Where the proxy is: ``https://host[:port][/prefix]``."""

    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse the proxy URL; only ``https`` is accepted."""
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme != "https" or not parts.hostname:
            raise ConsoleError(f"the proxy URL {url!r} is not https://HOST[:PORT]",
                               "give it as --proxy https://host:8443")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ConsoleError(f"the proxy URL {url!r} has a bad port",
                               "give it as --proxy https://host:8443") from None
        return cls(parts.hostname, port, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        """The URL, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{self.prefix}"


@dataclass(frozen=True)
class Response:
    """A whole HTTP answer: status, headers (lower-case names), body, the proxy's request id."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        """The ``X-Request-Id`` the proxy returned."""
        return self.headers.get("x-request-id")


def map_tls_error(exc: BaseException, endpoint: Endpoint, *,
                  answered: bool = False) -> ConnectionProblem:
    """The :class:`ConnectionProblem` naming the cause of ``exc`` (an OSError from the socket).

    ``answered``: the connection had already served a request (a close then
    is not a refusal of the certificate).
    """
    where = endpoint.url
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ServerNotTrusted(
            f"the proxy at {where} is not trusted: {exc.verify_message or exc.reason}",
            "--ca must be the deployment's CA certificate, the one that signed the proxy's "
            "server certificate, and --proxy must name the host in that certificate")
    closed = isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError)
    if isinstance(exc, ssl.SSLError) and not closed:
        reason = str(exc.reason or exc)
        for marker, code, message, hint in _ALERTS:
            if marker in reason.upper():
                return HandshakeRefused(message, hint, reason=code)
        return HandshakeRefused(f"TLS with the proxy at {where} failed: {reason}",
                                "check --proxy (it must be the console proxy's TLS port)")
    if isinstance(exc, socket.gaierror):
        return ProxyUnreachable(f"cannot resolve the proxy's host {endpoint.host}",
                                "check the host name given with --proxy")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ProxyUnreachable(f"the proxy at {where} did not answer in time",
                                "check --proxy, the network, and that mdm-proxy runs")
    if isinstance(exc, ConnectionRefusedError):
        return ProxyUnreachable(f"cannot reach the proxy at {where}: connection refused",
                                "check --proxy and that mdm-proxy runs there")
    if not answered and isinstance(exc, ConnectionResetError | BrokenPipeError | EOFError
                                   | http.client.RemoteDisconnected | ssl.SSLError):
        return HandshakeRefused(
            f"the proxy at {where} closed the connection without answering: it refused the "
            "connection (most likely your certificate: expired, revoked or from another CA)",
            "check your identity (mdm-console whoami) and ask the proxy's administrator")
    return ProxyUnreachable(f"the connection to the proxy at {where} failed: {exc}",
                            "check --proxy and the network, then try again")


class Transport:
    """Thread-safe HTTPS requests to one proxy, reusing idle TLS connections.

    ``before_connect`` runs before each new TLS connection (the client
    checks the certificate's validity there).
    """

    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext, *, timeout: float = 30.0,
                 before_connect: Callable[[], None] | None = None) -> None:
        self.endpoint = endpoint
        self.context = context
        self.timeout = timeout
        self._before_connect = before_connect
        self._idle: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def connect(self, timeout: float | None = None) -> http.client.HTTPSConnection:
        """A new TLS connection, handshake done (mapped errors)."""
        if self._before_connect is not None:
            self._before_connect()
        conn = http.client.HTTPSConnection(self.endpoint.host, self.endpoint.port,
                                           timeout=self.timeout if timeout is None else timeout,
                                           context=self.context)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise self.failure(exc) from None
        return conn

    def failure(self, exc: BaseException, *, answered: bool = False) -> ConnectionProblem:
        """The problem ``exc`` shows; a connection closed without a word is probed once.

        With TLS 1.3 a request written right after the handshake can race
        the proxy's refusal of the certificate, and the alert saying why is
        lost with the connection.  A second connection that only listens
        receives it, so the message can name the cause (expired, revoked,
        foreign CA).  This runs only on that failure path.
        """
        problem = map_tls_error(exc, self.endpoint, answered=answered)
        if isinstance(problem, HandshakeRefused) and problem.reason == "unknown":
            return self._probe() or problem
        return problem

    def _probe(self) -> ConnectionProblem | None:
        try:
            raw = socket.create_connection((self.endpoint.host, self.endpoint.port),
                                           timeout=min(self.timeout, 5.0))
        except OSError:
            return None
        try:
            with self.context.wrap_socket(raw, server_hostname=self.endpoint.host) as tls:
                tls.settimeout(min(self.timeout, 2.0))
                tls.recv(1)
        except OSError as exc:
            found = map_tls_error(exc, self.endpoint)
            if isinstance(found, HandshakeRefused) and found.reason != "unknown":
                return found
        finally:
            raw.close()
        return None

    def _take_idle(self) -> http.client.HTTPSConnection | None:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                sock = conn.sock
                # An idle connection the proxy closed reads as ready (EOF): drop it.
                if sock is not None and not select.select([sock], [], [], 0)[0]:
                    return conn
                conn.close()
        return None

    def _put_idle(self, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """Send one request and read the whole answer.

        An idle connection the proxy dropped meanwhile is retried on a new
        one for a GET; a POST is never sent twice.
        """
        if self._closed:
            raise ConsoleError("the client is closed", "open a new client")
        conn = self._take_idle()
        if conn is not None:
            try:
                return self._exchange(conn, method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if method != "GET":
                    raise self.failure(exc, answered=True) from None
        conn = self.connect()
        try:
            return self._exchange(conn, method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self.failure(exc) from None

    def _exchange(self, conn: http.client.HTTPSConnection, method: str, path: str,
                  body: bytes | None, headers: Mapping[str, str] | None) -> Response:
        conn.request(method, self.endpoint.prefix + path, body=body, headers=dict(headers or {}))
        answer = conn.getresponse()
        data = answer.read()
        result = Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        if answer.will_close:
            conn.close()
        else:
            self._put_idle(conn)
        return result

    def close(self) -> None:
        """Close the idle connections; further requests fail."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
