"""Events reach the plugins' notification hooks after commit, at least once, with retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from omniretail import hookimpl
from omniretail.domain.cart import Cart, CartLine
from omniretail.domain.events import CartCreated, CartLineChanged, Event, OrderPlaced
from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.storage import tables as t
from omniretail.storage.outbox import OutboxStore
from omniretail.storage.repositories import PendingWriteFailed, SqlUnitOfWork
from omniretail.worker import OutboxWorker, backoff_delay
from tests.conftest import store_config
from tests.integration.helpers import buy, draft


class Recorder:
    """A test plugin: records every notification; can be told to fail."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.placed: list[str] = []
        self.fail_next = 0

    @hookimpl
    def event_committed(self, event: Event, kernel: Kernel) -> Any:
        async def note() -> None:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("receiver down")
            self.committed.append(event.id)

        return note()

    @hookimpl
    def order_placed(self, event: OrderPlaced, kernel: Kernel) -> None:
        self.placed.append(event.number)


@pytest.fixture
async def recorded(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[Kernel, Recorder]]:
    recorder = Recorder()
    kernel = Kernel.from_config(store_config(db_url), plugins=[recorder], base_dir=str(tmp_path), clock=clock)
    async with kernel:
        yield kernel, recorder


async def test_events_are_delivered_after_commit_in_order(recorded: tuple[Kernel, Recorder]) -> None:
    kernel, recorder = recorded
    await kernel.catalog.create(draft("OB-1"))
    await kernel.inventory.adjust("OB-1", "wh", 3)
    order = await buy(kernel, {"OB-1": 1})
    assert recorder.committed == []  # nothing is delivered inside the transaction
    worker = OutboxWorker(kernel)
    delivered = await worker.drain()
    assert delivered == len(recorder.committed) >= 5
    assert recorder.placed == [order.number]
    async with kernel.db.read() as conn:
        ids = (await conn.scalars(select(t.events.c.id).order_by(t.events.c.seq))).all()
    assert recorder.committed == list(ids)
    assert await worker.drain() == 0
    assert await OutboxStore(kernel.db).counts() == {"done": delivered}


async def test_a_failing_hook_is_retried_with_backoff_then_given_up(
    recorded: tuple[Kernel, Recorder], clock: FakeClock
) -> None:
    kernel, recorder = recorded
    await kernel.catalog.create(draft("OB-2"))
    recorder.fail_next = 1
    worker = OutboxWorker(kernel)
    assert await worker.run_once() == 1
    assert recorder.committed == []
    assert await worker.run_once() == 0  # not due yet: backing off
    clock.advance(seconds=kernel.config.worker.backoff_seconds * 2 + 1)
    assert await worker.run_once() == 1
    assert len(recorder.committed) == 1
    # A receiver that never recovers: given up after max_attempts, marked failed.
    await kernel.catalog.create(draft("OB-3"))
    recorder.fail_next = 10_000
    for _ in range(kernel.config.worker.max_attempts + 2):
        await worker.run_once()
        clock.advance(hours=2)
    counts = await OutboxStore(kernel.db).counts()
    assert counts.get("failed") == 1


def test_backoff_has_full_jitter_and_grows() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_delay(5, 2.0, rng) for _ in range(200)]
    assert 0 <= min(delays) < 10 and 50 < max(delays) <= 64
    assert len(set(delays)) > 150  # jittered, not a fixed schedule
    assert backoff_delay(100, 2.0, rng) <= 3600


async def test_a_crashed_workers_lease_runs_out_and_another_delivers(
    recorded: tuple[Kernel, Recorder], clock: FakeClock
) -> None:
    kernel, recorder = recorded
    await kernel.catalog.create(draft("OB-4"))
    crashed = OutboxStore(kernel.db)
    claimed = await crashed.claim("dead-worker", clock(), limit=10, lease_seconds=30)
    assert len(claimed) == 1
    live = OutboxWorker(kernel, name="live")
    assert await live.run_once() == 0  # leased by the dead worker
    clock.advance(seconds=31)
    assert await live.run_once() == 1
    assert len(recorder.committed) == 1


async def test_concurrent_claimers_take_disjoint_batches(recorded: tuple[Kernel, Recorder]) -> None:
    kernel, _ = recorded
    for i in range(30):
        await kernel.catalog.create(draft(f"OB-C{i}"))
    store = OutboxStore(kernel.db)
    batches = await asyncio.gather(*(store.claim(f"w{i}", kernel.clock(), limit=7, lease_seconds=60) for i in range(6)))
    seqs = [seq for batch in batches for seq, _, _ in batch]
    assert len(seqs) == len(set(seqs)) == 30


