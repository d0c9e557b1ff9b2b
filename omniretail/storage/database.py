"""The database handle: an async SQLAlchemy engine with the write discipline the stock rules need.

* SQLite (the embedded default): WAL, foreign keys, and every write transaction begins
  ``IMMEDIATE`` so two writers never both read then both write. Statements run on the event
  loop's thread (``sqlite_inline``: no helper-thread round trips). Writers in one process queue on
  an asyncio lock; writers in other processes are serialised by SQLite's lock, waited for with
  asyncio sleeps for up to 30 s (the busy timeout).
* PostgreSQL: READ COMMITTED; correctness comes from conditional UPDATEs, never from
  ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from omniretail.storage.sqlite_inline import inline_creator

_WRITE = "omniretail_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT for ``conn``'s database that knows ``ON CONFLICT`` (SQLite's or PostgreSQL's)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


_IGNORING: dict[tuple[str, str], Any] = {}


def insert_or_ignore(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` (built once per dialect and table): a duplicate
    leaves rowcount 0 instead of raising (one statement, where a savepoint costs three)."""
    key = (conn.dialect.name, table.name)
    stmt = _IGNORING.get(key)
    if stmt is None:
        stmt = _IGNORING[key] = dialect_insert(conn, table).on_conflict_do_nothing()
    return stmt


def normalize_url(url: str, base_dir: Path | None = None) -> str:
    """Pick the async driver for a plain URL and resolve a relative SQLite path against the
    configuration file's folder (so the store does not depend on the working directory)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
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
    """Owns the engine. ``write()`` and ``read()`` hand out connections inside a transaction."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            # Statements run on the loop's thread; a busy database is waited for with asyncio
            # sleeps, never by blocking the loop (see sqlite_inline).
            parsed = make_url(url)
            database = parsed.database or ":memory:"
            kwargs["async_creator"] = inline_creator(
                database,
                uri=database.startswith("file:") or bool(parsed.query.get("uri")),
                busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            )
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        #: Bumped after every write transaction this process commits: read caches key on it.
        self.generation = 0
        if self.dialect == "sqlite":
            _install_sqlite_discipline(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        if self._write_lock is not None:
            async with self._write_lock, self.engine.connect() as conn:
                conn = await conn.execution_options(**{_WRITE: True})
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn
        self.generation += 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


def _install_sqlite_discipline(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred-only).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 0")  # waiting is the connection's job (sqlite_inline)
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
