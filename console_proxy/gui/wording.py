"""What the desktop console says: errors as messages with what to do, targets, events, times.

The same words as ``mdm-console`` (docs/console.md, "When something goes
wrong"), so an admin who knows one knows the other.  Nothing here imports
Qt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from console_proxy.client import (
    ApiError,
    ConnectionProblem,
    ConsoleError,
    Forbidden,
    HandshakeRefused,
    IdentityProblem,
    NotFound,
    Unauthenticated,
    UpstreamUnavailable,
)

# The CLI's words, so that both consoles say the same thing.
from console_proxy.console.main import _target_text as target_text
from console_proxy.console.main import event_line
from console_proxy.console.output import cell, short_time

__all__ = ["Explained", "carrier", "cell", "event_line", "explain", "request_text",
           "short_time", "target_text"]


@dataclass(frozen=True)
class Explained:
    """An error for people: a title, what happened, what to do, and the proxy's request id."""

    title: str
    message: str
    hint: str = ""
    request_id: str | None = None

    @property
    def text(self) -> str:
        """Message, hint and request id, one per line."""
        lines = [self.message]
        if self.hint:
            lines.append(f"What to do: {self.hint}")
        if self.request_id:
            lines.append(f"Request id: {self.request_id}")
        return "\n".join(lines)


def explain(exc: BaseException, *, role: str = "?", action: str = "do this",
            subject: str = "") -> Explained:
    """``exc`` (usually a :class:`ConsoleError`) as a message that says what to do.

    ``action`` completes "your role ... may not ...", ``subject`` names what
    was looked for ("device 0770...") for a not-found answer.
    """
    if not isinstance(exc, ConsoleError):
        return Explained("Unexpected error", f"{type(exc).__name__}: {exc}",
                         "this is a defect of the console: report it with what you did")
    request_id = getattr(exc, "request_id", None)
    if isinstance(exc, Forbidden):
        return Explained("Not allowed for your role",
                         f"your role {role} may not {action}: ask an admin ({exc.message})",
                         exc.hint or "ask an admin to do it, or for an identity with a "
                                     "higher role", request_id)
    if isinstance(exc, NotFound):
        if subject.startswith("device "):
            return Explained("Unknown device", f"unknown {subject}: no device has this IMEI, "
                             f"IMSI or phone number ({exc.message})",
                             exc.hint or "check the number; the fleet view's search box finds "
                                         "devices by part of a number", request_id)
        return Explained("Not found", f"not found: {subject + ': ' if subject else ''}"
                                      f"{exc.message}", exc.hint, request_id)
    if isinstance(exc, Unauthenticated):
        return Explained("Refused by the admin API",
                         f"the admin API refused the request: {exc.message}",
                         exc.hint or "the proxy and the admin API disagree: tell their "
                                     "administrator", request_id)
    if isinstance(exc, UpstreamUnavailable):
        return Explained("No connection", f"the proxy cannot reach the admin API: "
                                          f"{exc.message}", exc.hint, request_id)
    if isinstance(exc, ApiError):
        return Explained("Refused", f"{exc.message} ({exc.code})", exc.hint, request_id)
    if isinstance(exc, HandshakeRefused):
        return Explained("Certificate refused", exc.message, exc.hint)
    if isinstance(exc, IdentityProblem):
        return Explained("Identity cannot be used", exc.message, exc.hint)
    if isinstance(exc, ConnectionProblem):
        return Explained("No connection", exc.message, exc.hint)
    return Explained("Error", exc.message, exc.hint)


def request_text(request: Mapping[str, Any]) -> str:
    """An approval's original request in words (``wipe to device ...``)."""
    command = request.get("command")
    target = request.get("target")
    if isinstance(command, str) and isinstance(target, dict):
        args = request.get("args")
        shown = (" " + " ".join(f"{k}={v}" for k, v in args.items())
                 if isinstance(args, dict) and args else "")
        return f"{command}{shown} to {target_text(target)}"
    return cell(dict(request))


def carrier(imsi: str | None) -> str:
    """The home network of an IMSI as ``MCC-MNC`` (``234-15``), or ``-``."""
    if not imsi or len(imsi) < 6 or not imsi.isdigit():
        return "-"
    # Three-digit MNCs are used in North America (MCC 3xx); elsewhere two digits.
    mnc = imsi[3:6] if imsi.startswith("3") else imsi[3:5]
    return f"{imsi[:3]}-{mnc}"