async def test_a_batch_lets_other_tasks_run_between_events(recorded: tuple[Kernel, Recorder]) -> None:
    """On SQLite a dispatch never waits on I/O; the worker still yields between events, so the
    requests its gateway process serves are not held for a whole batch."""
    kernel, recorder = recorded
    await kernel.catalog.create(draft("OB-Y"))
    for _ in range(20):
        await kernel.inventory.adjust("OB-Y", "wh", 1)
    await OutboxWorker(kernel).drain()  # the product's own events
    for _ in range(30):
        await kernel.inventory.adjust("OB-Y", "wh", 1)
    seen: list[int] = []

    async def other_task() -> None:
        while True:
            seen.append(len(recorder.committed))
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    before = len(recorder.committed)
    handled = await OutboxWorker(kernel).run_once()
    task.cancel()
    assert handled == 30
    # The other task ran while the batch was being delivered, not only before and after it.
    assert len({n for n in seen if before < n < before + 30}) >= 10


async def test_a_transactions_events_are_written_together_in_order(recorded: tuple[Kernel, Recorder]) -> None:
    """Events a transaction records are written when it commits (in statements of up to eight),
    in the order recorded, each with its outbox row; the log's own reads and adopting a cart see
    those still pending; a transaction that fails writes none."""
    kernel, _ = recorded
    now = kernel.clock()

    def line(i: int) -> CartLineChanged:
        return CartLineChanged(
            id=f"evt_batch_{i:02d}",
            occurred_at=now,
            channel="web",
            actor="customer",
            cart_id="crt_b",
            sku="S",
            quantity=i,
        )

    uow = SqlUnitOfWork(kernel.db)
    async with uow.write() as tx:
        for i in range(11):
            await tx.events.record(line(i))
        assert [e.id for _, e in await tx.events.for_cart("crt_b")] == [f"evt_batch_{i:02d}" for i in range(11)]
        await tx.events.record(line(11))
        await tx.events.adopt_cart("crt_b", "cus_b")
        await tx.events.record(line(12))  # recorded after the adoption: keeps its own (no) customer
    with pytest.raises(RuntimeError):
        async with uow.write() as tx:
            await tx.events.record(line(13))
            raise RuntimeError("rolled back")
    async with kernel.db.read() as conn:
        rows = (
            await conn.execute(
                select(t.events.c.seq, t.events.c.id, t.events.c.customer_id, t.outbox.c.status)
                .join(t.outbox, t.outbox.c.event_seq == t.events.c.seq)
                .where(t.events.c.cart_id == "crt_b")
                .order_by(t.events.c.seq)
            )
        ).all()
    assert [r.id for r in rows] == [f"evt_batch_{i:02d}" for i in range(13)]
    assert [r.customer_id for r in rows] == ["cus_b"] * 12 + [None]
    assert {r.status for r in rows} == {"pending"}


