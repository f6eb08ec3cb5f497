"""What can go wrong between a console and the admin API, as exceptions a front end can show.

Every exception here carries a ``message`` (what happened) and a ``hint``
(what to do about it), so a command-line or desktop console prints them as
they are.  Two families:

- :class:`ApiError` and its subclasses: the proxy or the admin API answered
  with the contract's error shape ``{"error": {"code", "message", "hint"}}``;
  they carry the HTTP status, the machine ``code``, the ``field`` of an
  invalid request and the ``request_id`` the proxy returned.
- :class:`ConnectionProblem` and :class:`IdentityProblem`: nothing was
  answered, because the proxy could not be reached, the TLS handshake was
  refused (by either side), or the admin's own identity could not be used.
"""

from __future__ import annotations

from typing import Any


class ConsoleError(Exception):
    """Base of every error the client library raises on purpose."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class IdentityProblem(ConsoleError):  # noqa: N818 - named as the answer
    """The admin's identity (PKCS#12 bundle, or PEM certificate and key) cannot be used."""


class WrongPassphrase(IdentityProblem):
    """The passphrase does not open the PKCS#12 bundle or the encrypted key."""


class CertificateExpired(IdentityProblem):
    """The admin's certificate is outside its validity period (seen before connecting)."""


class ConnectionProblem(ConsoleError):  # noqa: N818 - named as the answer
    """No answer from the admin API: the proxy is unreachable, or TLS failed."""


class ProxyUnreachable(ConnectionProblem):
    """The proxy's address could not be reached (refused, timed out, unknown host)."""


class ServerNotTrusted(ConnectionProblem):
    """The proxy's certificate did not verify against the CA the console was given."""


class HandshakeRefused(ConnectionProblem):
    """The proxy refused the admin's certificate during the TLS handshake.

    ``reason`` is one of ``expired``, ``revoked``, ``unknown_ca``,
    ``no_certificate``, ``bad_certificate`` or ``unknown`` (the proxy closed
    the connection without saying why).
    """

    def __init__(self, message: str, hint: str = "", *, reason: str = "unknown") -> None:
        super().__init__(message, hint)
        self.reason = reason


class ProtocolError(ConnectionProblem):
    """The other side answered something that is not the contract (not JSON, wrong shape)."""

    def __init__(self, message: str, hint: str = "", *, status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.request_id = request_id


class ApiError(ConsoleError):
    """A non-2xx answer in the contract's error shape.

    ``status``: the HTTP status; ``code``: the machine code (``forbidden``,
    ``not_found``...); ``field``: the offending field of an
    ``invalid_request``; ``request_id``: the ``X-Request-Id`` of the answer
    (quote it to whoever reads the audit); ``body``: the whole decoded body.
    """

    def __init__(self, status: int, code: str, message: str, hint: str = "", *,
                 field: str | None = None, request_id: str | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code
        self.field = field
        self.request_id = request_id
        self.body = body if body is not None else {}


class InvalidRequest(ApiError):  # noqa: N818 - named as the answer
    """400 ``invalid_request``: a bad argument, named by ``field``."""


class Unauthenticated(ApiError):  # noqa: N818 - named as the answer
    """401 ``unauthenticated``: the API refused the proxy's assertion."""


class Forbidden(ApiError):  # noqa: N818 - named as the answer
    """403 ``forbidden``: the admin's role may not do this."""


class NotFound(ApiError):  # noqa: N818 - named as the answer
    """404 ``not_found``: no such device, command, group, approval..."""


class Conflict(ApiError):  # noqa: N818 - named as the answer
    """409 ``conflict``: e.g. approving one's own request, an expired approval."""


class RateLimited(ApiError):  # noqa: N818 - named as the answer
    """429 ``rate_limited``: the proxy's per-admin rate limit."""


class AuditUnavailable(ApiError):  # noqa: N818 - named as the answer
    """503 ``audit_unavailable``: the audit could not be written, so nothing was done."""


class UpstreamUnavailable(ApiError):  # noqa: N818 - named as the answer
    """502 ``upstream_unavailable``: the proxy could not reach the admin API."""


class InternalError(ApiError):
    """500 ``internal`` (or any other unexpected code)."""


_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_request": InvalidRequest,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
    "rate_limited": RateLimited,
    "audit_unavailable": AuditUnavailable,
    "upstream_unavailable": UpstreamUnavailable,
    "internal": InternalError,
}

_BY_STATUS: dict[int, str] = {
    400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    409: "conflict", 429: "rate_limited", 502: "upstream_unavailable",
    503: "audit_unavailable",
}


def api_error(status: int, body: Any, request_id: str | None) -> ApiError:
    """The exception for a non-2xx answer ``body`` (decoded JSON, or None if it was not JSON).

    An answer that is not in the contract's shape still gives an
    :class:`ApiError`, with the code guessed from the status.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code = error["code"]
        message = str(error.get("message") or code)
        hint = str(error.get("hint") or "")
        field = error.get("field")
        field = field if isinstance(field, str) else None
    else:
        code = _BY_STATUS.get(status, "internal")
        message = f"the server answered HTTP {status} without an error description"
        hint, field = "", None
    cls = _BY_CODE.get(code, InternalError)
    return cls(status, code, message, hint, field=field, request_id=request_id,
               body=body if isinstance(body, dict) else None)
