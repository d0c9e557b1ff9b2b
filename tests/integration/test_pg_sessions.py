"""PostgreSQL: a process keeps its connections and hands them from block to block
(``storage.postgres.PgSessions``) instead of a SQLAlchemy pool checkout per block. Kept
connections must never carry one block's transaction, failure or lost session into the next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, exc, func, insert, select, text

from omniretail.storage.database import Database, normalize_url
from omniretail.storage.prepared import prepared

metadata = MetaData()
notes = Table("session_notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(40)))

ADD = prepared(insert(notes))
PLAIN_ADD = insert(notes)  # not prepared: SQLAlchemy runs it (and begins its own transaction)
BODIES = prepared(select(notes.c.body).order_by(notes.c.id))
PID = prepared(select(func.pg_backend_pid()))
# Whether the session is inside a transaction block (a statement outside one runs in its own).
IN_TRANSACTION = prepared(
    select(func.count())
    .select_from(text("pg_stat_activity"))
    .where(text("pid = pg_backend_pid() AND backend_xid IS NOT NULL"))
)
SLEEP = prepared(select(func.pg_sleep(bindparam("seconds"))))


@pytest.fixture
async def pg(postgres_url: str | None) -> AsyncIterator[Database]:
    if postgres_url is None:
        pytest.skip("OMNIRETAIL_TEST_POSTGRES_URL is not set")
    database = Database(normalize_url(postgres_url), pool_size=2)
    async with database.write() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    yield database
    async with database.write() as conn:
        await conn.run_sync(metadata.drop_all)
    await database.dispose()


async def bodies(db: Database) -> list[str]:
    async with db.read() as conn:
        return list((await conn.scalars(BODIES)).all())


@asynccontextmanager
async def holding(pg: Database, n: int) -> AsyncIterator[list[int]]:
    """``n`` read blocks held open (their backend pids) until the ``async with`` ends."""
    release = asyncio.Event()
    pids: list[int] = []

    async def hold() -> None:
        async with pg.read() as conn:
            pids.append((await conn.execute(PID)).scalar_one())
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(n)]
    try:
        while len(pids) < n:
            await asyncio.sleep(0.01)
        yield pids
    finally:
        release.set()
        await asyncio.gather(*holders)


async def idle_connections(pg: Database, n: int) -> list[int]:
    """Make ``n`` connections idle in ``pg``'s pool; their backend pids."""
    async with holding(pg, n) as pids:
        pass
    return pids


async def terminate(pg: Database, pids: list[int]) -> None:
    """End these sessions from another process's side, as a server restart would."""
    killer = Database(pg.url, pool_size=1)
    try:
        async with killer.autocommit() as conn:
            for pid in pids:
                await conn.execute(select(func.pg_terminate_backend(pid)))
    finally:
        await killer.dispose()


async def test_blocks_reuse_one_connection_and_leave_no_transaction_open(pg: Database) -> None:
    async with pg.write() as conn:
        first = await conn.scalar(PID)
        await conn.execute(ADD, {"id": 1, "body": "a"})
    async with pg.read() as conn:
        assert await conn.scalar(PID) == first  # kept, not a new session
        # The write block's transaction was committed, and nothing is left open.
        assert await conn.scalar(IN_TRANSACTION) == 0
    assert await bodies(pg) == ["a"]


async def test_a_failed_write_block_is_rolled_back_and_its_connection_is_clean(pg: Database) -> None:
    with pytest.raises(RuntimeError):
        async with pg.write() as conn:
            pid = await conn.scalar(PID)
            await conn.execute(ADD, {"id": 1, "body": "prepared"})
            await conn.execute(PLAIN_ADD, {"id": 2, "body": "through sqlalchemy"})
            raise RuntimeError("the block fails after both statements")
    assert await bodies(pg) == []
    async with pg.write() as conn:
        assert await conn.scalar(PID) == pid
        await conn.execute(ADD, {"id": 3, "body": "c"})
    assert await bodies(pg) == ["c"]


async def test_a_write_block_with_sqlalchemy_statements_commits_them_all(pg: Database) -> None:
    async with pg.write() as conn:
        await conn.execute(ADD, {"id": 1, "body": "prepared first"})
        await conn.execute(PLAIN_ADD, {"id": 2, "body": "then sqlalchemy"})
        async with conn.begin_nested():
            await conn.execute(ADD, {"id": 3, "body": "in a savepoint"})
    assert await bodies(pg) == ["prepared first", "then sqlalchemy", "in a savepoint"]
    async with pg.read() as conn:
        assert await conn.scalar(IN_TRANSACTION) == 0


async def test_an_autocommit_block_commits_each_statement_as_it_runs(pg: Database) -> None:
    with pytest.raises(RuntimeError):
        async with pg.autocommit() as conn:
            await conn.execute(ADD, {"id": 1, "body": "prepared"})
            await conn.execute(PLAIN_ADD, {"id": 2, "body": "through sqlalchemy"})
            raise RuntimeError("too late to undo them")
    assert await bodies(pg) == ["prepared", "through sqlalchemy"]


async def test_a_read_block_rolls_back_what_sqlalchemy_began(pg: Database) -> None:
    async with pg.read() as conn:
        pid = await conn.scalar(PID)
        await conn.execute(select(func.txid_current()))  # through SQLAlchemy, in a transaction
        assert await conn.scalar(IN_TRANSACTION) == 1
    async with pg.read() as conn:
        assert await conn.scalar(PID) == pid
        assert await conn.scalar(IN_TRANSACTION) == 0


