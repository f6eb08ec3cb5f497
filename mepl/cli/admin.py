"""``mepl admin openapi``: the admin API's OpenAPI 3.1 document, generated from its route table."""

from __future__ import annotations

import argparse
import sys

from mepl.admin.openapi import document_text


def _openapi(args: argparse.Namespace) -> int:
    sys.stdout.write(document_text())
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl admin``."""
    parser = subparsers.add_parser("admin", help="the admin API (used through the console "
                                                 "proxy)")
    actions = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    openapi = actions.add_parser(
        "openapi", help="print the admin API's OpenAPI 3.1 document (JSON)",
        description="Print the OpenAPI 3.1 document generated from the admin API's route "
                    "table: every operation with its schemas, the role it needs "
                    "(x-mepl-role, x-mepl-role-by-body) and its audit action. "
                    "docs/admin-api.openapi.json is this output.")
    openapi.set_defaults(func=_openapi)
