"""Schema migrations through Alembic, on a connection the Database hands out.

On PostgreSQL the upgrade holds an advisory lock, so several processes starting at once migrate
once; on SQLite the write transaction is ``BEGIN IMMEDIATE``, which serialises them the same way.
"""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from omniretail.storage.database import Database

SCRIPT_LOCATION = "omniretail.storage:migrations"
_PG_LOCK = 0x0_4D_4E_49  # advisory lock key for migrations


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def upgrade(db: Database, revision: str = "head") -> None:
    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))


async def is_current(db: Database) -> bool:
    return await current_revision(db) == head_revision()
