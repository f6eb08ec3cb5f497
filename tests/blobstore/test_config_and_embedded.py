from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from blobstore.config import DatabaseConfig
from blobstore.database import open_database
from blobstore.devices import (
    add_device_txn,
    get_device_txn,
    set_device_key_txn,
    touch_last_seen_txn,
)
from blobstore.embedded import start_embedded
from blobstore.errors import DeviceNotFoundError
from mepl.config import ConfigError, build

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_empty_url_means_embedded() -> None:
    config = build(DatabaseConfig, {"url": "", "pool_size": "8"}, "database")
    assert config.url is None and config.embedded and config.pool_size == 8


@pytest.mark.parametrize("raw, message", [
    ({"pool_size": 0}, "pool_size must be at least 1"),
    ({"url": "mysql://x"}, "must be a PostgreSQL URL"),
    ({"retry_attempts": 0}, "retry_attempts must be at least 1"),
    ({"batch_max_rows": 20_000}, "batch_max_rows must be between 1 and 10000"),
])
def test_bad_database_settings_are_refused_with_their_reason(
        raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(DatabaseConfig, raw, "database")


def test_unknown_database_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"database\.pool: unknown key"):
        build(DatabaseConfig, {"pool": 3}, "database")


def test_last_seen_only_moves_forward_and_keys_are_stored(engine: Engine) -> None:
    with engine.begin() as conn:
        device = add_device_txn(conn, "352099001761481")
        touch_last_seen_txn(conn, device.id, T0)
        touch_last_seen_txn(conn, device.id, T0 - timedelta(minutes=5))
        set_device_key_txn(conn, device.id, 3, b"\x01" * 32)
        record = get_device_txn(conn, device.id)
        with pytest.raises(DeviceNotFoundError):
            set_device_key_txn(conn, 999, 1, b"")
    assert record.last_seen_at == T0
    assert (record.key_id, record.public_key) == (3, b"\x01" * 32)
    assert record.as_json()["public_key"] == "01" * 32


def test_embedded_server_lives_in_the_state_dir_and_stops(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with open_database(DatabaseConfig(), state) as database:
        assert database.embedded is not None
        assert database.embedded.pgdata == (state / "pg").resolve()
        assert database.engine.url.database == "mepl"
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == "mepl"
        # A second handle in the same process joins the same server.
        again = start_embedded(state)
        assert again.socket_dir == database.embedded.socket_dir
    assert not (state / "pg" / "postmaster.pid").exists()