async def test_a_new_cart_is_written_with_its_event_and_seen_by_its_own_transaction(
    recorded: tuple[Kernel, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new cart and its lines are pending writes: written with the transaction's events, before
    any later statement of the transaction (which then sees them), never if it fails. On
    PostgreSQL a block of only pending writes is one statement, without a transaction."""
    kernel, _ = recorded
    uow = SqlUnitOfWork(kernel.db)
    begun: list[object] = []
    if not kernel.db.is_sqlite:
        from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection as Adapted

        start = Adapted._start_transaction

        async def counted(self: Adapted) -> None:
            begun.append(self)
            await start(self)

        monkeypatch.setattr(Adapted, "_start_transaction", counted)

    def cart(cart_id: str) -> Cart:
        now = kernel.clock()
        lines = (CartLine(sku="A", quantity=1), CartLine(sku="B", quantity=2))
        return Cart(
            id=cart_id, currency="EUR", channel="web", channels=("web",), lines=lines, created_at=now, updated_at=now
        )

    def created(cart_id: str) -> CartCreated:
        return CartCreated(
            id=f"evt_{cart_id}", occurred_at=kernel.clock(), channel="web", actor="customer", cart_id=cart_id
        )

    async with uow.write() as tx:
        await tx.carts.insert(cart("crt_alone"))
        await tx.events.record(created("crt_alone"))
    assert begun == []  # PostgreSQL: one statement on its own (nothing to count on SQLite)
    async with uow.write() as tx:
        await tx.carts.insert(cart("crt_read_back"))
        await tx.events.record(created("crt_read_back"))
        again = await tx.carts.get("crt_read_back")  # the pending rows are written first
        assert again is not None and [x.sku for x in again.lines] == ["A", "B"]
    assert len(begun) == (0 if kernel.db.is_sqlite else 1)
    with pytest.raises(RuntimeError):
        async with uow.write() as tx:
            await tx.carts.insert(cart("crt_failed"))
            await tx.events.record(created("crt_failed"))
            raise RuntimeError("never written")
    async with uow.read() as tx:
        for cart_id in ("crt_alone", "crt_read_back"):
            stored = await tx.carts.get(cart_id)
            assert stored is not None and [(x.sku, x.quantity) for x in stored.lines] == [("A", 1), ("B", 2)]
            assert [e.id for _, e in await tx.events.for_cart(cart_id)] == [f"evt_{cart_id}"]
        assert await tx.carts.get("crt_failed") is None
        assert await tx.events.for_cart("crt_failed") == []
    async with kernel.db.read() as conn:
        outboxed = await conn.scalar(
            select(func.count())
            .select_from(t.outbox.join(t.events, t.events.c.seq == t.outbox.c.event_seq))
            .where(t.events.c.cart_id.in_(["crt_alone", "crt_read_back"]))
        )
    assert outboxed == 2


async def test_a_failed_pending_write_is_not_taken_for_the_next_statements_own_error(
    recorded: tuple[Kernel, Recorder],
) -> None:
    """A pending row that fails when written (here a duplicate cart id) fails the transaction: it
    is not caught as the IntegrityError a later statement expects for itself (a handoff code
    already taken), which would lose the row and commit the rest."""
    kernel, _ = recorded
    uow = SqlUnitOfWork(kernel.db)
    now = kernel.clock()
    cart = Cart(id="crt_dup", currency="EUR", channel="web", channels=("web",), created_at=now, updated_at=now)
    async with uow.write() as tx:
        await tx.carts.insert(cart)
    with pytest.raises(PendingWriteFailed if not kernel.db.is_sqlite else IntegrityError):  # SQLite: at once
        async with uow.write() as tx:
            await tx.carts.insert(msgspec.structs.replace(cart, channel="kiosk"))
            await tx.carts.create_handoff("CODE01", "crt_dup", "web", now, now + timedelta(minutes=5))
    async with uow.read() as tx:
        stored = await tx.carts.get("crt_dup")
        assert stored is not None and stored.channel == "web"
        assert await tx.carts.handoff("CODE01") is None


async def test_an_orders_lines_and_a_cart_adoption_go_out_with_the_events(
    recorded: tuple[Kernel, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order's lines and a cart's adoption are pending writes as well. On PostgreSQL the
    checkout's cart UPDATE, which cannot meet them, runs before them, and they go out with the
    events in one statement: the order, the cart and that statement, not five. A statement that
    reads them (the order read back) is preceded by them, on both databases."""
    from omniretail.domain.cart import CartStatus
    from omniretail.domain.order import Order, OrderLine

    kernel, _ = recorded
    uow = SqlUnitOfWork(kernel.db)
    now = kernel.clock()
    statements: list[str] = []
    if not kernel.db.is_sqlite:
        from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection as Adapted

        prepare = Adapted._prepare

        async def counted(self: Adapted, sql: str, *args: Any) -> Any:
            statements.append(sql)
            return await prepare(self, sql, *args)

        monkeypatch.setattr(Adapted, "_prepare", counted)

    def order(order_id: str, cart_id: str) -> Order:
        lines = tuple(
            OrderLine(line_no=n, sku=sku, title=sku, quantity=1, unit_price=500, total=500, location_id="wh")
            for n, sku in ((1, "A"), (2, "B"))
        )
        return Order(
            id=order_id,
            number=order_id.upper()[-9:],
            channel="web",
            customer_id="cus_o",
            currency="EUR",
            subtotal=1000,
            total=1000,
            lines=lines,
            cart_id=cart_id,
            created_at=now,
            updated_at=now,
        )

    guest = Cart(id="crt_o", currency="EUR", channel="web", channels=("web",), created_at=now, updated_at=now)
    async with uow.write() as tx:
        await tx.carts.insert(guest)
        await tx.events.record(CartCreated(id="evt_o0", occurred_at=now, channel="web", actor="c", cart_id="crt_o"))
    statements.clear()
    async with uow.write() as tx:
        assert await tx.orders.insert(order("ord_o1", "crt_o"))
        closed = msgspec.structs.replace(guest, status=CartStatus.CHECKED_OUT, version=guest.version + 1)
        assert await tx.carts.update(closed, guest.version, lines=False)
        await tx.events.adopt_cart("crt_o", "cus_o")
        await tx.events.record(
            OrderPlaced(
                id="evt_o1",
                occurred_at=now,
                channel="web",
                actor="c",
                customer_id="cus_o",
                order_id="ord_o1",
                number="O1",
                total=1000,
                currency="EUR",
                fulfilment="ship",
                cart_id="crt_o",
            )
        )
    if not kernel.db.is_sqlite:
        assert len(statements) == 3, statements
        assert statements[1].startswith("UPDATE carts") and "order_lines" in statements[2]
    async with uow.write() as tx:
        assert await tx.orders.insert(order("ord_o2", "crt_other"))
        again = await tx.orders.get("ord_o2")  # its lines are written first
        assert again is not None and [x.sku for x in again.lines] == ["A", "B"]
    async with uow.read() as tx:
        placed = await tx.orders.get("ord_o1")
        assert placed is not None and [x.sku for x in placed.lines] == ["A", "B"]
        assert [e.id for _, e in await tx.events.for_customer("cus_o")] == ["evt_o0", "evt_o1"]


def test_a_statement_runs_before_pending_writes_only_if_it_cannot_meet_them() -> None:
    """Which statements may run while rows are pending (PostgreSQL): not one naming a pending
    table, nor a row pointing at a pending row or pointed at by one, nor a statement built for
    the call (its id may be another's later), nor a DELETE or a locking read."""
    from sqlalchemy import delete, insert, update

    from omniretail.storage import repositories as r
    from omniretail.storage.prepared import prepared

    lines = {"order_lines"}
    assert r._independent(r._UPDATE_CART, lines)  # the checkout's cart UPDATE
    assert r._independent(r._SELECT_CART, lines)
    assert not r._independent(r._SELECT_CART, {"cart_lines"})  # reads the pending table
    assert not r._independent(r._UPDATE_CART, {"cart_lines"})  # a pending line points at the cart
    add_line = prepared(insert(t.order_lines))
    assert not r._independent(add_line, {"orders"})  # would point at a pending order
    assert r._independent(prepared(insert(t.orders)), lines)
    assert not r._independent(prepared(update(t.orders).values(status="x")), lines)
    assert not r._independent(prepared(delete(t.carts)), lines)
    assert not r._independent(prepared(select(t.carts.c.id).with_for_update()), lines)
    assert not r._independent(update(t.carts).values(status="x"), lines)  # not prepared


async def test_an_adoption_reaches_its_own_carts_events_only(recorded: tuple[Kernel, Recorder]) -> None:
    """A cart adopted twice in one transaction keeps its first customer, and events of another
    cart recorded after the adopted ones were written stay guests (on PostgreSQL the adoption of
    pending events is remembered per event until it is written, and no longer)."""
    kernel, _ = recorded
    now = kernel.clock()

    def line(cart_id: str, i: int) -> CartLineChanged:
        return CartLineChanged(
            id=f"evt_{cart_id}_{i}", occurred_at=now, channel="web", actor="c", cart_id=cart_id, sku="S", quantity=i
        )

    uow = SqlUnitOfWork(kernel.db)
    async with uow.write() as tx:
        for i in range(8):
            await tx.events.record(line("crt_first", i))
        await tx.events.adopt_cart("crt_first", "cus_first")
        await tx.events.adopt_cart("crt_first", "cus_second")  # too late: the cart has its customer
        await tx.events.flush()  # as a read of the event log would
        for i in range(8):
            await tx.events.record(line("crt_other", i))
    async with kernel.db.read() as conn:
        ours = select(t.events.c.cart_id, t.events.c.customer_id).where(t.events.c.id.like("evt_crt_%"))
        rows = (await conn.execute(ours)).all()
    assert sorted(set(map(tuple, rows))) == [("crt_first", "cus_first"), ("crt_other", None)]
