"""The use cases against the real, embedded PostgreSQL: each test gets a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from mepl.app.context import Actor, SyncTransactions
from tests.support.pg import migrated_database

ALICE = Actor("alice", "admin")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMEIS = ("490154203237518", "356938035643809", "353918058450939", "357805023984942")


class Store:
    """The runner the use cases go through, and raw SQL to look at what they wrote."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tx = SyncTransactions(engine, backoff_s=0.0)
        self.run = self.tx.run

    def sql(self, query: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(query), params).scalar()

    def rows(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params).all())

    def audit_count(self, action: str | None = None) -> int:
        if action is None:
            return int(self.sql("SELECT count(*) FROM audit"))
        return int(self.sql("SELECT count(*) FROM audit WHERE action = :a", a=action))


@pytest.fixture
def store() -> Iterator[Store]:
    engine = create_engine(migrated_database("app"))
    yield Store(engine)
    engine.dispose()
