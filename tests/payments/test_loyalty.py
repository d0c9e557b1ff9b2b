"""Loyalty points per order on every channel (once, through the outbox), and tiers by spend that
set the customer's tier, which prices use everywhere."""

from __future__ import annotations

from pathlib import Path

import msgspec

from omniretail.domain.events import PointsEarned, TierChanged
from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft
from omniretail.services.clock import FakeClock
from omniretail.services.orders import ExternalLine, ExternalOrder
from omniretail.worker import OutboxWorker
from tests.conftest import store_config
from tests.integration.helpers import buy, draft


async def test_points_are_earned_once_per_order_on_every_channel(shop: Kernel) -> None:
    kernel = shop
    await kernel.catalog.create(draft("LOY-1", 1299))
    await kernel.inventory.adjust("LOY-1", "wh", 10)
    web = await buy(kernel, {"LOY-1": 1}, email="ana@example.com", locations=("wh",))  # 12.99 EUR
    voice = await buy(kernel, {"LOY-1": 2}, channel="voice", email="ana@example.com", locations=("wh",))
    market, _ = await kernel.orders.ingest(
        ExternalOrder(
            channel="marketplace",
            external_ref="M-1",
            currency="EUR",
            lines=(ExternalLine(sku="LOY-1", quantity=1, unit_price=500),),
            email="ana@example.com",
            identities=(),
        )
    )
    assert web.customer_id == voice.customer_id
    worker = OutboxWorker(kernel)
    await worker.drain()
    wallet = await kernel.loyalty.wallet(web.customer_id or "")
    assert wallet.points == 12 + 25  # whole units of each total; the marketplace order has no customer
    assert wallet.lifetime_spend == web.total + voice.total
    # Redelivered events (at least once) earn nothing more.
    assert market.customer_id is None and await kernel.loyalty.earn_for_order(market) is None
    first = await kernel.loyalty.earn_for_order(web)
    assert first is not None and first == await kernel.loyalty.earn_for_order(web)
    assert (await kernel.loyalty.wallet(web.customer_id or "")).points == 37
    timeline = await kernel.customers.timeline(web.customer_id or "", limit=500)
    earned = [e for _, e in timeline if isinstance(e, PointsEarned)]
    assert sorted(e.points for e in earned) == [12, 25]


async def test_spend_reaches_a_tier_and_the_tier_price_applies_on_every_channel(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    config = store_config(
        db_url,
        loyalty={
            "points_per_unit": 2,
            "tiers": [{"name": "silver", "min_spend": 2000}, {"name": "vip", "min_spend": 5000}],
        },
    )
    async with Kernel.from_config(config, base_dir=str(tmp_path), clock=clock) as kernel:
        await kernel.catalog.create(
            msgspec.convert(
                {
                    "handle": "tiered",
                    "title": "Tiered",
                    "variants": [
                        {
                            "sku": "TIER-1",
                            "prices": [
                                {"amount": 3000, "currency": "EUR"},
                                {"amount": 2000, "currency": "EUR", "tier": "vip"},
                            ],
                        }
                    ],
                },
                ProductDraft,
            )
        )
        await kernel.inventory.adjust("TIER-1", "wh", 10)
        first = await buy(kernel, {"TIER-1": 1}, email="vi@example.com", locations=("wh",))
        await OutboxWorker(kernel).drain()
        customer = await kernel.customers.get(first.customer_id or "")
        assert customer.tier == "silver"  # 30.00 spent
        second = await buy(kernel, {"TIER-1": 1}, channel="kiosk", email="vi@example.com", locations=("wh",))
        assert second.total == 3000  # silver has no tier price
        await OutboxWorker(kernel).drain()
        assert (await kernel.customers.get(customer.id)).tier == "vip"  # 60.00 spent
        third = await buy(kernel, {"TIER-1": 1}, channel="voice", email="vi@example.com", locations=("wh",))
        assert third.total == 2000  # the VIP price, on any channel
        await OutboxWorker(kernel).drain()
        wallet = await kernel.loyalty.wallet(customer.id)
        assert wallet.points == 2 * (30 + 30 + 20) and wallet.lifetime_spend == 8000
        timeline = await kernel.customers.timeline(customer.id, limit=500)
        changes = [e for _, e in timeline if isinstance(e, TierChanged)]
        assert [(e.from_tier, e.to_tier) for e in changes] == [(None, "silver"), ("silver", "vip")]
        # A tier staff set by hand outside the programme is left alone.
        await kernel.customers.set_tier(customer.id, "staff")
        await buy(kernel, {"TIER-1": 1}, email="vi@example.com", locations=("wh",))
        await OutboxWorker(kernel).drain()
        assert (await kernel.customers.get(customer.id)).tier == "staff"


async def test_no_points_when_the_programme_is_off(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    config = store_config(db_url, loyalty={"points_per_unit": 0})
    async with Kernel.from_config(config, base_dir=str(tmp_path), clock=clock) as kernel:
        await kernel.catalog.create(draft("OFF-1", 1000))
        await kernel.inventory.adjust("OFF-1", "wh", 5)
        order = await buy(kernel, {"OFF-1": 1}, locations=("wh",))
        await OutboxWorker(kernel).drain()
        assert (await kernel.loyalty.wallet(order.customer_id or "")).points == 0
        assert await kernel.loyalty.ledger(order.customer_id or "") == []
