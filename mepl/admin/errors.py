"""The admin API's error answers: ``{"error": {"code", "message", "hint"[, "field"]}}``."""

from __future__ import annotations

from typing import Any

STATUS = {"invalid_request": 400, "unauthenticated": 401, "forbidden": 403,
          "not_found": 404, "conflict": 409, "audit_unavailable": 503, "internal": 500}
"""The HTTP status of each error code the API answers with."""

HINTS = {
    "invalid_request": "correct the named field and send the request again",
    "unauthenticated": "connect through the console proxy with a valid admin certificate",
    "forbidden": "ask an administrator with the role this operation needs",
    "not_found": "check the identifier (IMEI, IMSI or phone number) or id",
    "conflict": "look at the current state (GET it) before trying again",
    "audit_unavailable": "the request was not carried out; try again when the database "
                         "is back",
    "internal": "the request failed on the server; the server log has the details",
}

UNAUTHENTICATED_MESSAGE = "the request is not authenticated"


class ApiError(Exception):
    """A request answered with an error: ``code`` (see :data:`STATUS`), message, field."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 hint: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.hint = hint or HINTS.get(code, "")
        self.reason = reason or code

    @property
    def status(self) -> int:
        """The HTTP status."""
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def unauthenticated(reason: str) -> ApiError:
    """The one 401 answer, whatever failed (``reason`` goes to the audit and log only)."""
    return ApiError("unauthenticated", UNAUTHENTICATED_MESSAGE, reason=reason)
