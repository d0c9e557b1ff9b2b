"""PostgreSQL connections: SQLAlchemy's ``AsyncConnection``, with prepared statements
(:mod:`omniretail.storage.prepared`) run through asyncpg directly.

A prepared statement's SQL goes to SQLAlchemy's own asyncpg adapter, the way its cursor does it:
under the adapter's mutex, in the adapter's transaction (begun lazily, as the cursor begins it;
none in autocommit mode), as one of the adapter's cached asyncpg prepared statements. So
``Database.write()``'s commit, a read's rollback on check-in and autocommit all behave as for any
other statement. Errors are translated as the adapter translates them and raised as SQLAlchemy's
``DBAPIError`` subclasses, after what SQLAlchemy does on them: statements cached against an old
schema are forgotten, a lost connection is dropped with every idle one, and a statement
cancelled midway drops its connection (its state is unknown).

A process keeps its connections (:class:`PgSessions`): opened once by the engine (whose own pool
is a ``NullPool``), and handed from block to block. A write block's transaction is begun by its first statement and
committed through asyncpg (through SQLAlchemy if SQLAlchemy ran a statement in it); a read or
autocommit block begins none for prepared statements (under READ COMMITTED each statement has its
own snapshot anyway). Per block, that saves the pool's checkout, reset and check-in and
SQLAlchemy's begin and commit: about 230 µs of CPU per write transaction, measured against
``engine.begin()``, and two round trips per read.

The adapter's internals this relies on are checked once; if a SQLAlchemy release changes them,
every statement runs through SQLAlchemy again (slower, not wrong).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, NoReturn, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.asyncio.engine import AsyncTransaction
from sqlalchemy.sql import Executable

from omniretail.storage.prepared import Plan, PreparingConnection, Result

T = TypeVar("T")

_STATUS = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")
_ADAPTER_NEEDS = ("_execute_mutex", "_transaction", "_start_transaction", "_prepare", "_handle_exception")
_adapter_ok: dict[type, bool] = {}


def _direct_ok(adapted: Any) -> bool:
    kind = type(adapted)
    ok = _adapter_ok.get(kind)
    if ok is None:
        ok = _adapter_ok[kind] = all(hasattr(adapted, name) for name in _ADAPTER_NEEDS)
    return ok


class PgConnection(PreparingConnection):
    """``AsyncConnection`` for the repositories: ``execute`` (prepared statements directly),
    ``scalar``, ``scalars``, ``exec_driver_sql``, ``begin_nested``, ``run_sync``, ``dialect``;
    anything else is the ``AsyncConnection``'s own."""

    __slots__ = ("_autocommit", "_begins", "_conn", "_transactional", "lost")

    def __init__(self, conn: AsyncConnection, *, begins: bool = True, autocommit: bool = False) -> None:
        self._conn = conn
        #: A write block's statements begin its transaction; a read or autocommit block's do not.
        self._begins = begins
        self._transactional = begins
        self._autocommit = autocommit
        #: The server or the network lost this connection (not: a statement was cancelled).
        self.lost = False

    def _usable(self) -> None:
        """A write block whose connection was dropped cannot go on: its transaction is gone with
        it (a new connection would silently run the rest of the block as a transaction of its
        own). A read or autocommit block goes on with a new connection."""
        if self._transactional and self._conn.invalidated:
            raise sa_exc.PendingRollbackError(
                "this transaction's connection was lost and the transaction with it; the block cannot go on"
            )

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def _execute(
        self, statement: Executable, parameters: Any, execution_options: CoreExecuteOptionsParameter | None
    ) -> CursorResult[*tuple[Any, ...]]:
        self._usable()
        try:
            result = await self._conn.execute(statement, parameters, execution_options=execution_options)
        except sa_exc.DBAPIError as error:
            self.lost = self.lost or error.connection_invalidated
            raise
        await self._autocommitted()
        return result

    async def execute_last(self, statement: Executable, parameters: Any = None) -> CursorResult[*tuple[Any, ...]]:
        """A write block's last statement: if nothing has begun the block's transaction, it runs
        on its own (atomic, as any one statement is), without BEGIN and COMMIT round trips."""
        self._usable()
        if not self._begins or self._began():
            return await self.execute(statement, parameters)
        self._begins = False
        try:
            return await self.execute(statement, parameters)
        finally:
            self._begins = True

    def _began(self) -> bool:
        if self._conn.in_transaction():
            return True
        sync: Any = self._conn.sync_connection
        return sync.connection.dbapi_connection._transaction is not None

    async def _autocommitted(self) -> None:
        """In an autocommit block, commit what SQLAlchemy began for a statement it ran (its
        cursor begins a transaction; the block promises each statement commits as it runs)."""
        if self._autocommit and self._conn.in_transaction():
            await self._conn.commit()

    # SQLAlchemy sends many rows as one multi-row statement: better than asyncpg's executemany.
    direct_many_rows = False

    async def _run_prepared(self, plan: Plan, arguments: Any) -> Result | None:
        self._usable()
        sync: Any = self._conn.sync_connection
        adapted: Any = sync.connection.dbapi_connection
        if not _direct_ok(adapted):
            return None
        dialect: Any = sync.dialect
        try:
            async with adapted._execute_mutex:
                if adapted._transaction is None and self._begins:
                    await adapted._start_transaction()  # as the adapter's cursor does
                statement, _attributes = await adapted._prepare(plan.sql, dialect._invalidate_schema_cache_asof)
                fetched = await statement.fetch(*arguments)
                status = statement.get_statusmsg()
        except Exception as error:
            await self._failed(sync, adapted, plan.sql, arguments, error)
        except BaseException as error:
            # Cancelled mid-statement (a client went away, a timeout): the connection's state is
            # unknown (asyncpg may count a transaction the adapter never saw), so it is dropped,
            # as SQLAlchemy drops it. Terminated at once, outside a greenlet: no graceful close
            # to wait for while cancelled.
            with suppress(Exception):
                sync.invalidate(error)
            raise
        match = _STATUS.match(status or "")
        rowcount = int(match.group(1)) if match else -1
        return Result(plan.rows(fetched) if plan.row is not None else [], rowcount)

    async def _failed(self, sync: Any, adapted: Any, sql: str, arguments: Any, error: Exception) -> NoReturn:
        """Raise ``error`` as SQLAlchemy would, doing what it does first: statements cached
        against an old schema are forgotten, and a lost connection is invalidated and marked
        ``lost`` (:class:`PgSessions` then drops it and every idle one)."""
        dialect: Any = sync.dialect
        try:
            adapted._handle_exception(error)  # raises the DBAPI-level translation of ``error``
        except Exception as translated:
            error = translated
        dbapi = dialect.loaded_dbapi
        if isinstance(error, dbapi.InvalidCachedStatementError | dbapi.InternalServerError):
            dialect._invalidate_schema_cache()
        disconnected = bool(dialect.is_disconnect(error, adapted, None))
        if disconnected:
            self.lost = True
            sync.engine.pool._invalidate(sync.connection, error, _checkin=False)
            await self._conn.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            sql, arguments, error, dbapi.Error, connection_invalidated=disconnected
        ) from error

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[*tuple[Any, ...]]:
        self._usable()
        result = await self._conn.exec_driver_sql(statement, parameters)
        await self._autocommitted()
        return result

    def begin_nested(self) -> AsyncTransaction:
        self._usable()
        return self._conn.begin_nested()

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._usable()
        result = await self._conn.run_sync(fn, *args, **kwargs)
        await self._autocommitted()
        return result

    async def _end(self, commit: bool) -> None:
        """End the block's transaction, if one was begun: through SQLAlchemy if it took part
        (it then also ends asyncpg's), else asyncpg's own. Nothing for a lost connection."""
        if self._conn.invalidated:
            return
        if self._conn.sync_connection._transaction is not None:  # type: ignore[union-attr]
            # SQLAlchemy took part (its commit refuses a transaction a failed statement ended).
            await (self._conn.commit() if commit else self._conn.rollback())
            return
        sync: Any = self._conn.sync_connection
        adapted: Any = sync.connection.dbapi_connection
        transaction = adapted._transaction
        if transaction is None:
            return
        adapted._transaction = None  # ended either way, as the adapter does it
        try:
            await (transaction.commit() if commit else transaction.rollback())
        except Exception as error:
            await self._failed(sync, adapted, "COMMIT" if commit else "ROLLBACK", (), error)


