"""The database handle: SQLAlchemy engines with the write discipline the stock rules need.

* SQLite (the embedded default): WAL, foreign keys, and every write transaction begins
  ``IMMEDIATE`` so two writers never both read then both write. Statements run on the event
  loop's thread through SQLAlchemy's sync engine (``sqlite_inline``: no helper thread, no greenlet
  hops). Writers in one process queue on an asyncio lock; writers in other processes are
  serialised by SQLite's lock, waited for with asyncio sleeps for up to 30 s (the busy timeout).
* PostgreSQL: READ COMMITTED; correctness comes from conditional UPDATEs, never from
  ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool, StaticPool

from omniretail.storage.postgres import PgConnection, PgSessions
from omniretail.storage.prepared import prepared as prepared  # re-exported: what repositories mark
from omniretail.storage.sqlite_inline import InlineConnection, connector, with_busy_retry

#: What ``Database.write()`` and ``read()`` yield: repositories use only the interface both share.
DbConnection = PgConnection | InlineConnection

SQLITE_BUSY_TIMEOUT_MS = 30_000


def dialect_insert(conn: DbConnection, table: Table) -> Any:
    """An INSERT for ``conn``'s database that knows ``ON CONFLICT`` (SQLite's or PostgreSQL's)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


_BUILT: dict[tuple[str, str], Any] = {}


def built_once(conn: DbConnection, name: str, build: Callable[[DbConnection], Any]) -> Any:
    """The statement ``name`` for ``conn``'s database, built by ``build`` the first time it is
    asked for and :func:`prepared` (hot statements that differ by dialect, such as ``ON CONFLICT``
    ones)."""
    key = (conn.dialect.name, name)
    stmt = _BUILT.get(key)
    if stmt is None:
        stmt = _BUILT[key] = prepared(build(conn))
    return stmt


