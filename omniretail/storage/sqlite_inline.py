"""SQLite connections that run on the event loop's own thread.

SQLAlchemy's ``sqlite+aiosqlite`` dialect drives an aiosqlite connection, which ships every call
(cursor, execute, fetch, close, commit) to a helper thread and back: four round trips through a
queue, the GIL and the event loop for each statement. SQLite itself answers a statement of this
store in microseconds, so for the embedded default the hand-offs were most of a checkout's time.

:class:`InlineConnection` keeps aiosqlite's interface (so the dialect is unchanged) but runs each
call directly. What a helper thread gave us, it keeps:

* **The loop never blocks on another process's lock.** The connection's busy timeout is zero;
  a statement that meets ``SQLITE_BUSY`` (another process holds the write lock) is retried after
  an ``asyncio.sleep`` with backoff, until ``busy_timeout`` seconds have passed, then the error
  is raised as before. A statement refused with ``SQLITE_BUSY`` has had no effect, so retrying it
  is safe. This relies on the store's discipline: write transactions begin ``IMMEDIATE`` (the
  lock is taken by ``BEGIN``, so no later statement of the transaction, no ``executemany`` half
  way and no fetch can meet a lock), and reads never write.
* Writers in this process still queue on :class:`~omniretail.storage.database.Database`'s asyncio
  lock, and readers never wait for writers (WAL).

What it gives up: while SQLite works the loop does not run, so a long read (loading a very large
catalog into the read model, a full publication run's reads) holds other requests for its length,
where the helper thread let them run meanwhile. Those are rare (the read model is patched, not
reloaded, on changes); PostgreSQL is the production store anyway.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite

#: Backoff between retries of a statement that met another process's lock.
_FIRST_DELAY = 0.001
_MAX_DELAY = 0.05


#: SQLITE_BUSY and SQLITE_BUSY_RECOVERY: another connection holds a lock, retrying may succeed.
#: (Not SQLITE_BUSY_SNAPSHOT: a read transaction that cannot become a writer; no retry helps.)
_RETRYABLE = frozenset({5, 5 | (1 << 8)})


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _RETRYABLE
    return str(exc).startswith("database is locked")


class _InlineQueue:
    """Stands in for aiosqlite's queue to its thread: runs the call at once. (SQLAlchemy's
    adapter puts its isolation-level setter on that queue directly.)"""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting side, as aiosqlite does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread; see the module docstring."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], *, busy_timeout: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InlineQueue()  # type: ignore[assignment]
        self._busy_timeout = busy_timeout

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()

    async def _connect(self) -> aiosqlite.Connection:
        if self._connection is None:
            self._connection = await self._execute_unopened(self._connector)
        return self

    async def _execute_unopened(self, fn: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
        connection: sqlite3.Connection = await _with_retry(fn, self._busy_timeout)
        return connection

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return await _with_retry(partial(fn, *args, **kwargs), self._busy_timeout)

    def stop(self) -> asyncio.Future[Any] | None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        return None

    async def close(self) -> None:
        self.stop()


async def _with_retry(call: Callable[[], Any], busy_timeout: float) -> Any:
    delay = _FIRST_DELAY
    deadline: float | None = None
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + busy_timeout
            if now >= deadline:
                raise
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _MAX_DELAY)


def inline_creator(path: str, *, uri: bool, busy_timeout: float) -> Callable[[], InlineConnection]:
    """An ``async_creator`` for ``create_async_engine``: connections to the SQLite file at
    ``path`` that run on the loop's thread (busy timeout 0: the retry loop above waits)."""

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=0, uri=uri, check_same_thread=False, isolation_level=None)

    def create() -> InlineConnection:
        return InlineConnection(connect, busy_timeout=busy_timeout)

    return create
