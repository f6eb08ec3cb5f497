"""``mdm-console``: the admins' command-line console, through the console proxy.

A thin front end of :mod:`console_proxy.client`: it parses, calls one
method, prints a table (or JSON with ``--json``) and turns every expected
failure into a message that says what to do, with a documented exit status
(never a stack trace).  It is the composition root of the console: it alone
reads the wall clock, the environment and the terminal.

The console is split by concern:

- :mod:`console_proxy.console.context`: the exit statuses, the terminal, one run's context;
- :mod:`console_proxy.console.parser`: the argument parser and its --help texts;
- :mod:`console_proxy.console.devices`: devices, commands, fan-outs, message history;
- :mod:`console_proxy.console.oversight`: whoami, approvals, alerts, audit, live events, gui;
- :mod:`console_proxy.console.render` and :mod:`console_proxy.console.output`: printing;
- :mod:`console_proxy.console.errors`: failures as messages and exit statuses.

The names the other modules and the tests import from here stay importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from console_proxy.client import ConsoleError
from console_proxy.console.context import (
    EXIT_STATUSES,
    Context,
    Exit,
    Terminal,
    UsageError,
    load_identity,
)
from console_proxy.console.devices import cmd_send
from console_proxy.console.errors import explain
from console_proxy.console.parser import PRIORITIES, build_parser
from console_proxy.console.render import event_line
from console_proxy.console.render import target_text as _target_text
from console_proxy.console.settings import resolve

__all__ = [
    "EXIT_STATUSES",
    "PRIORITIES",
    "Context",
    "Exit",
    "Terminal",
    "UsageError",
    "_target_text",
    "build_parser",
    "event_line",
    "explain",
    "load_identity",
    "main",
]


def main(argv: Sequence[str] | None = None, *, terminal: Terminal | None = None,
         env: Mapping[str, str] | None = None,
         clock: Callable[[], datetime] | None = None) -> int:
    """Run ``mdm-console`` with ``argv``; the exit status (see :class:`Exit`)."""
    term = terminal or Terminal.system()
    environ = os.environ if env is None else env
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # argparse cannot take `send CMD --device X NAME=VALUE`: positionals after options.
            if getattr(args, "handler", None) is not cmd_send or any(
                    e.startswith("-") for e in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.arguments = [*args.arguments, *extra]
    except SystemExit as exc:  # --help, or argparse's usage error (already printed)
        return int(exc.code or 0) if isinstance(exc.code, int | None) else Exit.USAGE
    ctx: Context | None = None
    try:
        flags = {name: getattr(args, name, None) for name in
                 ("proxy", "identity", "cert", "key", "ca", "passphrase_file", "timeout")}
        settings = resolve(flags, environ, getattr(args, "config", None))
        ctx = Context(args, term, settings, environ, clock or (lambda: datetime.now(UTC)))
        return int(args.handler(ctx))
    except ConsoleError as exc:
        return int(explain(ctx, term, exc))
    except KeyboardInterrupt:
        print("\nmdm-console: interrupted", file=term.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        return Exit.OK
    finally:
        if ctx is not None:
            ctx.close()

