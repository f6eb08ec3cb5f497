"""The error hierarchy of :mod:`signing`.

:class:`FrameRejected` is raised for every frame that fails a check; its
``reason`` is a :class:`Reason` (stable snake_case values, used in the test
vectors and on the command line).  :class:`SigningError` is our side being
wrong: an argument that cannot be encoded, a key that is missing.
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why a frame was rejected (the values appear in docs/wire-format.md)."""

    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    UNSUPPORTED_VERSION = "unsupported_version"
    WRONG_FRAME_TYPE = "wrong_frame_type"
    UNTRUSTED_SENDER = "untrusted_sender"
    UNKNOWN_KEY = "unknown_key"
    WRONG_DEVICE = "wrong_device"
    WRONG_COMMAND = "wrong_command"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    COUNTER_TOO_OLD = "counter_too_old"
    UNKNOWN_OPCODE = "unknown_opcode"
    MALFORMED = "malformed"


class SigningError(Exception):
    """Base of every error raised by :mod:`signing`."""


class FrameRejected(SigningError):  # noqa: N818 (name fixed by the design brief)
    """A received frame failed a check; nothing in it may be acted upon."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class EncodingError(SigningError, ValueError):
    """A value cannot be encoded into a frame (out of range, too long, unknown name)."""


class KeyFileError(SigningError):
    """A key file is missing, unreadable, unsafe (readable by others) or undecryptable."""


class BundleError(SigningError, ValueError):
    """A provisioning bundle is malformed or its certificates do not verify."""
