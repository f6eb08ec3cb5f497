"""``smpp.pdu_log``: every raw PDU stored many to a row (the default), one to a row, or none."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from twisted.internet import reactor

from mepl.config import ConfigError
from mepl.service import MeplService
from mepl.settings import load_settings
from mepl.signer import ServerSigner
from signing.keystore import ServerKeyStore
from tests.support.pg import migrated_database

SERVER_NUMBER = "+447700900000"


def _service(tmp: Path, smpp: dict[str, Any]) -> MeplService:
    keys = ServerKeyStore(tmp / "keys")
    if not keys.exists():
        keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER_NUMBER,))
    settings = load_settings({
        "dispatch": {"server_number": SERVER_NUMBER}, "mepl": {"state_dir": str(tmp)},
        "smpp": {**smpp, "links": {"carrier": {"host": "127.0.0.1", "port": 2775,
                                               "system_id": "op", "password": "pw123456"}}}})
    return MeplService(settings, reactor=reactor, engine=create_engine(migrated_database("pdu")),
                       signer=ServerSigner.load(keys.directory, {}))


@pytest.fixture
def tmp() -> Any:
    path = Path(tempfile.mkdtemp(prefix="mepl-pdu-"))
    yield path
    shutil.rmtree(path, True)


def test_every_raw_pdu_is_handed_to_the_batched_store_by_default(tmp: Path) -> None:
    service = _service(tmp, {})
    assert service.binds["carrier"].pdu_sink == service._store_packed_pdu


def test_pdu_log_all_stores_one_row_per_pdu(tmp: Path) -> None:
    service = _service(tmp, {"pdu_log": "all"})
    assert service.binds["carrier"].pdu_sink == service._store_pdu


def test_pdu_log_none_stores_the_sms_rows_only(tmp: Path) -> None:
    service = _service(tmp, {"pdu_log": "none"})
    assert service.binds["carrier"].pdu_sink is None


def test_an_unknown_pdu_log_value_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError,
                       match=r"smpp\.pdu_log: expected one of 'batched', 'all', 'none'"):
        load_settings({"dispatch": {"server_number": SERVER_NUMBER},
                       "smpp": {"pdu_log": "some"}})
