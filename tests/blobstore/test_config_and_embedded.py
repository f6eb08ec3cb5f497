from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from blobstore.config import DatabaseConfig
from blobstore.database import create_store_engine, open_database
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
    ({"url": "mysql://x"}, "unsupported driver 'mysql'"),
    ({"retry_attempts": 0}, "retry_attempts must be at least 1"),
    ({"batch_max_rows": 20_000}, "batch_max_rows must be between 1 and 10000"),
    ({"pdu_batch_max_delay_ms": -1}, "pdu_batch_max_delay_ms must be between 0 and 1000"),
])
def test_bad_database_settings_are_refused_with_their_reason(
        raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(DatabaseConfig, raw, "database")


@pytest.mark.parametrize("url", [
    "postgresql://mepl:secret@db.internal:5433/mepl",
    "postgres://mepl:secret@db.internal:5433/mepl",
    "POSTGRESQL://mepl:secret@db.internal:5433/mepl",
    "postgresql+psycopg2://mepl:secret@db.internal:5433/mepl",
])
def test_plain_postgresql_urls_use_the_psycopg2_driver(url: str) -> None:
    config = build(DatabaseConfig, {"url": url}, "database")
    assert config.url == "postgresql+psycopg2://mepl:secret@db.internal:5433/mepl"
    # ...and SQLAlchemy can build an engine from it (no psycopg module needed).
    create_store_engine(config.url, config).dispose()


@pytest.mark.parametrize("url", [
    "postgresql+asyncpg://mepl@db/mepl",
    "postgresql+psycopg://mepl@db/mepl",
    "postgresql+pg8000://mepl@db/mepl",
    "mysql://mepl@db/mepl",
    "sqlite:///mepl.db",
])
def test_other_database_drivers_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^database\.url: unsupported driver ") as info:
        build(DatabaseConfig, {"url": url}, "database")
    assert "psycopg2" in str(info.value)
    assert "mepl@db" not in str(info.value)  # the URL (which may hold a password) is not echoed


def test_a_database_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^database\.url: expected a URL such as "):
        build(DatabaseConfig, {"url": "db.internal/mepl"}, "database")


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
        # A second handle in the same process joins the same server; the
        # server runs until the last handle is stopped.
        again = start_embedded(state)
        assert again.socket_dir == database.embedded.socket_dir
        again.stop()
        again.stop()  # stopping twice is harmless
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    assert not (state / "pg" / "postmaster.pid").exists()