async def test_connections_are_bounded_and_only_pool_size_of_them_kept(pg: Database) -> None:
    # pool_size 2: up to 4 open at once; a fifth block waits for one of them.
    inside = 0
    most = 0
    release = asyncio.Event()
    pids: set[int] = set()

    async def block() -> None:
        nonlocal inside, most
        async with pg.read() as conn:
            pids.add((await conn.execute(PID)).scalar_one())
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(block()) for _ in range(6)]
    await asyncio.sleep(0.5)
    assert most == 4 and len(pids) == 4
    release.set()
    await asyncio.gather(*tasks)
    assert len(pids) == 4  # the two that waited got connections the first four gave back
    async with pg.read() as conn:
        kept = await conn.scalar(PID)
    assert kept in pids
    async with pg.autocommit() as conn:  # the other two were closed
        alive = await conn.scalar(
            select(func.count()).select_from(text("pg_stat_activity")).where(text("pid = ANY(:pids)")),
            {"pids": sorted(pids)},
        )
    assert alive == 2


async def test_a_block_waits_only_so_long_for_a_connection(pg: Database) -> None:
    pg._pg.timeout = 0.3

    async def fifth() -> None:
        async with pg.read():
            pass

    async with holding(pg, 4):  # every connection pool_size 2 allows
        with pytest.raises(exc.TimeoutError, match=r"database\.pool_size"):
            await asyncio.wait_for(fifth(), 5)  # a wait without end fails here (asyncio's TimeoutError)
    async with pg.read() as conn:  # and the slots the timed-out wait never took are all free
        assert await conn.scalar(PID)


async def test_a_cancelled_block_drops_its_connection(pg: Database) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    async def slow() -> None:
        async with pg.write() as conn:
            pids.append((await conn.execute(PID)).scalar_one())
            await conn.execute(ADD, {"id": 1, "body": "never committed"})
            started.set()
            await asyncio.sleep(10)  # cancelled here, between statements, in the transaction

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with pg.write() as conn:
        assert await conn.scalar(PID) != pids[0]
        await conn.execute(ADD, {"id": 1, "body": "the id is free"})
    assert await bodies(pg) == ["the id is free"]


async def test_when_the_server_ends_the_sessions_one_block_fails_and_the_idle_ones_are_dropped(
    pg: Database,
) -> None:
    pids = await idle_connections(pg, 2)
    await terminate(pg, pids)
    with pytest.raises(exc.DBAPIError) as raised:
        async with pg.read() as conn:
            await conn.scalar(PID)
    assert raised.value.connection_invalidated
    for _ in range(3):  # the other idle one was dropped with it: no second failure
        async with pg.read() as conn:
            assert await conn.scalar(PID) not in pids


async def test_a_cancelled_statement_drops_its_connection_only(pg: Database) -> None:
    idle = await idle_connections(pg, 2)
    started = asyncio.Event()

    async def slow() -> None:
        async with pg.write() as conn:
            started.set()
            await conn.execute(SLEEP, {"seconds": 5})

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.2)  # inside the statement now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with pg.read() as conn:  # the other idle connection is still there (not a lost server)
        assert await conn.scalar(PID) in idle
    for _ in range(4):  # and every connection handed out works, in a transaction of its own
        async with pg.write() as conn:
            assert (await conn.execute(SLEEP, {"seconds": 0})).rowcount == 1


@pytest.mark.parametrize("go_on", ["execute", "exec_driver_sql"])
async def test_a_write_block_whose_connection_was_lost_cannot_go_on(pg: Database, go_on: str) -> None:
    with pytest.raises(exc.PendingRollbackError, match="connection was lost"):
        async with pg.write() as conn:
            await conn.execute(ADD, {"id": 1, "body": "lost with its transaction"})
            await terminate(pg, [(await conn.execute(PID)).scalar_one()])
            with pytest.raises(exc.DBAPIError):
                await conn.execute(ADD, {"id": 2, "body": "fails: the connection is gone"})
            # Caught, and the block goes on: it must not run the rest on a new connection, through
            # a statement SQLAlchemy runs or one of its own methods.
            if go_on == "execute":
                await conn.execute(PLAIN_ADD, {"id": 3, "body": "would be half a transaction"})
            else:
                await conn.exec_driver_sql("SELECT 1")
    assert await bodies(pg) == []


async def test_a_store_on_this_machine_is_reached_over_its_unix_socket(pg: Database, postgres_url: str) -> None:
    """``postgresql://user@/db?host=/socket/dir`` (what docs/deployment.md recommends when
    PostgreSQL runs on the gateway's machine) reaches the same database over the server's Unix
    socket: a write committed there is read back over TCP."""
    from sqlalchemy.engine import make_url

    async with pg.read() as conn:
        directory = str(await conn.scalar(text("SHOW unix_socket_directories"))).split(",")[0].strip()
        port = await conn.scalar(text("SHOW port"))
    tcp = make_url(postgres_url)
    over_socket = tcp.set(host=None, port=None, query={"host": directory, "port": str(port)})
    socket_db = Database(normalize_url(over_socket.render_as_string(hide_password=False)))
    try:
        async with socket_db.write() as conn:
            await conn.execute(ADD, {"id": 7, "body": "over the socket"})
            transport = await conn.scalar(text("SELECT inet_client_addr() IS NULL"))
    finally:
        await socket_db.dispose()
    assert transport is True  # no client address: a Unix-domain connection
    async with pg.read() as conn:
        assert (await conn.scalars(BODIES)).all() == ["over the socket"]
