"""How ``mdm-console`` reports an expected failure: a message, a hint and an exit status."""

from __future__ import annotations

from typing import Any

from console_proxy.client import (
    ApiError,
    ConnectionProblem,
    ConsoleError,
    Forbidden,
    IdentityProblem,
    NotFound,
    Unauthenticated,
    UpstreamUnavailable,
)
from console_proxy.console import output
from console_proxy.console.context import Context, Exit, Terminal, UsageError
from console_proxy.console.settings import SettingsError


def _report(ctx: Context | None, term: Terminal, exc: ConsoleError, message: str,
            status: int) -> int:
    hint = exc.hint
    request_id = getattr(exc, "request_id", None)
    print(f"mdm-console: {message}", file=term.stderr)
    if hint:
        print(f"  hint: {hint}", file=term.stderr)
    if request_id:
        print(f"  request id: {request_id}", file=term.stderr)
    if ctx is not None and ctx.json:
        error: dict[str, Any] = {"message": message, "hint": hint or None,
                                 "code": getattr(exc, "code", type(exc).__name__),
                                 "request_id": request_id, "exit": int(status)}
        output.dump(ctx.out, {"error": error})
    return status


def _role_of(ctx: Context | None) -> str:
    if ctx is not None and ctx._identity is not None:
        return ctx._identity.role or "?"
    return "?"


def explain(ctx: Context | None, term: Terminal, exc: ConsoleError) -> int:
    """Print ``exc`` as a message that says what to do; its exit status."""
    if isinstance(exc, Forbidden):
        action = ctx.action if ctx is not None else "do this"
        message = f"your role {_role_of(ctx)} may not {action}: ask an admin ({exc.message})"
        exc.hint = exc.hint or "ask an admin to do it, or for an identity with a higher role"
        return _report(ctx, term, exc, message, Exit.FORBIDDEN)
    if isinstance(exc, NotFound):
        subject = ctx.subject if ctx is not None else ""
        if subject.startswith("device "):
            message = (f"unknown {subject}: no device has this IMEI, IMSI or phone number "
                       f"({exc.message})")
            exc.hint = exc.hint or ("check the number; `mdm-console devices list --query "
                                    "DIGITS` searches")
        else:
            message = f"not found: {subject + ': ' if subject else ''}{exc.message}"
        return _report(ctx, term, exc, message, Exit.NOT_FOUND)
    if isinstance(exc, Unauthenticated):
        exc.hint = exc.hint or "the proxy and the admin API disagree: tell their administrator"
        return _report(ctx, term, exc, f"the admin API refused the request: {exc.message}",
                       Exit.FORBIDDEN)
    if isinstance(exc, UpstreamUnavailable):
        return _report(ctx, term, exc, f"the proxy cannot reach the admin API: {exc.message}",
                       Exit.CONNECTION)
    if isinstance(exc, ApiError):
        return _report(ctx, term, exc, f"{exc.message} ({exc.code})", Exit.FAILED)
    if isinstance(exc, SettingsError | UsageError):
        return _report(ctx, term, exc, exc.message, Exit.USAGE)
    if isinstance(exc, IdentityProblem):
        return _report(ctx, term, exc, exc.message, Exit.IDENTITY)
    if isinstance(exc, ConnectionProblem):
        return _report(ctx, term, exc, exc.message, Exit.CONNECTION)
    return _report(ctx, term, exc, exc.message, Exit.FAILED)
