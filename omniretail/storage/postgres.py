"""PostgreSQL connections: SQLAlchemy's ``AsyncConnection``, with prepared statements
(:mod:`omniretail.storage.prepared`) run through asyncpg directly.

A prepared statement's SQL goes to SQLAlchemy's own asyncpg adapter, the way its cursor does it:
under the adapter's mutex, in the adapter's transaction (begun lazily, as the cursor begins it;
none in autocommit mode), as one of the adapter's cached asyncpg prepared statements. So
``Database.write()``'s commit, a read's rollback on check-in and autocommit all behave as for any
other statement. Errors are translated as the adapter translates them and raised as SQLAlchemy's
``DBAPIError`` subclasses, after what SQLAlchemy does on them: statements cached against an old
schema are forgotten, a lost connection is dropped with every pooled one as old as it, and a
statement cancelled midway drops its connection (its state is unknown).

The adapter's internals this relies on are checked once; if a SQLAlchemy release changes them,
every statement runs through SQLAlchemy again (slower, not wrong).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import suppress
from typing import Any, NoReturn, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.ext.asyncio import AsyncConnection
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

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def _execute(
        self, statement: Executable, parameters: Any, execution_options: CoreExecuteOptionsParameter | None
    ) -> CursorResult[*tuple[Any, ...]]:
        return await self._conn.execute(statement, parameters, execution_options=execution_options)

    # SQLAlchemy sends many rows as one multi-row statement: better than asyncpg's executemany.
    direct_many_rows = False

    async def _run_prepared(self, plan: Plan, arguments: Any) -> Result | None:
        sync: Any = self._conn.sync_connection
        adapted: Any = sync.connection.dbapi_connection
        if not _direct_ok(adapted):
            return None
        dialect: Any = sync.dialect
        try:
            async with adapted._execute_mutex:
                if adapted._transaction is None:
                    await adapted._start_transaction()  # as the adapter's cursor does; none in autocommit
                statement, _attributes = await adapted._prepare(plan.sql, dialect._invalidate_schema_cache_asof)
                fetched = await statement.fetch(*arguments)
                status = statement.get_statusmsg()
        except Exception as error:
            await self._failed(sync, adapted, plan, arguments, error)
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

    async def _failed(self, sync: Any, adapted: Any, plan: Plan, arguments: Any, error: Exception) -> NoReturn:
        """Raise ``error`` as SQLAlchemy would, doing what it does first: statements cached
        against an old schema are forgotten, and a lost connection is dropped together with every
        pooled connection as old as it (recycled on their next checkout)."""
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
            sync.engine.pool._invalidate(sync.connection, error, _checkin=False)
            await self._conn.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            plan.sql, arguments, error, dbapi.Error, connection_invalidated=disconnected
        ) from error

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[*tuple[Any, ...]]:
        return await self._conn.exec_driver_sql(statement, parameters)

    def begin_nested(self) -> AsyncTransaction:
        return self._conn.begin_nested()

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._conn.run_sync(fn, *args, **kwargs)
