"""Schema migrations through Alembic, on a connection the Database hands out.

On PostgreSQL the upgrade holds an advisory lock, so several processes starting at once migrate
once; on SQLite the write transaction is ``BEGIN IMMEDIATE``, which serialises them the same way.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from omniretail.storage.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

_VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"""^revision\s*=\s*["']([^"']+)["']""", re.MULTILINE)
_DOWN = re.compile(r"""^down_revision\s*=\s*(?:["']([^"']+)["']|None)""", re.MULTILINE)

SCRIPT_LOCATION = "omniretail.storage:migrations"
_PG_LOCK = 0x0_4D_4E_49  # advisory lock key for migrations


def alembic_config(connection: Any = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@cache
def shipped_head() -> str | None:
    """The head revision read from the migration files without importing Alembic (about 10 MB
    a process need not carry when its schema is current). Must agree with :func:`head_revision`."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in _VERSIONS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(source)
        if down is not None and down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:
        try:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError:  # no alembic_version table: an empty database
            return None


async def _at_head(db: Database) -> bool:
    head = shipped_head()
    return head is not None and await current_revision(db) == head


async def upgrade(db: Database, revision: str = "head") -> None:
    if revision == "head" and await _at_head(db):
        return  # nothing to do: Alembic is not even imported
    from alembic import command

    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))


async def is_current(db: Database) -> bool:
    return await _at_head(db) or await current_revision(db) == head_revision()