class PgSessions:
    """The pool of one process's connections, handed from block to block (module docstring).

    At most ``limit`` are open at once (a block beyond that waits, up to ``timeout`` seconds,
    then gets SQLAlchemy's pool ``TimeoutError``); up to ``keep`` stay open between blocks, the
    others are closed when their block ends. The engine opens and closes them (its own pool is a
    ``NullPool``). A connection whose state its block left unknown (cancelled, a failed COMMIT or
    ROLLBACK) is dropped; a lost one is dropped with every idle one (the server restarted: they
    are lost too)."""

    def __init__(self, engine: AsyncEngine, *, keep: int, limit: int, timeout: float = 30.0) -> None:
        self.engine = engine
        self.keep = keep
        self.timeout = timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[AsyncConnection] = []

    async def _acquire(self) -> AsyncConnection:
        try:
            if self._slots.locked():  # all taken: wait, for a while
                async with asyncio.timeout(self.timeout):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()  # returns at once
        except TimeoutError:
            raise sa_exc.TimeoutError(
                f"no PostgreSQL connection free after {self.timeout:.0f} s (database.pool_size: "
                f"{self.keep}, up to twice that open)"
            ) from None
        try:
            return self._idle.pop() if self._idle else await self.engine.connect()
        except BaseException:
            self._slots.release()
            raise

    @asynccontextmanager
    async def session(self, *, transaction: bool, autocommit: bool = False) -> AsyncIterator[PgConnection]:
        """A connection for one block: in a transaction committed when the block ends (rolled
        back on an exception), or without one (``autocommit``: each statement commits as it
        runs; otherwise a read, whatever SQLAlchemy began rolled back at the end)."""
        conn = await self._acquire()
        pg = PgConnection(conn, begins=transaction, autocommit=autocommit)
        ended = False
        try:
            try:
                yield pg
            except Exception:
                with suppress(Exception):  # a failed rollback: the connection is dropped below
                    await pg._end(commit=False)
                    ended = True
                raise
            await pg._end(commit=transaction)
            ended = True
        finally:
            try:
                await self._release(conn, ended, pg.lost)
            finally:
                self._slots.release()

    async def _release(self, conn: AsyncConnection, ended: bool, lost: bool) -> None:
        if ended and not conn.invalidated:
            if len(self._idle) < self.keep:
                self._idle.append(conn)
            else:
                with suppress(Exception):  # the block's work is done: a failed close is not its failure
                    await conn.close()
            return
        # Its state is unknown (cancelled, a failed COMMIT or ROLLBACK) or it was lost: dropped at
        # once (no graceful close to wait for, perhaps while cancelled); PostgreSQL rolls back
        # what it had open.
        with suppress(Exception):
            conn.sync_connection.invalidate()  # type: ignore[union-attr]
        with suppress(Exception):
            await conn.close()
        if lost:  # the server restarted, or the network failed: the idle ones are lost too
            await self.dispose()

    async def dispose(self) -> None:
        """Close the idle connections (the next blocks open new ones)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(Exception):
                await conn.close()
