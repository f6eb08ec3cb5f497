"""The signed-SMS wire format, keys, certificates, counters and the reference handset.

Pure code: no I/O beyond key files (:mod:`signing.keyfiles`,
:mod:`signing.keystore`), and no import of any other package of ours.  The
wire format is specified in docs/wire-format.md.
"""

from __future__ import annotations

from signing.alerts import Alert, AlertType, make_alert
from signing.commands import Command, Opcode, ReplyStatus, make_command, rotate_key_command
from signing.config import SigningConfig
from signing.counters import CounterWindow
from signing.errors import (
    BundleError,
    EncodingError,
    FrameRejected,
    KeyFileError,
    Reason,
    SigningError,
)
from signing.frames import (
    AlertHeader,
    CommandFrame,
    OpenedAlert,
    Reply,
    ReplyHeader,
    open_alert,
    open_command,
    open_reply,
    peek_alert,
    peek_frame,
    peek_reply,
    seal_alert,
    seal_command,
    seal_reply,
)
from signing.handset import Handset, Outcome
from signing.keys import SigningKey, VerifyKey, device_key_id
from signing.provisioning import ProvisioningBundle, parse_bundle

__all__ = [
    "Alert",
    "AlertHeader",
    "AlertType",
    "BundleError",
    "Command",
    "CommandFrame",
    "CounterWindow",
    "EncodingError",
    "FrameRejected",
    "Handset",
    "KeyFileError",
    "Opcode",
    "OpenedAlert",
    "Outcome",
    "ProvisioningBundle",
    "Reason",
    "Reply",
    "ReplyHeader",
    "ReplyStatus",
    "SigningConfig",
    "SigningError",
    "SigningKey",
    "VerifyKey",
    "device_key_id",
    "make_alert",
    "make_command",
    "open_alert",
    "open_command",
    "open_reply",
    "parse_bundle",
    "peek_alert",
    "peek_frame",
    "peek_reply",
    "rotate_key_command",
    "seal_alert",
    "seal_command",
    "seal_reply",
]
