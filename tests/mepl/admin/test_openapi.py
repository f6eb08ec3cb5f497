"""The OpenAPI document: generated from the route table, valid, and the checked-in copy."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

from openapi_spec_validator import validate

from mepl.admin.openapi import document, document_text
from mepl.admin.routes import ROUTES
from mepl.cli.main import main

CHECKED_IN = Path(__file__).resolve().parents[3] / "docs" / "admin-api.openapi.json"


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document())


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text() == document_text(), (
        "docs/admin-api.openapi.json is stale: run `mepl admin openapi > "
        "docs/admin-api.openapi.json`")


def test_mepl_admin_openapi_prints_the_document() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["admin", "openapi"]) == 0
    assert out.getvalue() == document_text()


def test_every_operation_declares_its_role_and_audit_action_and_commands_their_roles() -> None:
    doc = document()
    operations = [op for path in doc["paths"].values() for op in path.values()]
    assert len(operations) == len(ROUTES)
    for op in operations:
        assert op["x-mepl-role"] in ("viewer", "operator", "admin", "proxy")
        assert op["x-mepl-audit-action"]
    send = doc["paths"]["/v1/commands"]["post"]
    assert send["x-mepl-role"] == "operator"
    assert send["x-mepl-role-by-body"]["field"] == "command"
    assert send["x-mepl-role-by-body"]["roles"]["wipe"] == "admin"
    assert send["x-mepl-role-by-body"]["roles"]["set_geofence"] == "admin"
    assert "lock" not in send["x-mepl-role-by-body"]["roles"]
    assert doc["paths"]["/v1/openapi.json"]["get"]["x-mepl-roles-also"] == ["proxy"]
