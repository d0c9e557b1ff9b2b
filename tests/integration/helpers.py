"""Small builders shared by integration tests."""

from __future__ import annotations

from typing import Any

import msgspec

from omniretail.domain.order import Fulfilment, Order
from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft
from omniretail.services.orders import CheckoutRequest


def draft(sku: str, price: int = 1000, **extra: Any) -> ProductDraft:
    data = {
        "handle": sku.lower(),
        "title": f"Item {sku}",
        "variants": [{"sku": sku, "prices": [{"amount": price, "currency": "EUR"}]}],
    }
    data.update(extra)
    return msgspec.convert(data, ProductDraft)


async def buy(
    kernel: Kernel,
    lines: dict[str, int],
    *,
    channel: str = "webshop",
    email: str = "ana@example.com",
    fulfilment: Fulfilment = Fulfilment.SHIP,
    pickup: str | None = None,
    **kw: Any,
) -> Order:
    cart = await kernel.carts.create(channel=channel)
    for sku, qty in lines.items():
        await kernel.carts.set_quantity(cart.id, sku, qty, channel=channel)
    return await kernel.orders.checkout(
        CheckoutRequest(
            cart_id=cart.id,
            channel=channel,
            email=email,
            fulfilment=fulfilment,
            pickup_location_id=pickup,
            **kw,
        )
    )


async def on_hand(kernel: Kernel, sku: str, location: str) -> int:
    levels = await kernel.inventory.levels([sku], [location])
    return levels[0].on_hand if levels else 0
