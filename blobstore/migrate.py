"""Schema migrations (Alembic) driven from code, and the schema version check.

The Alembic scripts live in the ``migrations`` package; their location is
found from ``migrations.__file__`` so this works from a checkout and from an
installed wheel alike.  Alembic keeps its migration context in module
globals: run at most one migration at a time per process (several processes
at once are safe: the environment takes an advisory lock).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

import migrations
from blobstore.errors import SchemaOutOfDateError


def alembic_config() -> Config:
    """An Alembic config pointing at the installed ``migrations`` package."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def head_revision() -> str:
    """The revision this code needs (Alembic's single head)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("the migrations package has no revisions")
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None for an empty database."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the head), in one transaction."""
    _run(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops everything)."""
    _run(engine, lambda config: command.downgrade(config, revision))


def _run(engine: Engine, action: Callable[[Config], None]) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        action(config)


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """Return (current revision of the database, revision this code needs)."""
    with engine.connect() as conn:
        return current_revision(conn), head_revision()


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at the head revision."""
    current, head = schema_status(engine)
    if current != head:
        raise SchemaOutOfDateError(current, head)
