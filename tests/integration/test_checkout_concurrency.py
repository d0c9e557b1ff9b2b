"""Stock is never oversold: 200 concurrent 1-unit checkouts from five channels against 50 units.

A control runs the naive read-modify-write path under the same load and shows it does oversell,
so the real test can fail.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from sqlalchemy import select, update

from omniretail.domain.errors import OutOfStock
from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft
from omniretail.services.orders import CheckoutRequest
from omniretail.storage import tables as t

CHANNELS = ["webshop", "marketplace", "kiosk", "social", "voice"]
STOCK = 50
ATTEMPTS = 200


def product(sku: str, price: int = 1000) -> ProductDraft:
    return msgspec.convert(
        {
            "handle": sku.lower(),
            "title": f"Item {sku}",
            "variants": [{"sku": sku, "prices": [{"amount": price, "currency": "EUR"}]}],
        },
        ProductDraft,
    )


async def one_unit_product(kernel: Kernel, sku: str = "HOT-1", stock: int = STOCK) -> None:
    await kernel.catalog.create(product(sku))
    if stock:
        await kernel.inventory.adjust(sku, "wh", stock, reason="test")


async def on_hand(kernel: Kernel, sku: str) -> int:
    levels = await kernel.inventory.levels([sku], ["wh"])
    return levels[0].on_hand


async def test_concurrent_checkouts_never_oversell(kernel: Kernel) -> None:
    await one_unit_product(kernel)

    async def attempt(i: int) -> str:
        channel = CHANNELS[i % len(CHANNELS)]
        cart = await kernel.carts.create(channel=channel)
        await kernel.carts.set_quantity(cart.id, "HOT-1", 1, channel=channel)
        try:
            order = await kernel.orders.checkout(
                CheckoutRequest(cart_id=cart.id, channel=channel, email=f"buyer{i}@example.com", locations=("wh",))
            )
        except OutOfStock:
            return "out"
        return order.channel

    results = await asyncio.gather(*(attempt(i) for i in range(ATTEMPTS)))
    placed = [r for r in results if r != "out"]
    assert len(placed) == STOCK
    assert set(placed) == set(CHANNELS)  # every channel sold from the one pool
    assert await on_hand(kernel, "HOT-1") == 0
    async with kernel.db.read() as conn:
        quantities = (await conn.scalars(select(t.order_lines.c.quantity).where(t.order_lines.c.sku == "HOT-1"))).all()
        negative = await conn.scalar(select(t.stock_levels.c.on_hand).where(t.stock_levels.c.on_hand < 0))
    assert quantities == [1] * STOCK  # units conserved: 50 sold + 0 left = 50 received
    assert negative is None


async def naive_take(kernel: Kernel, sku: str) -> bool:
    """The broken way: read the level, decide in Python, write the new value back."""
    async with kernel.db.read() as conn:
        current = await conn.scalar(
            select(t.stock_levels.c.on_hand).where(t.stock_levels.c.sku == sku, t.stock_levels.c.location_id == "wh")
        )
    await asyncio.sleep(0)  # other requests run here, as they would between two statements
    if current is None or current < 1:
        return False
    async with kernel.db.write() as conn:
        await conn.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == sku, t.stock_levels.c.location_id == "wh")
            .values(on_hand=current - 1)
        )
    return True


async def test_control_naive_read_modify_write_oversells(kernel: Kernel) -> None:
    await one_unit_product(kernel, "HOT-2")
    results = await asyncio.gather(*(naive_take(kernel, "HOT-2") for _ in range(ATTEMPTS)))
    sold = sum(results)
    # Lost updates: far more "sales" than units, which the conditional UPDATE above prevents.
    assert sold > STOCK


@pytest.mark.parametrize("quantity", [1, 3])
async def test_multi_line_checkout_is_all_or_nothing(kernel: Kernel, quantity: int) -> None:
    await one_unit_product(kernel, "HOT-3")
    await one_unit_product(kernel, "RARE-1", stock=quantity - 1)  # one unit short
    cart = await kernel.carts.create(channel="webshop")
    await kernel.carts.set_quantity(cart.id, "HOT-3", 2, channel="webshop")
    await kernel.carts.set_quantity(cart.id, "RARE-1", quantity, channel="webshop")
    with pytest.raises(OutOfStock):
        await kernel.orders.checkout(
            CheckoutRequest(cart_id=cart.id, channel="webshop", email="a@example.com", locations=("wh",))
        )
    # The first line's units were given back with the rollback; the cart is still open.
    assert await on_hand(kernel, "HOT-3") == STOCK
    assert (await kernel.carts.get(cart.id)).status.value == "open"
    async with kernel.db.read() as conn:
        assert (await conn.execute(select(t.orders))).first() is None
