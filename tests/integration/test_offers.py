"""Offers come from plugins through ``calculate_offers`` and price identically on every channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from omniretail import hookimpl
from omniretail.domain.customer import Customer
from omniretail.host import PluginError
from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.services.orders import CheckoutRequest
from omniretail.services.pricing import Offer, PricedCart
from omniretail.starter import load_catalog, sample_catalog
from tests.conftest import store_config

CHANNELS = ("webshop", "marketplace", "kiosk", "social", "voice")


class CoffeeOffers:
    @hookimpl
    def calculate_offers(self, cart: PricedCart, customer: Customer | None, kernel: Kernel) -> Iterable[Offer]:
        offers = []
        if cart.coupon == "WELCOME":
            offers.append(Offer(code="WELCOME", title="1 euro off", amount=100))
        if customer is not None and customer.tier == "vip":
            lattes = sum(x.quantity for x in cart.lines if x.sku.startswith("LATTE"))
            if lattes >= 2:
                offers.append(
                    Offer(code="VIP-PASTRY", title="Free pastry with two lattes", amount=10_000, sku="CROISSANT")
                )
        return offers


@pytest.fixture
async def shop(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Kernel]:
    kernel = Kernel.from_config(store_config(db_url), plugins=[CoffeeOffers()], base_dir=str(tmp_path), clock=clock)
    async with kernel:
        data = sample_catalog()
        rename = {"store-downtown": "store-a", "store-riverside": "store-b", "wh-central": "wh"}
        for row in data["stock"]:
            row["location_id"] = rename[row["location_id"]]
        await load_catalog(kernel, data)
        yield kernel


async def test_the_same_vip_cart_prices_the_same_on_every_channel(shop: Kernel) -> None:
    vip = await shop.customers.sign_up("vip@example.com", "pass-word-1", channel="webshop")
    vip = await shop.customers.set_tier(vip.id, "vip")
    totals = set()
    for channel in CHANNELS:
        cart = await shop.carts.create(channel=channel, customer_id=vip.id)
        await shop.carts.set_quantity(cart.id, "LATTE-REG", 2, channel=channel)
        await shop.carts.set_quantity(cart.id, "CROISSANT", 1, channel=channel)
        await shop.carts.set_coupon(cart.id, "WELCOME", channel=channel)
        priced = await shop.carts.price(await shop.carts.get(cart.id), vip)
        totals.add((priced.subtotal, priced.discount, priced.total))
    # 2 x 3.80 VIP + 2.90 VIP croissant = 10.50; free croissant capped at its line (2.90) + 1.00 coupon.
    assert totals == {(1050, 390, 660)}
    order = await shop.orders.checkout(CheckoutRequest(cart_id=cart.id, channel="voice", customer_id=vip.id))
    assert (order.subtotal, order.discount, order.total) == (1050, 390, 660)
    assert sum(line.total for line in order.lines) == order.total


async def test_a_guest_pays_list_price(shop: Kernel) -> None:
    cart = await shop.carts.create(channel="kiosk")
    await shop.carts.set_quantity(cart.id, "LATTE-REG", 2, channel="kiosk")
    priced = await shop.carts.price(await shop.carts.get(cart.id), None)
    assert (priced.total, priced.offers) == (900, ())


class AsyncOffers:
    @hookimpl
    def calculate_offers(self, cart: PricedCart, customer: Customer | None, kernel: Kernel) -> object:
        async def nope() -> list[Offer]:
            return []

        return nope()


class MisspeltHook:
    @hookimpl
    def calculate_offer(self, cart: PricedCart) -> None:  # not a hook: start-up must fail
        return None


async def test_plugin_contract_mistakes_are_named(db_url: str, tmp_path: Path) -> None:
    from tests.integration.helpers import draft

    kernel = Kernel.from_config(store_config(db_url), plugins=[AsyncOffers()], base_dir=str(tmp_path))
    async with kernel:
        await kernel.catalog.create(draft("OFF-1"))
        cart = await kernel.carts.create(channel="webshop")
        with pytest.raises(PluginError, match="calculate_offers must return offers"):
            await kernel.carts.set_quantity(cart.id, "OFF-1", 1, channel="webshop")
            await kernel.carts.price(await kernel.carts.get(cart.id), None)
    with pytest.raises(PluginError, match="calculate_offer"):
        Kernel.from_config(store_config(db_url), plugins=[MisspeltHook()], base_dir=str(tmp_path))
