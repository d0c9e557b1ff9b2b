"""Prepared statements (``storage.sqlite_inline.prepared``) run on SQLite straight through sqlite3,
skipping SQLAlchemy's per-execution machinery, and must answer exactly as SQLAlchemy would:
the same rows and types, the same row counts, the same exceptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, bindparam, event, exc, insert, select, update

from omniretail.storage.database import Database
from omniretail.storage.sqlite_inline import prepared
from omniretail.storage.tables import UTCDateTime

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("at", UTCDateTime()),
    Column("flag", Boolean, nullable=False),
    Column("qty", Integer, nullable=False, default=1),  # a Python-side default: needs SQLAlchemy
)


def statements() -> dict[str, Any]:
    return {
        "insert": insert(items),
        "insert_returning": insert(items).returning(items.c.id, items.c.at),
        "by_name": select(items).where(items.c.name == bindparam("name")),
        "rename": update(items).where(items.c.name == bindparam("old")).values(name=bindparam("new")),
        "by_names": select(items.c.name).where(items.c.name.in_(bindparam("names", expanding=True))).order_by("name"),
    }


PREPARED = {name: prepared(stmt) for name, stmt in statements().items()}
PLAIN = statements()  # the same statements, not prepared: SQLAlchemy runs them
AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'prepared.db'}")
    async with database.write() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


def count_sqlalchemy_executions(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.sync_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


async def run(db: Database, stmts: dict[str, Any]) -> list[Any]:
    """The same script against ``stmts``; what it saw, as plain values."""
    seen: list[Any] = []
    async with db.write() as conn:
        row = await conn.execute(
            stmts["insert_returning"], {"name": "a", "at": AT, "flag": True, "qty": 2}
        )  # RETURNING: one row, converted
        seen.append(tuple(row.one()))
        many = await conn.execute(
            stmts["insert"], [{"name": n, "at": None, "flag": False, "qty": 3} for n in ("b", "c", "d")]
        )
        seen.append(many.rowcount)
        renamed = await conn.execute(stmts["rename"], {"old": "b", "new": "bb"})
        seen.append(renamed.rowcount)
        nothing = await conn.execute(stmts["rename"], {"old": "zz", "new": "yy"})
        seen.append(nothing.rowcount)
    async with db.read() as conn:
        got = (await conn.execute(stmts["by_name"], {"name": "a"})).one()
        seen.append((got.id, got.name, got.at, got.flag, got.qty, got._asdict(), tuple(got)))
        seen.append((await conn.execute(stmts["by_name"], {"name": "nobody"})).first())
        seen.append(await conn.scalar(stmts["by_name"], {"name": "bb"}))
        seen.append((await conn.scalars(stmts["by_names"], {"names": ["c", "bb", "x"]})).all())
        seen.append([tuple(r) for r in await conn.execute(stmts["by_name"], {"name": "c"})])
    return seen


async def test_prepared_statements_answer_as_sqlalchemy_does(tmp_path: Path) -> None:
    answers = []
    for stmts in (PLAIN, PREPARED):
        db = Database(f"sqlite:///{tmp_path / f'{id(stmts)}.db'}")
        async with db.write() as conn:
            await conn.run_sync(metadata.create_all)
        executed = count_sqlalchemy_executions(db)
        answers.append(await run(db, stmts))
        await db.dispose()
        if stmts is PREPARED:
            # Only the expanding IN went through SQLAlchemy; the rest ran directly.
            assert len(executed) == 1 and " IN (" in executed[0], executed
        else:
            assert len(executed) == 9
    plain, fast = answers
    assert fast == plain
    assert fast[0][1] == AT and fast[0][1].tzinfo is UTC  # the UTC type's conversion ran
    assert fast[4][3] is True  # and Boolean's


async def test_a_python_side_default_goes_through_sqlalchemy(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(PREPARED["insert"], {"name": "no-qty", "at": None, "flag": False})
    async with db.read() as conn:
        assert (await conn.execute(PREPARED["by_name"], {"name": "no-qty"})).one().qty == 1


async def test_a_duplicate_raises_sqlalchemys_integrity_error(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(PREPARED["insert"], {"name": "x", "at": None, "flag": False, "qty": 1})
    with pytest.raises(exc.IntegrityError, match=r"UNIQUE constraint failed: items\.name"):
        async with db.write() as conn:
            await conn.execute(PREPARED["insert"], {"name": "x", "at": None, "flag": True, "qty": 1})
    async with db.read() as conn:  # the failed transaction changed nothing
        assert (await conn.execute(PREPARED["by_name"], {"name": "x"})).one().flag is False


async def test_a_missing_or_refused_parameter_gets_sqlalchemys_error(db: Database) -> None:
    async with db.read() as conn:
        with pytest.raises(exc.StatementError, match="'name'"):
            await conn.execute(PREPARED["by_name"], {"nom": "a"})
    with pytest.raises(exc.StatementError, match="naive datetime"):
        async with db.write() as conn:
            await conn.execute(PREPARED["insert"], {"name": "n", "at": datetime(2026, 1, 1), "flag": True, "qty": 1})
