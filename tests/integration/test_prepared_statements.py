"""Prepared statements (``storage.prepared``) run through the driver directly (sqlite3; asyncpg
through SQLAlchemy's adapter), skipping SQLAlchemy's per-execution machinery, and must answer
exactly as SQLAlchemy would: the same rows and types, the same row counts, the same exceptions,
on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    exc,
    func,
    insert,
    select,
    update,
)

from omniretail.storage.database import Database, normalize_url
from omniretail.storage.prepared import prepared
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
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(normalize_url(db_url))
    async with database.write() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    yield database
    async with database.write() as conn:  # the PostgreSQL test database is the session's
        await conn.run_sync(metadata.drop_all)
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
        ids = await conn.scalars(stmts["by_name"], {"name": "c"})
        seen.append((ids.all(), (await conn.scalars(stmts["by_name"], {"name": "c"})).one()))
        seen.append([name for name in await conn.scalars(stmts["by_name"], {"name": "zz"})])
    return seen


async def test_prepared_statements_answer_as_sqlalchemy_does(db: Database) -> None:
    executed = count_sqlalchemy_executions(db)
    plain = await run(db, PLAIN)
    assert len(executed) == 12
    async with db.write() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    executed.clear()
    fast = await run(db, PREPARED)
    # SQLAlchemy ran only the expanding IN (and, on PostgreSQL, the three-row insert, which it
    # sends as one multi-row statement); the rest ran directly.
    through_sqlalchemy = [sql for sql in executed if " IN (" not in sql and not sql.startswith("INSERT INTO items")]
    assert through_sqlalchemy == [] and len(executed) == (1 if db.is_sqlite else 2), executed
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
    with pytest.raises(
        exc.IntegrityError,
        match=r"UNIQUE constraint failed: items\.name|violates unique constraint \"items_name_key\"",
    ):
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


# -- PostgreSQL: a prepared statement's failures leave no broken connection behind ---------------

BACKEND_PID = prepared(select(func.pg_backend_pid()))


@pytest.fixture
async def pg(postgres_url: str | None) -> AsyncIterator[Database]:
    if postgres_url is None:
        pytest.skip("OMNIRETAIL_TEST_POSTGRES_URL is not set")
    database = Database(normalize_url(postgres_url), pool_size=2)
    yield database
    await database.dispose()


async def test_a_lost_connection_is_dropped_and_the_next_block_gets_a_new_one(pg: Database) -> None:
    async with pg.read() as conn:
        pid = await conn.scalar(BACKEND_PID)
        async with pg.autocommit() as other:  # the server ends that session, as a restart would
            await other.execute(select(func.pg_terminate_backend(pid)))
        with pytest.raises(exc.DBAPIError) as raised:
            await conn.scalar(BACKEND_PID)
        assert raised.value.connection_invalidated
    for _ in range(4):  # more blocks than the pool holds: none of them gets the dead connection
        async with pg.read() as conn:
            assert await conn.scalar(BACKEND_PID) != pid


async def test_sqlite_datetimes_are_stored_as_sqlalchemys_datetime_strings(tmp_path: Path) -> None:
    """UTCDateTime's own SQLite conversion writes the string SQLAlchemy's DATETIME would (rows
    written before it, and string comparisons in SQL, depend on that) and reads any zone back as
    the same instant in UTC."""
    from datetime import timedelta, timezone

    db = Database(normalize_url(f"sqlite:///{tmp_path / 'dates.db'}"))
    async with db.write() as conn:
        await conn.run_sync(metadata.create_all)

    from sqlalchemy.dialects.sqlite import DATETIME

    reference = DATETIME().bind_processor(db.sync_engine.dialect)
    assert reference is not None
    plus_five = datetime(2026, 3, 4, 10, 6, 7, 0, tzinfo=timezone(timedelta(hours=5)))
    async with db.write() as conn:
        await conn.execute(PREPARED["insert"], {"name": "z", "at": plus_five, "flag": True, "qty": 1})
        await conn.execute(PLAIN["insert"], {"name": "p", "at": AT, "flag": True, "qty": 1})
    async with db.read() as conn:
        stored = dict((await conn.exec_driver_sql("SELECT name, at FROM items")).all())
        back = (await conn.execute(PREPARED["by_name"], {"name": "z"})).one().at
    assert stored == {
        "z": reference(datetime(2026, 3, 4, 5, 6, 7)),  # "2026-03-04 05:06:07.000000"
        "p": reference(AT.replace(tzinfo=None)),
    }
    assert back == plus_five and back.tzinfo is UTC
    await db.dispose()
