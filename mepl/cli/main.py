"""Entry point of the ``mepl`` console script.

Every module in :mod:`mepl.cli` that defines ``register(subparsers)`` adds its
subcommands; each subcommand sets ``func(args) -> int`` as its handler.  The
handler's return value is the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pkgutil
import sys
from collections.abc import Sequence

import mepl.cli

EPILOG = """\
Configuration: --config FILE (TOML), then MEPL_* environment variables
(MEPL_DATABASE_URL, MEPL_STATE_DIR, or MEPL_<SECTION>__<KEY>), then options.
With no database URL, an embedded PostgreSQL is started in the state directory.
See docs/operator-guide.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered subcommand group."""
    parser = argparse.ArgumentParser(
        prog="mepl",
        description="SMS-channel device management middle tier (MEPL).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version",
                        version=f"mepl {importlib.metadata.version('mepl')}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(mepl.cli.__path__), key=lambda m: m.name):
        if info.name in ("main", "common") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"mepl.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        status: int = func(args)
    except BrokenPipeError:  # `mepl devices list | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("mepl: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
