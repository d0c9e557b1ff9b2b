"""Fixtures for payment tests: a store with the three built-in providers configured (the card
provider talking to the fake card service on 127.0.0.1), products with stock, and a gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omniretail.domain.order import Order
from omniretail.gateway.app import create_app
from omniretail.gateway.keys import KeyStore
from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.services.orders import CheckoutRequest, PaymentChoice
from omniretail.worker import OutboxWorker
from tests.conftest import store_config
from tests.integration.gateway_fixtures import Api
from tests.integration.helpers import draft
from tests.payments.fake_card_service import WEBHOOK_SECRET, FakeCardService

#: The products every payment test sells: (sku, price in cents, units at "wh").
PRODUCTS = [("MUG-1", 1250, 100), ("BEAN-1", 899, 100), ("RARE-1", 4000, 1)]
#: Generous enough for a loaded CI machine; the fake sleeps three times longer to "time out".
CARD_TIMEOUT = 1.5


def payments_config(db_url: str, card_url: str, **overrides: Any) -> dict[str, Any]:
    config = store_config(db_url)
    config["payments"] = {
        "wallet": {},
        "pickup": {},
        "card": {"base_url": card_url, "timeout_seconds": CARD_TIMEOUT, "webhook_secret": "env:TEST_CARD_WHSEC"},
    }
    config["channels"]["kiosk"]["payments"] = ["wallet", "pickup", "card"]
    config["channels"]["voice"] = {"payments": ["wallet"]}
    config.update(overrides)
    return config


@pytest.fixture
async def fake_card(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeCardService]:
    monkeypatch.setenv("TEST_CARD_WHSEC", WEBHOOK_SECRET)
    async with FakeCardService(webhook_secret=WEBHOOK_SECRET, timeout_delay=CARD_TIMEOUT * 3) as fake:
        yield fake


async def stock_products(kernel: Kernel) -> None:
    for sku, price, units in PRODUCTS:
        await kernel.catalog.create(draft(sku, price))
        await kernel.inventory.adjust(sku, "wh", units, reason="test")


@pytest.fixture
async def shop(db_url: str, tmp_path: Path, clock: FakeClock, fake_card: FakeCardService) -> AsyncIterator[Kernel]:
    kernel = Kernel.from_config(payments_config(db_url, fake_card.url), base_dir=str(tmp_path), clock=clock)
    async with kernel:
        await stock_products(kernel)
        yield kernel


@pytest.fixture
async def pay_api(db_url: str, tmp_path: Path, clock: FakeClock, fake_card: FakeCardService) -> AsyncIterator[Api]:
    config = payments_config(db_url, fake_card.url, gateway={"embedded_worker": False})
    kernel = Kernel.from_config(config, base_dir=str(tmp_path), clock=clock)
    await kernel.start()
    await stock_products(kernel)
    store = KeyStore(kernel.db)
    keys = {ch: (await store.create(ch, ("storefront",), now=clock()))[1] for ch in ("webshop", "kiosk", "voice")}
    keys["admin"] = (await store.create("admin", ("admin",), now=clock()))[1]
    app = create_app(kernel, run_worker=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield Api(client=client, kernel=kernel, keys=keys, app=app)
    await kernel.close()


async def cart_with(
    kernel: Kernel, lines: dict[str, int], *, channel: str = "webshop", customer_id: str | None = None
) -> str:
    cart = await kernel.carts.create(channel=channel, customer_id=customer_id)
    for sku, qty in lines.items():
        await kernel.carts.set_quantity(cart.id, sku, qty, channel=channel)
    return cart.id


async def pay(
    kernel: Kernel,
    cart_id: str,
    provider: str,
    *,
    token: str | None = None,
    key: str = "key-1",
    channel: str = "webshop",
    customer_id: str | None = None,
    locations: tuple[str, ...] | None = ("wh",),
    **extra: Any,
) -> Order:
    return await kernel.orders.checkout(
        CheckoutRequest(
            cart_id=cart_id,
            channel=channel,
            email=None if customer_id else "ana@example.com",
            customer_id=customer_id,
            locations=locations,
            payment=PaymentChoice(provider=provider, token=token),
            idempotency_key=key,
            **extra,
        )
    )


async def free_units(kernel: Kernel, sku: str, location: str = "wh") -> int:
    return (await kernel.inventory.available([sku], [location]))[sku]


async def drain(kernel: Kernel) -> int:
    return await OutboxWorker(kernel).drain()
