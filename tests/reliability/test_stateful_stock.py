"""A Hypothesis state machine over stock: receipts and write-offs, reservations that expire (a
FakeClock moves), carts and checkout, cancel, ship and return, driven through the kernel services
on SQLite, each run on its own event loop.

A model predicts every outcome (will this reservation or checkout succeed, from which location,
will this commit or release take effect) and mirrors on-hand stock per SKU and location; after
every step the invariants are checked against the database:

* stock is never negative, and live reservations never exceed what is on hand;
* units are conserved per SKU across locations: received - written off = on hand + sold - returned
  (sold: units of orders not cancelled, and committed reservations);
* reserved + sold <= received;
* the ``reserved`` counter equals the reservations still active, and an expired reservation never
  blocks a sale or a hold (the model counts only live ones, and the kernel must agree).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule
from sqlalchemy import func, select

from omniretail.domain.errors import DomainError, OutOfStock
from omniretail.domain.order import OrderStatus
from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft
from omniretail.services.clock import FakeClock
from omniretail.services.orders import CheckoutRequest
from omniretail.storage import tables as t
from tests.conftest import store_config

SKUS = ("SKU-A", "SKU-B")
#: Where the kernel sells from, in preference order; store-b only gets stock from returns.
LOCATIONS = ("wh", "store-a", "store-b")
CHANNEL = "webshop"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
#: What the runs did, so the test can tell it exercised the interesting paths.
SEEN: Counter[str] = Counter()


def config(url: str) -> dict[str, Any]:
    """The test store's locations and no channel plugins (the kernel services need none; loading
    entry points for every run would only slow it). A channel without a ``[channels]`` table sells
    from every location, in order: wh, store-a, store-b."""
    return store_config(url, channels={})


class Template:
    """One migrated SQLite store with the two products; each run starts from a copy of it."""

    path: Path | None = None
    folder: Path | None = None

    @classmethod
    def fresh(cls) -> tuple[Path, str]:
        """A new folder (inside the template's, removed with it) holding a copy of the store."""
        if cls.path is None:
            cls.folder = Path(tempfile.mkdtemp(prefix="omni-stateful-"))
            cls.path = cls.folder / "template.db"

            async def build() -> None:
                kernel = Kernel.from_config(
                    config(f"sqlite:///{cls.path}"), entry_points=False, base_dir=str(cls.folder)
                )
                async with kernel:
                    for sku in SKUS:
                        draft = {
                            "handle": sku.lower(),
                            "title": sku,
                            "variants": [{"sku": sku, "prices": [{"amount": 250, "currency": "EUR"}]}],
                        }
                        await kernel.catalog.create(msgspec.convert(draft, ProductDraft))

            asyncio.run(build())
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=cls.folder))
        shutil.copyfile(cls.path, folder / "store.db")
        return folder, f"sqlite:///{folder / 'store.db'}"

    @classmethod
    def remove(cls) -> None:
        if cls.folder is not None:
            shutil.rmtree(cls.folder, ignore_errors=True)
        cls.path = cls.folder = None


@pytest.fixture(scope="module", autouse=True)
def _template() -> Any:
    yield
    Template.remove()


@dataclass
class Hold:
    sku: str
    location: str
    quantity: int
    expires_at: datetime
    #: active | committed | released | expired (swept, or known to be over)
    state: str = "active"


@dataclass
class Placed:
    id: str
    #: (line_no, sku, quantity, location)
    lines: list[tuple[int, str, int, str]]
    status: OrderStatus = OrderStatus.PLACED
    returned: dict[int, int] | None = None

    def returnable(self, line_no: int) -> int:
        qty = next(q for n, _s, q, _l in self.lines if n == line_no)
        return qty - (self.returned or {}).get(line_no, 0)


class StockMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.folder, url = Template.fresh()
        self.clock = FakeClock(START)
        self.kernel = Kernel.from_config(config(url), entry_points=False, base_dir=str(self.folder), clock=self.clock)
        self.run(self.kernel.start())
        self.on_hand: dict[tuple[str, str], int] = defaultdict(int)
        self.received: dict[str, int] = defaultdict(int)
        self.written_off: dict[str, int] = defaultdict(int)
        self.hold_list: dict[str, Hold] = {}
        self.emails = 0

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            self.run(self.kernel.close())
        finally:
            self.runner.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- the model -------------------------------------------------------------------------------

    def live_reserved(self, sku: str, location: str) -> int:
        now = self.clock()
        return sum(
            h.quantity
            for h in self.hold_list.values()
            if h.state == "active" and h.expires_at > now and (h.sku, h.location) == (sku, location)
        )

    def available(self, sku: str, location: str) -> int:
        return self.on_hand[(sku, location)] - self.live_reserved(sku, location)

    def expired_holds_at(self, sku: str, location: str) -> int:
        """Units of holds here that expired but may still be counted in the table."""
        now = self.clock()
        return sum(
            h.quantity
            for h in self.hold_list.values()
            if h.state == "active" and h.expires_at <= now and (h.sku, h.location) == (sku, location)
        )

    def swept(self, sku: str, location: str) -> None:
        """The kernel swept this stock row: its expired holds are over."""
        now = self.clock()
        for h in self.hold_list.values():
            if h.state == "active" and h.expires_at <= now and (h.sku, h.location) == (sku, location):
                h.state = "expired"

    # -- rules -----------------------------------------------------------------------------------

    @initialize(quantities=st.lists(st.integers(1, 8), min_size=4, max_size=4))
    def first_deliveries(self, quantities: list[int]) -> None:
        for (sku, location), qty in zip([(sku, loc) for sku in SKUS for loc in LOCATIONS[:2]], quantities, strict=True):
            self.receive(sku, location, qty)

    @rule(sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS[:2]), qty=st.integers(1, 6))
    def receive(self, sku: str, location: str, qty: int) -> None:
        level = self.run(self.kernel.inventory.adjust(sku, location, qty, reason="delivery"))
        self.swept(sku, location)
        self.on_hand[(sku, location)] += qty
        self.received[sku] += qty
        assert level.on_hand == self.on_hand[(sku, location)]

    @rule(sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), qty=st.integers(1, 4))
    def write_off(self, sku: str, location: str, qty: int) -> None:
        allowed = self.available(sku, location) >= qty
        try:
            self.run(self.kernel.inventory.adjust(sku, location, -qty, reason="damaged"))
        except OutOfStock:
            assert not allowed, "a write-off of free units was refused"
            SEEN["write-off refused"] += 1
            return
        assert allowed, "a write-off took units that were held or not there"
        self.swept(sku, location)
        self.on_hand[(sku, location)] -= qty
        self.written_off[sku] += qty
        SEEN["write-off"] += 1

    @rule(
        target=holds,
        sku=st.sampled_from(SKUS),
        location=st.sampled_from(LOCATIONS[:2]),
        qty=st.integers(1, 3),
        minutes=st.integers(1, 20),
    )
    def reserve(self, sku: str, location: str, qty: int, minutes: int) -> Any:
        allowed = self.available(sku, location) >= qty
        try:
            hold = self.run(self.kernel.inventory.reserve(sku, location, qty, reference="machine", minutes=minutes))
        except OutOfStock:
            assert not allowed, f"a hold on {qty} free unit(s) was refused (expired holds blocking?)"
            SEEN["hold refused"] += 1
            return multiple()
        assert allowed, "a hold was granted on units that were not free"
        SEEN["hold"] += 1
        if self.expired_holds_at(sku, location):
            SEEN["hold despite expired holds"] += 1
        self.swept(sku, location)
        self.hold_list[hold.id] = Hold(sku, location, qty, hold.expires_at)
        return str(hold.id)

    @rule(hold=holds)
    def commit(self, hold: str) -> None:
        h = self.hold_list[hold]
        ok = self.run(self.kernel.inventory.commit(hold))
        expected = h.state == "active" and h.expires_at > self.clock()
        assert ok == expected, f"commit of a hold that is {h.state} (expires {h.expires_at}) -> {ok}"
        SEEN["commit" if ok else "commit refused"] += 1
        if ok:
            h.state = "committed"
            self.on_hand[(h.sku, h.location)] -= h.quantity

    @rule(hold=holds)
    def release(self, hold: str) -> None:
        h = self.hold_list[hold]
        ok = self.run(self.kernel.inventory.release(hold))
        if h.state != "active":
            assert not ok, f"released a hold that was {h.state}"
        elif h.expires_at > self.clock():
            assert ok, "a live hold could not be released"
        # An expired hold not yet swept is still "active" in the table: either answer is right.
        h.state = "released" if ok else "expired"

    @rule(minutes=st.integers(1, 15))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    @rule(target=orders, hold=holds)
    def sell_what_an_expired_hold_held(self, hold: str) -> Any:
        """Time reaches a live hold's expiry exactly; then a buyer wants every unit free there,
        the expired hold's units included."""
        h = self.hold_list[hold]
        if h.state != "active" or h.expires_at <= self.clock():
            return multiple()
        self.clock.now = h.expires_at
        return self.checkout({h.sku: self.available(h.sku, h.location)})

    @rule()
    def sweep(self) -> None:
        self.run(self.kernel.inventory.sweep())
        for sku in SKUS:
            for location in LOCATIONS:
                self.swept(sku, location)

    @rule(target=orders, lines=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 4), min_size=1, max_size=2))
    def checkout(self, lines: dict[str, int]) -> Any:
        # The model's allocation: per line in SKU order, the first location with enough free units.
        plan: dict[str, str] = {}
        taken: dict[tuple[str, str], int] = defaultdict(int)
        for sku in sorted(lines):
            for location in LOCATIONS:
                if self.available(sku, location) - taken[(sku, location)] >= lines[sku]:
                    plan[sku] = location
                    taken[(sku, location)] += lines[sku]
                    break
        possible = len(plan) == len(lines)
        self.emails += 1

        async def buy() -> Any:
            cart = await self.kernel.carts.create(channel=CHANNEL)
            for sku, qty in lines.items():
                await self.kernel.carts.set_quantity(cart.id, sku, qty, channel=CHANNEL)
            return await self.kernel.orders.checkout(
                CheckoutRequest(cart_id=cart.id, channel=CHANNEL, email=f"m{self.emails}@example.com")
            )

        try:
            order = self.run(buy())
        except OutOfStock:
            assert not possible, f"checkout of {lines} refused though the model had {plan} free"
            SEEN["checkout refused"] += 1
            return multiple()
        assert possible, f"checkout of {lines} sold units that were not free"
        SEEN["checkout"] += 1
        if any(self.expired_holds_at(sku, loc) for sku, loc in plan.items()):
            SEEN["sale despite expired holds"] += 1
        got = {line.sku: line.location_id for line in order.lines}
        assert got == plan, f"allocated {got}, the model expected {plan}"
        for line in order.lines:
            for location in LOCATIONS[: LOCATIONS.index(line.location_id) + 1]:
                self.swept(line.sku, location)
            self.on_hand[(line.sku, line.location_id)] -= line.quantity
        return Placed(order.id, [(x.line_no, x.sku, x.quantity, x.location_id) for x in order.lines])

    @rule(order=orders)
    def cancel(self, order: Placed) -> None:
        allowed = order.status in (OrderStatus.PLACED, OrderStatus.PAID)
        try:
            self.run(self.kernel.orders.transition(order.id, OrderStatus.CANCELLED, channel="admin"))
        except DomainError:
            assert not allowed, f"could not cancel an order that is {order.status}"
            return
        assert allowed, f"cancelled an order that was {order.status}"
        order.status = OrderStatus.CANCELLED
        SEEN["cancel"] += 1
        for line_no, sku, _qty, location in order.lines:
            self.on_hand[(sku, location)] += order.returnable(line_no)

    @rule(order=orders)
    def ship(self, order: Placed) -> None:
        if order.status is not OrderStatus.PLACED:
            return
        for target in (OrderStatus.PAID, OrderStatus.SHIPPED):
            self.run(self.kernel.orders.transition(order.id, target, channel="admin"))
        order.status = OrderStatus.SHIPPED

    @rule(order=orders, data=st.data())
    def return_units(self, order: Placed, data: st.DataObject) -> None:
        if order.status is not OrderStatus.SHIPPED:
            return
        line_no, sku, _qty, _loc = data.draw(st.sampled_from(order.lines), label="line")
        left = order.returnable(line_no)
        qty = data.draw(st.integers(1, max(left, 1) + 1), label="quantity")
        location = data.draw(st.sampled_from(LOCATIONS), label="returned at")
        try:
            updated = self.run(
                self.kernel.orders.return_line(order.id, line_no, qty, location_id=location, channel="kiosk")
            )
        except DomainError:
            assert qty > left, f"a return of {qty} of {left} returnable unit(s) was refused"
            return
        assert qty <= left, f"returned {qty} units of a line with {left} left"
        SEEN["return"] += 1
        order.returned = {**(order.returned or {}), line_no: (order.returned or {}).get(line_no, 0) + qty}
        self.on_hand[(sku, location)] += qty
        if all(order.returnable(n) == 0 for n, *_ in order.lines):
            assert updated.status is OrderStatus.RETURNED
            order.status = OrderStatus.RETURNED

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def stock_matches_and_is_conserved(self) -> None:
        now = self.clock()

        async def read() -> dict[str, Any]:
            async with self.kernel.db.read() as conn:
                sl, r, ol, o = t.stock_levels, t.reservations, t.order_lines, t.orders
                rows = (await conn.execute(select(sl.c.sku, sl.c.location_id, sl.c.on_hand, sl.c.reserved))).all()
                active = dict(
                    ((s, loc), int(q))
                    for s, loc, q in await conn.execute(
                        select(r.c.sku, r.c.location_id, func.sum(r.c.quantity))
                        .where(r.c.status == "active")
                        .group_by(r.c.sku, r.c.location_id)
                    )
                )
                committed = dict(
                    (s, int(q))
                    for s, q in await conn.execute(
                        select(r.c.sku, func.sum(r.c.quantity)).where(r.c.status == "committed").group_by(r.c.sku)
                    )
                )
                sold = dict(
                    (s, (int(q), int(back)))
                    for s, q, back in await conn.execute(
                        select(ol.c.sku, func.sum(ol.c.quantity), func.sum(ol.c.quantity_returned))
                        .join(o, o.c.id == ol.c.order_id)
                        .where(o.c.status != "cancelled")
                        .group_by(ol.c.sku)
                    )
                )
            levels = await self.kernel.inventory.levels(list(SKUS))
            return {"rows": rows, "active": active, "committed": committed, "sold": sold, "levels": levels}

        db = self.run(read())
        for sku, location, on_hand, reserved in db["rows"]:
            assert on_hand >= 0 and reserved >= 0, f"negative stock row {sku}@{location}: {on_hand}, {reserved}"
            assert reserved == db["active"].get((sku, location), 0), f"reserved counter drifted at {sku}@{location}"
            assert on_hand == self.on_hand[(sku, location)], (
                f"{sku}@{location}: {on_hand} on hand, model {self.on_hand[(sku, location)]}"
            )
        for level in db["levels"]:
            live = self.live_reserved(level.sku, level.location_id)
            assert level.reserved == live, f"{level.sku}@{level.location_id}: {level.reserved} held, {live} live"
            assert 0 <= level.reserved <= level.on_hand, f"holds exceed stock at {level.sku}@{level.location_id}"
        for sku in SKUS:
            on_hand = sum(row[2] for row in db["rows"] if row[0] == sku)
            sold, returned = db["sold"].get(sku, (0, 0))
            sold += db["committed"].get(sku, 0)
            net = self.received[sku] - self.written_off[sku]
            assert net == on_hand + sold - returned, f"{sku}: units not conserved"
            live = sum(self.live_reserved(sku, loc) for loc in LOCATIONS)
            assert live + sold - returned <= self.received[sku], f"{sku}: reserved + sold exceed received"
        assert now == self.clock()


def run_machine(examples: int, steps: int, *, shrink: bool) -> None:
    """Seeded (derandomized) runs. Shrinking a failing run replays it hundreds of times (minutes
    here), so the default run reports the failing run as found; the heavy run shrinks it."""
    from hypothesis.stateful import run_state_machine_as_test

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    run_state_machine_as_test(
        StockMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=True,
            database=None,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


#: Paths the runs must take, or they proved little (all of them are taken with the seeds used).
PATHS = (
    "hold",
    "hold refused",
    "hold despite expired holds",
    "commit",
    "commit refused",
    "checkout",
    "checkout refused",
    "sale despite expired holds",
    "write-off",
    "write-off refused",
    "cancel",
    "return",
)


def test_stock_invariants_hold_under_random_operations() -> None:
    SEEN.clear()
    run_machine(examples=30, steps=40, shrink=False)
    missing = [path for path in PATHS if not SEEN[path]]
    assert not missing, f"the runs never exercised {missing}: {dict(SEEN)}"


@pytest.mark.heavy
def test_stock_invariants_hold_under_many_random_operations() -> None:
    run_machine(examples=300, steps=60, shrink=True)
