"""SQLite statements run on the event loop's thread; a lock held by another connection is waited
for with asyncio sleeps (the loop keeps serving), and given up on after the busy timeout."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from omniretail.storage.database import Database
from omniretail.storage.sqlite_inline import InlineConnection, _with_retry


def hold_write_lock(path: Path, seconds: float, started: threading.Event) -> threading.Thread:
    """Another connection (as another process would) takes the write lock for ``seconds``."""

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (1)")
        started.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


async def test_a_locked_database_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    started = threading.Event()
    holder = hold_write_lock(path, 0.4, started)
    await asyncio.to_thread(started.wait)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    began = time.monotonic()
    async with db.write() as conn:  # BEGIN IMMEDIATE meets the other writer's lock
        await conn.execute(text("INSERT INTO t VALUES (2)"))
    waited = time.monotonic() - began
    tick_task.cancel()
    holder.join()
    async with db.read() as conn:
        rows = sorted((await conn.execute(text("SELECT x FROM t"))).scalars())
    await db.dispose()
    assert rows == [1, 2]  # both writes landed, one after the other
    assert waited >= 0.2  # it really waited for the lock...
    assert ticks >= 10  # ...while the loop went on running other tasks


async def test_the_busy_timeout_still_ends_the_wait() -> None:
    calls = 0

    def busy() -> None:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("database is locked")

    began = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await _with_retry(busy, 0.1)
    assert 0.1 <= time.monotonic() - began < 1.0 and calls > 2


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("no such table: nope")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await _with_retry(broken, 5.0)
    assert calls == 1


async def test_connections_run_without_a_thread(tmp_path: Path) -> None:
    conn = InlineConnection(lambda: sqlite3.connect(tmp_path / "x.db", check_same_thread=False), busy_timeout=1.0)
    await conn
    before = threading.active_count()
    cursor = await conn.execute("SELECT 41 + 1")
    assert await cursor.fetchone() == (42,)
    assert threading.active_count() == before
    await conn.close()
    with pytest.raises(ValueError, match=r"closed|no active connection"):
        await conn.execute("SELECT 1")
