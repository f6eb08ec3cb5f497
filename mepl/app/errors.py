"""The errors of the use cases: one hierarchy every front end maps to its own replies.

A use case raises one of these, and nothing else, for a request it will not
carry out; its transaction is then rolled back, so nothing of it (its audit
row included) is written.  Failures of the store itself
(:class:`~blobstore.errors.StoreUnavailableError`, database errors) are not
wrapped: they are "try again later", not an answer about the request.

=====================  ===================================  ===============
error                  meaning                              e.g. HTTP
=====================  ===================================  ===============
:class:`InvalidRequest`  the input cannot be read or is out    400
                       of range (``field`` names it)
:class:`NotFound`       no such device, group or command     404
:class:`Conflict`       it exists already                    409
:class:`Refused`        understood, but not allowed in the   409
                       present state (a retired device, a
                       command already sent)
:class:`NeedsConfirmation`  allowed only when confirmed         428
                       (``reach`` devices would be hit)
=====================  ===================================  ===============
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from blobstore.errors import (
    AmbiguousDeviceError,
    DeviceNotFoundError,
    DuplicateDeviceError,
    DuplicateGroupError,
    GroupNotFoundError,
)
from blobstore.identity import IdentityError

# The subclasses are named as the answer a front end gives (N818 would have
# them end in "Error": "NotFoundError" says less).


class AppError(Exception):
    """Base of the use cases' refusals; ``str()`` is a message for the operator."""


class InvalidRequest(AppError):  # noqa: N818 - named as the answer
    """The request cannot be read; ``field`` names the input at fault (or None)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(AppError):  # noqa: N818 - named as the answer
    """The device, group or command asked for does not exist."""


class Conflict(AppError):  # noqa: N818 - named as the answer
    """What the request would create exists already."""


class Refused(AppError):  # noqa: N818 - named as the answer
    """A valid request the present state does not allow."""


class NeedsConfirmation(Refused):
    """A request that must be confirmed (``confirm=True``): it would reach ``reach`` devices."""

    def __init__(self, message: str, *, reach: int) -> None:
        super().__init__(message)
        self.reach = reach


@contextmanager
def store_errors(field: str | None = None) -> Iterator[None]:
    """Translate the store's errors about the data into :class:`AppError`.

    ``field`` names the input an unreadable identifier came from.
    """
    try:
        yield
    except IdentityError as exc:
        raise InvalidRequest(str(exc), field=field) from exc
    except AmbiguousDeviceError as exc:
        raise InvalidRequest(str(exc), field=field) from exc
    except (DeviceNotFoundError, GroupNotFoundError) as exc:
        raise NotFound(str(exc)) from exc
    except (DuplicateDeviceError, DuplicateGroupError) as exc:
        raise Conflict(str(exc)) from exc