def insert_or_ignore(conn: DbConnection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING``: a duplicate leaves rowcount 0 instead of raising
    (one statement, where a savepoint costs three)."""
    return built_once(
        conn, f"insert_or_ignore:{table.name}", lambda c: dialect_insert(c, table).on_conflict_do_nothing()
    )


def normalize_url(url: str, base_dir: Path | None = None) -> str:
    """Pick the driver for a plain URL (asyncpg; SQLite's own module) and resolve a relative SQLite path against the
    configuration file's folder (so the store does not depend on the working directory)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite")  # run through the sync engine (sqlite_inline)
        db = parsed.database or ""
        if db and db != ":memory:" and not db.startswith("file:") and base_dir is not None:
            path = Path(db)
            if not path.is_absolute():
                parsed = parsed.set(database=str((base_dir / path).resolve()))
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed.render_as_string(hide_password=False)


class Database:
    """Owns the engine. ``write()`` and ``read()`` hand out connections inside a transaction:
    a :class:`~omniretail.storage.postgres.PgConnection` (SQLAlchemy's ``AsyncConnection``, with
    prepared statements run by asyncpg directly) on PostgreSQL, an
    :class:`~omniretail.storage.sqlite_inline.InlineConnection` (the same interface, over
    SQLAlchemy's sync engine on the loop's thread) on SQLite."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        #: Bumped after every write transaction this process commits: read caches key on it.
        self.generation = 0
        self._busy_timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        self.engine: AsyncEngine | None
        self._write_lock: asyncio.Lock | None
        if self.dialect == "sqlite":
            database = parsed.database or ":memory:"
            uri = database.startswith("file:") or bool(parsed.query.get("uri"))
            memory = database == ":memory:" or (uri and "mode=memory" in database)
            pool: dict[str, Any] = (
                {"poolclass": StaticPool}
                if memory
                # Never make a caller wait for a connection: the wait would block the loop's
                # own thread, the one that would give a connection back.
                else {"poolclass": QueuePool, "pool_size": pool_size, "max_overflow": -1}
            )
            self.sync_engine: Engine = create_engine(
                "sqlite://", creator=connector(database, uri=uri), echo=echo, **pool
            )
            self.engine = None
            self._write_lock = asyncio.Lock()
            # Writers in this process take turns (the lock above), so one connection serves them
            # all, kept out of the pool (a checkout and a check-in with its reset, per write, cost
            # more than a short transaction does). Not for an in-memory database: its one shared
            # connection stays the pool's.
            self._keep_writer = not memory
            _install_sqlite_discipline(self.sync_engine)
        else:
            # The process's connections are pooled by PgSessions (kept between blocks, without the
            # checkout, reset and check-in a SQLAlchemy pool does per block): the engine only
            # opens and closes them.
            self.engine = create_async_engine(url, echo=echo, poolclass=NullPool, isolation_level="READ COMMITTED")
            self.sync_engine = self.engine.sync_engine
            self._write_lock = None
            self._keep_writer = False
            self._pg = PgSessions(self.engine, keep=pool_size, limit=2 * pool_size)
        self._writer: Connection | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[DbConnection]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        if self.engine is not None:
            async with self._pg.session(transaction=True) as pg:
                yield pg
            self.generation += 1
            return
        assert self._write_lock is not None
        async with self._write_lock:
            if not self._keep_writer:
                with await self._connect() as sync:
                    async with self._sqlite_transaction(sync) as conn:
                        yield conn
            else:
                kept = self._writer
                if kept is None or kept.closed or kept.invalidated:
                    kept = self._writer = await self._connect()
                try:
                    async with self._sqlite_transaction(kept) as conn:
                        yield conn
                except BaseException:
                    if kept.invalidated:  # the driver lost the connection: the next write opens another
                        self._writer = None
                        kept.close()
                    raise
        self.generation += 1

    @asynccontextmanager
    async def _sqlite_transaction(self, sync: Connection) -> AsyncIterator[InlineConnection]:
        raw = sync.connection.dbapi_connection
        assert raw is not None
        with sync.begin():
            # Take the write lock first, waiting (asyncio sleeps) while another process holds
            # it: no later statement of the transaction can then meet a lock. BEGIN and COMMIT
            # go to sqlite3 directly (SQLAlchemy's statement machinery costs more than they do).
            await with_busy_retry(lambda: raw.execute("BEGIN IMMEDIATE"), self._busy_timeout)
            yield InlineConnection(sync, self._busy_timeout)
            # Retried while busy; ``sync.begin()`` then finds nothing left to commit.
            await with_busy_retry(raw.commit, self._busy_timeout)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[DbConnection]:
        """For writes that are each one statement, atomic on its own (an ``INSERT ... ON CONFLICT``,
        a conditional ``UPDATE``): on PostgreSQL each commits as it runs, without BEGIN and COMMIT
        round trips; on SQLite this is :meth:`write` (a statement there is microseconds)."""
        if self.engine is None:
            async with self.write() as conn:
                yield conn
            return
        async with self._pg.session(transaction=False, autocommit=True) as pg:
            yield pg
        self.generation += 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[DbConnection]:
        if self.engine is not None:
            # No transaction for prepared statements: under READ COMMITTED each statement has its
            # own snapshot in one anyway (a statement SQLAlchemy runs begins one, rolled back).
            async with self._pg.session(transaction=False) as pg:
                yield pg
            return
        with await self._connect() as sync:
            raw = sync.connection.dbapi_connection
            assert raw is not None
            # One snapshot for the whole block (WAL; a deferred BEGIN takes no lock). The pool's
            # rollback when the connection goes back ends it.
            raw.execute("BEGIN")
            yield InlineConnection(sync, self._busy_timeout)

    async def _connect(self) -> Connection:
        # A new pooled connection runs its PRAGMAs, which can meet another process's lock too.
        return await with_busy_retry(self.sync_engine.connect, self._busy_timeout)

    async def dispose(self) -> None:
        if self.engine is not None:
            await self._pg.dispose()
            await self.engine.dispose()
        else:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self.sync_engine.dispose()


def _install_sqlite_discipline(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # No implicit transactions: Database.read() and write() issue BEGIN themselves (and not
        # from a SQLAlchemy event listener, which would make every statement dispatch events).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 0")  # waiting is done with asyncio sleeps (sqlite_inline)
        # WAL is a property of the file: set once, by the first connection (switching needs a lock).
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()
