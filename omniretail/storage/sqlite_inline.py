"""SQLite on the event loop's own thread, through SQLAlchemy's synchronous engine.

SQLite answers a statement of this store in microseconds, in this process. Driving it through
SQLAlchemy's asyncio layer (``sqlite+aiosqlite``) costs far more than the statement itself: a
helper thread with queue round trips per call (replaced earlier by running aiosqlite's calls
inline), and then, per statement, a greenlet hop into the sync core and back for each DBAPI call.
Measured on one SELECT by primary key: about 92 µs through the async layer, 27 µs through the
sync ``Connection``, 5 µs in ``sqlite3`` itself; a write transaction's begin/commit costs 450 µs
against 140 µs.

So for SQLite, :class:`~omniretail.storage.database.Database` runs a plain synchronous engine
and hands out :class:`InlineConnection`, which has the part of ``AsyncConnection``'s interface
this code base uses (``await conn.execute(...)``, ``scalar``, ``scalars``, ``begin_nested``,
``run_sync``, ``dialect``) and calls the sync connection directly. What the async driver gave, it
keeps:

* **The loop never blocks on another process's lock.** SQLite's busy timeout is zero; a
  statement refused with ``SQLITE_BUSY`` (another process holds the write lock) has had no effect,
  and :func:`with_busy_retry` runs it again after an ``asyncio.sleep`` with backoff, until the
  busy timeout has passed, then raises the error. This relies on the store's discipline: write
  transactions begin ``IMMEDIATE`` (the lock is taken by ``BEGIN``, so no later statement of the
  transaction meets a lock), and reads never write. ``SQLITE_BUSY_SNAPSHOT`` is never retried.
* **Results are complete when ``execute`` returns**, as the async driver's were: the DBAPI cursor
  (:class:`_BufferedCursor`) fetches every row at once, so a result read after its connection
  went back to the pool is still whole.
* Writers in this process queue on the database's asyncio lock; readers never wait for writers
  (WAL). The pool never makes a caller wait (unbounded overflow): a sync pool that waited would
  wait on the loop's own thread, which is the one that would free a connection.

What it gives up: while SQLite works the loop does not run, so a long read (loading a very large
catalog into the read model, a full publication run's reads) holds other requests for its length.
Those are rare (the read model is patched, not reloaded, on changes); PostgreSQL is the
production store anyway.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.sql import Executable

from omniretail.storage.prepared import Plan, PreparingConnection, Result

#: Backoff between retries of a statement that met another process's lock.
_FIRST_DELAY = 0.001
_MAX_DELAY = 0.05

#: SQLITE_BUSY and SQLITE_BUSY_RECOVERY: another connection holds a lock, retrying may succeed.
#: (Not SQLITE_BUSY_SNAPSHOT: a read transaction that cannot become a writer; no retry helps.)
_RETRYABLE = frozenset({5, 5 | (1 << 8)})

T = TypeVar("T")


def is_busy(exc: BaseException) -> bool:
    """``exc`` (sqlite3's, or SQLAlchemy's wrapping it) says another connection holds a lock."""
    if isinstance(exc, sa_exc.DBAPIError):
        exc = exc.orig  # type: ignore[assignment]
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _RETRYABLE
    return str(exc).startswith("database is locked")


async def with_busy_retry(call: Callable[[], T], busy_timeout: float) -> T:
    """``call()``, again after asyncio sleeps while SQLite says busy, for up to ``busy_timeout`` s."""
    delay = _FIRST_DELAY
    deadline: float | None = None
    while True:
        try:
            return call()
        except (sqlite3.OperationalError, sa_exc.OperationalError) as exc:
            if not is_busy(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + busy_timeout
            if now >= deadline:
                raise
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _MAX_DELAY)


class _BufferedCursor:
    """A ``sqlite3.Cursor`` that has fetched every row by the time ``execute`` returns."""

    __slots__ = ("_at", "_cursor", "_rows")

    arraysize = 1

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self._rows: list[Any] = []
        self._at = 0

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def execute(self, sql: str, parameters: Any = ()) -> _BufferedCursor:
        cursor = self._cursor
        cursor.execute(sql, parameters)
        self._rows = cursor.fetchall() if cursor.description is not None else []
        self._at = 0
        return self

    def executemany(self, sql: str, seq_of_parameters: Any) -> _BufferedCursor:
        self._cursor.executemany(sql, seq_of_parameters)
        self._rows = []
        self._at = 0
        return self

    def fetchone(self) -> Any:
        if self._at < len(self._rows):
            row = self._rows[self._at]
            self._at += 1
            return row
        return None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        end = self._at + (size or self.arraysize)
        chunk = self._rows[self._at : end]
        self._at += len(chunk)
        return chunk

    def fetchall(self) -> list[Any]:
        chunk = self._rows[self._at :] if self._at else self._rows
        self._at = len(self._rows)
        return chunk

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._rows = []
        self._cursor.close()


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = None) -> Any:
        return _BufferedCursor(super().cursor() if factory is None else super().cursor(factory))


def connector(path: str, *, uri: bool) -> Callable[[], sqlite3.Connection]:
    """A ``creator`` for ``create_engine``: connections to the SQLite file at ``path`` with busy
    timeout 0 (:func:`with_busy_retry` waits) and no implicit transactions (SQLAlchemy's
    ``begin`` event issues ``BEGIN``)."""

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            path, timeout=0, uri=uri, check_same_thread=False, isolation_level=None, factory=_Connection
        )

    return connect


def _run(raw: sqlite3.Connection, plan: Plan, arguments: Any) -> Result:
    if plan.many:
        return Result([], raw.executemany(plan.sql, arguments).rowcount)
    cursor = raw.execute(plan.sql, arguments)  # a plain sqlite3 cursor: fetched right here
    return Result(plan.rows(cursor.fetchall()) if cursor.description is not None else [], cursor.rowcount)


class InlineConnection(PreparingConnection):
    """The ``AsyncConnection`` interface this code base uses, over a sync SQLAlchemy connection
    on the loop's thread (see the module docstring)."""

    __slots__ = ("_busy_timeout", "sync_connection")

    def __init__(self, sync_connection: Connection, busy_timeout: float) -> None:
        self.sync_connection = sync_connection
        self._busy_timeout = busy_timeout

    @property
    def dialect(self) -> Dialect:
        return self.sync_connection.dialect

    async def _execute(
        self, statement: Executable, parameters: Any, execution_options: CoreExecuteOptionsParameter | None
    ) -> CursorResult[*tuple[Any, ...]]:
        conn = self.sync_connection
        try:  # the usual case, without building the retry's closure and coroutine
            return conn.execute(statement, parameters, execution_options=execution_options)
        except sa_exc.OperationalError as exc:
            if not is_busy(exc):
                raise
        return await with_busy_retry(
            lambda: conn.execute(statement, parameters, execution_options=execution_options), self._busy_timeout
        )

    async def _run_prepared(self, plan: Plan, arguments: Any) -> Result:
        raw: Any = self.sync_connection.connection.dbapi_connection
        try:
            try:  # the usual case, without building the retry's closure and coroutine
                return _run(raw, plan, arguments)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            return await with_busy_retry(lambda: _run(raw, plan, arguments), self._busy_timeout)
        except sqlite3.Error as exc:  # as SQLAlchemy raises it: IntegrityError and the rest
            raise sa_exc.DBAPIError.instance(plan.sql, arguments, exc, sqlite3.Error) from exc

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[*tuple[Any, ...]]:
        conn = self.sync_connection
        return await with_busy_retry(lambda: conn.exec_driver_sql(statement, parameters), self._busy_timeout)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A SAVEPOINT: released when the block ends, rolled back to on an exception."""
        with self.sync_connection.begin_nested():
            yield

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.sync_connection, *args, **kwargs)
