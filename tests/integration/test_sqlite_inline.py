"""SQLite statements run on the event loop's thread (SQLAlchemy's sync engine); a lock held by
another connection is waited for with asyncio sleeps (the loop keeps serving), and given up on
after the busy timeout; results are whole when ``execute`` returns."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import column, insert, table, text

from omniretail.storage.database import Database
from omniretail.storage.prepared import prepared
from omniretail.storage.sqlite_inline import with_busy_retry


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
    db = Database(f"sqlite:///{path}")
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


async def test_a_statement_that_meets_a_lock_is_retried(tmp_path: Path) -> None:
    """Not only BEGIN: a read against a connection that holds the file in exclusive locking mode
    waits until the lock is gone (here the new connection's PRAGMAs meet it; a statement's own
    retry is the next test's)."""
    path = tmp_path / "exclusive.db"
    db = Database(f"sqlite:///{path}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (7)"))
    await db.dispose()
    started = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO t VALUES (8)")
        started.set()
        time.sleep(0.3)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    await asyncio.to_thread(started.wait)
    db = Database(f"sqlite:///{path}")
    began = time.monotonic()
    try:
        async with db.read() as conn:
            rows = sorted((await conn.execute(text("SELECT x FROM t"))).scalars())
    finally:
        holder.join()
        await db.dispose()
    assert time.monotonic() - began >= 0.15  # it met the lock and waited
    assert rows == [7, 8]


async def test_the_busy_timeout_still_ends_the_wait() -> None:
    calls = 0

    def busy() -> None:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("database is locked")

    began = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await with_busy_retry(busy, 0.1)
    assert 0.1 <= time.monotonic() - began < 1.0 and calls > 2


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("no such table: nope")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await with_busy_retry(broken, 5.0)
    assert calls == 1


async def test_a_result_left_half_read_holds_no_snapshot(tmp_path: Path) -> None:
    """As with the async driver, every row is fetched when ``execute`` returns. A result left
    half read after its block ended must not keep a statement open on the pooled connection:
    that would pin a WAL snapshot, so no checkpoint could reset the log (it would grow)."""
    path = tmp_path / "rows.db"
    db = Database(f"sqlite:///{path}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": n} for n in range(500)])
    async with db.read() as conn:
        result = await conn.execute(text("SELECT x FROM t ORDER BY x"))
        first = result.fetchone()
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("INSERT INTO t VALUES (500)")
    busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    other.close()
    rest = result.fetchall()
    await db.dispose()
    assert busy == 0  # no reader left behind
    assert first == (0,) and [r[0] for r in rest] == list(range(1, 500))


async def test_statements_run_on_the_loops_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    before = threading.active_count()
    async with db.write() as conn:
        assert (await conn.scalar(text("SELECT 41 + 1"))) == 42
    async with db.read() as conn:
        assert (await conn.scalar(text("SELECT 40 + 2"))) == 42
        assert (await conn.exec_driver_sql("SELECT ? * 2", (21,))).scalar() == 42
    assert threading.active_count() == before
    await db.dispose()


async def test_a_failed_write_rolls_back_and_leaves_the_lock_free(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'rb.db'}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("boom")
    other = sqlite3.connect(tmp_path / "rb.db", isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # would raise 'database is locked' if the lock were held
    other.execute("ROLLBACK")
    other.close()
    async with db.read() as conn:
        assert (await conn.scalar(text("SELECT count(*) FROM t"))) == 0
    await db.dispose()


_INSERT_T = prepared(insert(table("t", column("x"))))


@pytest.mark.parametrize("kind", ["through SQLAlchemy", "prepared"])
async def test_a_statement_that_meets_a_writer_is_retried(tmp_path: Path, kind: str) -> None:
    """Not only BEGIN and new connections: a statement refused with SQLITE_BUSY runs again once
    the lock is gone, whether SQLAlchemy runs it or it is prepared (run by sqlite3 directly).
    Here a write in a transaction begun without the lock (a deferred BEGIN, on a pooled
    connection) meets another connection's write lock."""
    path = tmp_path / "writer.db"
    db = Database(f"sqlite:///{path}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    started = threading.Event()
    try:
        async with db.read() as conn:  # BEGIN (deferred): no lock, no snapshot yet
            holder = hold_write_lock(path, 0.3, started)
            await asyncio.to_thread(started.wait)
            began = time.monotonic()
            if kind == "prepared":
                result = await conn.execute(_INSERT_T, {"x": 2})
            else:
                result = await conn.execute(text("INSERT INTO t VALUES (2)"))
            waited = time.monotonic() - began
            holder.join()
    finally:
        await db.dispose()
    assert result.rowcount == 1
    assert waited >= 0.15  # it met the other writer's lock and waited for it
