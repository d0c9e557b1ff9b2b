from __future__ import annotations

import asyncio

import pytest

from omniretail.domain.errors import NotFound, OutOfStock
from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from tests.integration.helpers import buy, draft, on_hand


async def test_adjust_creates_and_refuses_to_go_below_reserved(kernel: Kernel) -> None:
    await kernel.catalog.create(draft("S-1"))
    level = await kernel.inventory.adjust("S-1", "wh", 5)
    assert (level.on_hand, level.reserved) == (5, 0)
    await kernel.inventory.reserve("S-1", "wh", 3, reference="cart_x")
    with pytest.raises(OutOfStock):
        await kernel.inventory.adjust("S-1", "wh", -3)  # only 2 are free
    assert (await kernel.inventory.adjust("S-1", "wh", -2)).on_hand == 3
    with pytest.raises(NotFound):
        await kernel.inventory.adjust("S-1", "nowhere", 1)


async def test_reservations_hold_stock_until_they_expire(kernel: Kernel, clock: FakeClock) -> None:
    await kernel.catalog.create(draft("S-2"))
    await kernel.inventory.adjust("S-2", "wh", 4)
    held = await kernel.inventory.reserve("S-2", "wh", 3, reference="cart_a", minutes=15)
    assert (await kernel.inventory.available(["S-2"]))["S-2"] == 1
    with pytest.raises(OutOfStock):
        await kernel.inventory.reserve("S-2", "wh", 2, reference="cart_b")
    clock.advance(minutes=16)
    # Expired: ignored at read time, before any sweep ran.
    assert (await kernel.inventory.available(["S-2"]))["S-2"] == 4
    assert not await kernel.inventory.commit(held.id)  # too late to turn into a sale
    second = await kernel.inventory.reserve("S-2", "wh", 4, reference="cart_b")
    assert await kernel.inventory.commit(second.id)
    assert not await kernel.inventory.commit(second.id)  # once only
    levels = await kernel.inventory.levels(["S-2"], ["wh"])
    assert (levels[0].on_hand, levels[0].reserved) == (0, 0)


async def test_release_returns_the_hold_once(kernel: Kernel) -> None:
    await kernel.catalog.create(draft("S-3"))
    await kernel.inventory.adjust("S-3", "wh", 2)
    held = await kernel.inventory.reserve("S-3", "wh", 2, reference="cart_c")
    assert await kernel.inventory.release(held.id)
    assert not await kernel.inventory.release(held.id)
    assert (await kernel.inventory.available(["S-3"]))["S-3"] == 2


async def test_concurrent_reservations_never_exceed_on_hand(kernel: Kernel) -> None:
    await kernel.catalog.create(draft("S-4"))
    await kernel.inventory.adjust("S-4", "wh", 10)

    async def hold(i: int) -> bool:
        try:
            await kernel.inventory.reserve("S-4", "wh", 1, reference=f"c{i}")
        except OutOfStock:
            return False
        return True

    results = await asyncio.gather(*(hold(i) for i in range(40)))
    assert sum(results) == 10
    levels = await kernel.inventory.levels(["S-4"], ["wh"])
    assert (levels[0].on_hand, levels[0].reserved, levels[0].available) == (10, 10, 0)


async def test_checkout_sells_only_unreserved_units(kernel: Kernel, clock: FakeClock) -> None:
    await kernel.catalog.create(draft("S-5"))
    await kernel.inventory.adjust("S-5", "wh", 2)
    await kernel.inventory.reserve("S-5", "wh", 2, reference="cart_z", minutes=5)
    with pytest.raises(OutOfStock):
        await buy(kernel, {"S-5": 1}, locations=("wh",))
    clock.advance(minutes=6)
    order = await buy(kernel, {"S-5": 2}, locations=("wh",))  # the expired hold is swept
    assert order.lines[0].quantity == 2
    assert await on_hand(kernel, "S-5", "wh") == 0
