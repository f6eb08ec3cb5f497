"""The error hierarchy of :mod:`blobstore`.

``StoreUnavailableError`` is the one callers map to "try again later" (HTTP 503,
a temporary SMPP error): the database could not be reached, or a transaction
kept failing on serialization conflicts, after the configured retries.  The
others are about the data and will not succeed on retry.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by :mod:`blobstore`."""


class StoreUnavailableError(StoreError):
    """The database is unreachable or kept conflicting; the work was not done."""

    def __init__(self, desc: str, attempts: int, cause: BaseException) -> None:
        super().__init__(f"{desc}: store unavailable after {attempts} attempt(s): {cause}")
        self.desc = desc
        self.attempts = attempts
        self.cause = cause


class SchemaOutOfDateError(StoreError):
    """The database schema is not the one this code needs."""

    def __init__(self, current: str | None, head: str) -> None:
        shown = current or "empty (no schema)"
        super().__init__(
            f"database schema is at {shown}, this mepl needs {head}: run `mepl db upgrade`"
        )
        self.current = current
        self.head = head


class DeviceNotFoundError(StoreError):
    """No device matches the identifier."""


class AmbiguousDeviceError(StoreError):
    """Several devices match the identifier (for example a shared phone number)."""


class DuplicateDeviceError(StoreError):
    """A device with this IMEI is already registered."""


class GroupNotFoundError(StoreError):
    """No group has this name."""


class DuplicateGroupError(StoreError):
    """A group with this name already exists."""


class DuplicateMessageError(StoreError):
    """A message with the same (direction, link, external_id) is already stored."""

    def __init__(self, existing_id: int) -> None:
        super().__init__(f"duplicate of stored message {existing_id}")
        self.existing_id = existing_id


class InvalidTransitionError(StoreError):
    """A command cannot move from its current state to the requested one."""
