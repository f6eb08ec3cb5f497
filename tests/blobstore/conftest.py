from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from tests.support.pg import migrated_database


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A fresh database at the schema head."""
    eng = create_engine(migrated_database())
    yield eng
    eng.dispose()
