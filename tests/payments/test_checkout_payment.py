"""Checkout with payment: reserve -> authorize -> order -> capture, and every way it can go wrong.

Decline: no order, stock released. Timeout: a state a retry with the same key finishes, never a
second charge. Crash in between: the recovery task finishes or undoes. Expired holds: undone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Table, func, select

from omniretail.background import TaskRunner
from omniretail.domain.errors import InvalidValue, OutOfStock
from omniretail.domain.order import Fulfilment, OrderStatus
from omniretail.domain.payment import (
    AttemptStatus,
    CheckoutAbandoned,
    CheckoutInProgress,
    LedgerKind,
    Payment,
    PaymentDeclined,
    PaymentPending,
    PaymentStatus,
)
from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.services.orders import CheckoutRequest, PaymentChoice
from omniretail.storage import tables as t
from tests.payments.conftest import cart_with, drain, free_units, pay, payments_config, stock_products
from tests.payments.fake_card_service import FakeCardService


async def count(kernel: Kernel, table: Table) -> int:
    async with kernel.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def payments_of_cart(kernel: Kernel, cart_id: str, key: str = "key-1") -> list[Payment]:
    found = await kernel.checkout.attempt_for(cart_id, key)
    assert found is not None
    return [await kernel.payments.get(found.payment_id)]


async def attempt_of(kernel: Kernel, cart_id: str, key: str = "key-1") -> AttemptStatus:
    found = await kernel.checkout.attempt_for(cart_id, key)
    assert found is not None
    return found.status


# -- the happy paths ---------------------------------------------------------------------------------


async def test_card_checkout_authorizes_writes_the_order_and_captures_once(
    shop: Kernel, fake_card: FakeCardService
) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 2, "BEAN-1": 1})
    order = await pay(shop, cart_id, "card", token="tok_ok")
    assert order.total == 2 * 1250 + 899  # computed by the server
    assert order.status is OrderStatus.PAID  # captured at once, so paid
    (payment,) = order.payments
    assert (payment.provider, payment.status) == ("card", PaymentStatus.CAPTURED)
    assert payment.amount == payment.authorized == payment.captured == order.total
    assert all(isinstance(x, int) for x in (payment.amount, payment.captured, payment.refunded))
    assert (fake_card.authorizations, fake_card.captures, fake_card.captured_amount) == (1, 1, order.total)
    assert await free_units(shop, "MUG-1") == 98
    assert (await shop.inventory.levels(["MUG-1"], ["wh"]))[0].reserved == 0  # hold became a sale
    types = [e.type for _, e in await shop.orders.events(order.id)]
    assert types[:3] == ["order.placed", "payment.authorized", "payment.captured"]
    assert "order.status_changed" in types
    # The same key again: the same order, nothing charged twice.
    again = await pay(shop, cart_id, "card", token="tok_ok")
    assert again.id == order.id
    assert (fake_card.authorizations, fake_card.captures) == (1, 1)
    # Every request to the service carried the framework's idempotency key.
    assert all(r.headers.get("idempotency-key") for r in fake_card.requests)


async def test_checkout_without_a_payment_still_places_the_order_unpaid(shop: Kernel) -> None:
    from tests.integration.helpers import buy

    order = await buy(shop, {"MUG-1": 1}, locations=("wh",))
    assert order.status is OrderStatus.PLACED and order.payments == ()


async def test_pay_at_pickup_is_captured_when_the_order_is_collected(shop: Kernel) -> None:
    await shop.inventory.adjust("MUG-1", "store-a", 5)
    cart_id = await cart_with(shop, {"MUG-1": 1}, channel="kiosk")
    order = await pay(
        shop,
        cart_id,
        "pickup",
        channel="kiosk",
        fulfilment=Fulfilment.PICKUP,
        pickup_location_id="store-a",
        locations=None,
    )
    (payment,) = order.payments
    assert payment.status is PaymentStatus.AUTHORIZED and payment.captured == 0
    assert order.status is OrderStatus.PLACED
    await shop.orders.transition(order.id, OrderStatus.READY_FOR_PICKUP, channel="kiosk")
    await shop.orders.transition(order.id, OrderStatus.COLLECTED, channel="kiosk")
    assert (await shop.orders.get(order.id)).payments[0].captured == 0  # through the outbox
    await drain(shop)
    await drain(shop)  # a redelivered event changes nothing
    (payment,) = (await shop.orders.get(order.id)).payments
    assert payment.status is PaymentStatus.CAPTURED and payment.captured == order.total
    ops = await shop.payments.operations(order.id)
    assert [(o.kind.value, o.status.value) for o in ops] == [("capture", "succeeded")]


async def test_pay_at_pickup_is_only_for_pickup_orders(shop: Kernel) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(InvalidValue, match="pickup"):
        await pay(shop, cart_id, "pickup")
    assert await count(shop, t.checkout_attempts) == 0


async def test_a_channel_offers_only_its_providers(shop: Kernel) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1}, channel="voice")
    with pytest.raises(InvalidValue, match="not offered on channel 'voice'"):
        await pay(shop, cart_id, "card", token="tok_ok", channel="voice")
    with pytest.raises(InvalidValue, match="no payment provider 'paypal'"):
        await pay(shop, cart_id, "paypal", channel="voice")


# -- decline -----------------------------------------------------------------------------------------


async def test_decline_creates_no_order_and_releases_the_stock(shop: Kernel, fake_card: FakeCardService) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 3})
    with pytest.raises(PaymentDeclined, match="card declined"):
        await pay(shop, cart_id, "card", token="tok_decline")
    assert await count(shop, t.orders) == 0
    assert await free_units(shop, "MUG-1") == 100
    assert (await shop.inventory.levels(["MUG-1"], ["wh"]))[0].reserved == 0
    assert await attempt_of(shop, cart_id) is AttemptStatus.DECLINED
    assert (await shop.carts.get(cart_id)).status.value == "open"  # the customer may try another card
    # The same key answers the same decline without asking the service again.
    calls = len(fake_card.requests)
    with pytest.raises(PaymentDeclined):
        await pay(shop, cart_id, "card", token="tok_decline")
    assert len(fake_card.requests) == calls
    # Another key: a new attempt, this time paid.
    order = await pay(shop, cart_id, "card", token="tok_ok", key="key-2")
    assert order.status is OrderStatus.PAID and fake_card.captures == 1


async def test_out_of_stock_takes_no_payment(shop: Kernel, fake_card: FakeCardService) -> None:
    cart_id = await cart_with(shop, {"RARE-1": 2})
    with pytest.raises(OutOfStock):
        await pay(shop, cart_id, "card", token="tok_ok")
    assert fake_card.requests == [] and await count(shop, t.checkout_attempts) == 0


# -- timeout, retry, recovery ------------------------------------------------------------------------


async def test_timeout_then_retry_with_the_same_key_captures_exactly_once(
    shop: Kernel, fake_card: FakeCardService
) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_timeout")
    # The service authorized (its answer was lost); we hold the stock and wait.
    assert fake_card.authorizations == 1 and fake_card.captures == 0
    assert await attempt_of(shop, cart_id) is AttemptStatus.AUTHORIZING
    assert await free_units(shop, "MUG-1") == 99 and await count(shop, t.orders) == 0
    order = await pay(shop, cart_id, "card", token="tok_timeout")
    again = await pay(shop, cart_id, "card", token="tok_timeout")
    assert again.id == order.id and order.status is OrderStatus.PAID
    assert (fake_card.authorizations, fake_card.captures, fake_card.captured_amount) == (1, 1, 1250)
    assert len(fake_card.calls("/v1/payments")) == 2  # the same authorization asked twice, one charge
    keys = {r.headers["idempotency-key"] for r in fake_card.calls("/v1/payments")}
    assert len(keys) == 1


async def test_another_key_while_an_attempt_is_in_between_is_refused(shop: Kernel) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_timeout")
    with pytest.raises(CheckoutInProgress):
        await pay(shop, cart_id, "card", token="tok_ok", key="key-2")
    assert await free_units(shop, "MUG-1") == 99  # one hold, not two


async def test_the_recovery_task_finishes_an_attempt_left_in_between(
    shop: Kernel, fake_card: FakeCardService, clock: FakeClock
) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_timeout")
    runner = TaskRunner(shop)
    assert [task.name for task in runner.tasks][:1] == ["payments.recover"]
    assert await shop.checkout.recover() == 0  # not stale yet
    clock.advance(seconds=31)
    assert await shop.checkout.recover() == 1
    assert await attempt_of(shop, cart_id) is AttemptStatus.COMPLETED
    order = await shop.orders.by_cart(cart_id)
    assert order is not None and order.status is OrderStatus.PAID
    assert (fake_card.authorizations, fake_card.captures) == (1, 1)
    # The client's retry now just gets the order.
    assert (await pay(shop, cart_id, "card", token="tok_timeout")).id == order.id
    assert fake_card.captures == 1


async def test_an_attempt_unanswered_past_its_holds_is_undone(
    shop: Kernel, fake_card: FakeCardService, clock: FakeClock
) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 2})
    with pytest.raises(PaymentPending):  # the service says "pending" and never sends its webhook
        await pay(shop, cart_id, "card", token="tok_pending")
    assert await free_units(shop, "MUG-1") == 98
    clock.advance(minutes=16)  # the holds lapse (inventory.reservation_minutes = 15)
    assert await free_units(shop, "MUG-1") == 100  # never held forever
    fake_card.fail_next = 100  # and now the service is down
    await shop.checkout.recover()  # the void cannot get through: still in between, retried later
    assert await attempt_of(shop, cart_id) is AttemptStatus.AUTHORIZING
    fake_card.fail_next = 0
    clock.advance(seconds=31)
    await shop.checkout.recover()  # still pending at the service, past the holds: undone
    assert await attempt_of(shop, cart_id) is AttemptStatus.ABANDONED
    assert next(iter(fake_card.payments.values()))["status"] == "voided"
    assert await count(shop, t.orders) == 0 and await free_units(shop, "MUG-1") == 100
    (payment,) = [p for p in await payments_of_cart(shop, cart_id)]
    assert payment.status is PaymentStatus.VOIDED and payment.captured == 0
    with pytest.raises(CheckoutAbandoned):  # the same key: the same outcome
        await pay(shop, cart_id, "card", token="tok_pending")
    # The cart can be checked out again with a new key.
    assert (await pay(shop, cart_id, "card", token="tok_ok", key="key-2")).status is OrderStatus.PAID


async def test_a_service_that_comes_back_before_the_holds_lapse_completes_the_checkout(
    shop: Kernel, fake_card: FakeCardService, clock: FakeClock
) -> None:
    fake_card.fail_next = 1  # the first call meets a 503: outcome unknown
    cart_id = await cart_with(shop, {"MUG-1": 2})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_ok")
    clock.advance(seconds=31)
    await shop.checkout.recover()  # asked again with the same key: authorized, finished
    order = await shop.orders.by_cart(cart_id)
    assert order is not None and order.status is OrderStatus.PAID
    assert (fake_card.authorizations, fake_card.captures) == (1, 1)


async def test_approval_after_the_holds_lapsed_sells_only_if_the_units_are_still_there(
    shop: Kernel, fake_card: FakeCardService, clock: FakeClock
) -> None:
    cart_id = await cart_with(shop, {"RARE-1": 1})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_timeout")
    clock.advance(minutes=16)
    # Someone else buys the last unit meanwhile.
    from tests.integration.helpers import buy

    await buy(shop, {"RARE-1": 1}, locations=("wh",), email="bo@example.com")
    with pytest.raises(CheckoutAbandoned, match="sold out"):
        await pay(shop, cart_id, "card", token="tok_timeout")
    assert fake_card.voids == 1 and fake_card.captures == 0  # never a paid order without stock
    assert (await shop.inventory.levels(["RARE-1"], ["wh"]))[0].on_hand == 0


async def test_a_cart_changed_during_the_attempt_is_undone_not_charged(
    shop: Kernel, fake_card: FakeCardService
) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_timeout")
    await shop.carts.set_quantity(cart_id, "MUG-1", 5, channel="webshop")  # total now differs
    with pytest.raises(CheckoutAbandoned, match="cart changed"):
        await pay(shop, cart_id, "card", token="tok_timeout")
    assert fake_card.captures == 0 and fake_card.voids == 1
    assert await free_units(shop, "MUG-1") == 100


async def test_a_crash_after_the_order_leaves_the_capture_to_the_recovery_task(
    shop: Kernel, fake_card: FakeCardService, clock: FakeClock
) -> None:
    fake_card.fail_next = 0
    cart_id = await cart_with(shop, {"BEAN-1": 1})
    # The authorization goes through; the capture call meets a service that is down.
    original = fake_card._capture

    def down(ref: str, amount: int) -> tuple[int, dict[str, object]]:
        return 503, {"reason": "down"}

    fake_card._capture = down  # type: ignore[method-assign]
    order = await pay(shop, cart_id, "card", token="tok_ok")
    (payment,) = order.payments
    assert payment.status is PaymentStatus.CAPTURING and order.status is OrderStatus.PLACED
    fake_card._capture = original  # type: ignore[method-assign]
    fake_card._answers.clear()  # a 503 is not a stored answer at a real service either
    clock.advance(seconds=31)
    assert await shop.payments.recover_operations() == 1
    order = await shop.orders.get(order.id)
    assert order.payments[0].status is PaymentStatus.CAPTURED and order.status is OrderStatus.PAID
    assert fake_card.captures == 1


# -- wallet at checkout ------------------------------------------------------------------------------


async def test_the_wallet_pays_only_for_an_identified_customer(shop: Kernel) -> None:
    customer = await shop.customers.sign_up("ana@example.com", "pass-word-1", channel="webshop")
    guest_cart = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(InvalidValue, match="identified customers"):
        await pay(shop, guest_cart, "wallet")  # a guest naming an e-mail is not identified
    cart_id = await cart_with(shop, {"MUG-1": 1}, customer_id=customer.id)
    with pytest.raises(PaymentDeclined, match="insufficient"):
        await pay(shop, cart_id, "wallet", customer_id=customer.id)
    assert await free_units(shop, "MUG-1") == 100
    await shop.loyalty.credit(customer.id, 2000, kind=LedgerKind.TOP_UP, reference="t1", channel="admin", actor="staff")
    order = await pay(shop, cart_id, "wallet", customer_id=customer.id, key="key-2")
    assert order.status is OrderStatus.PAID and order.payments[0].captured == 1250
    assert (await shop.loyalty.wallet(customer.id)).balance == 750


async def test_a_cart_a_channel_attached_to_a_customer_may_pay_from_their_wallet(shop: Kernel) -> None:
    """The kiosk identifies a shopper by loyalty card and attaches the cart to them: no sign-in,
    yet an identified customer, so the wallet pays (the same on every channel)."""
    customer = await shop.customers.sign_up("card@example.com", "pass-word-1", channel="webshop")
    await shop.loyalty.credit(customer.id, 1250, kind=LedgerKind.TOP_UP, reference="t", channel="admin", actor="s")
    cart_id = await cart_with(shop, {"MUG-1": 1}, channel="kiosk", customer_id=customer.id)
    order = await shop.orders.checkout(
        CheckoutRequest(
            cart_id=cart_id,
            channel="kiosk",
            locations=("wh",),
            payment=PaymentChoice(provider="wallet"),
            idempotency_key="kiosk-1",
        )
    )
    assert order.customer_id == customer.id and order.status is OrderStatus.PAID
    assert (await shop.loyalty.wallet(customer.id)).balance == 0


async def test_a_card_set_to_capture_on_fulfilment_is_captured_when_the_order_moves_on(
    db_url: str, tmp_path: Path, clock: FakeClock, fake_card: FakeCardService
) -> None:
    config = payments_config(db_url, fake_card.url)
    config["payments"]["card"]["capture"] = "on_fulfilment"
    async with Kernel.from_config(config, base_dir=str(tmp_path), clock=clock) as kernel:
        await stock_products(kernel)
        order = await pay(kernel, await cart_with(kernel, {"MUG-1": 1}), "card", token="tok_ok")
        assert order.status is OrderStatus.PLACED and order.payments[0].status is PaymentStatus.AUTHORIZED
        assert fake_card.captures == 0
        await kernel.orders.transition(order.id, OrderStatus.PAID, channel="admin")
        await kernel.orders.transition(order.id, OrderStatus.SHIPPED, channel="admin")
        await drain(kernel)
        (payment,) = (await kernel.orders.get(order.id)).payments
        assert payment.status is PaymentStatus.CAPTURED and payment.captured == 1250
        assert fake_card.captures == 1  # once, though two status changes asked for it


async def test_a_key_cannot_switch_provider_mid_attempt(shop: Kernel, fake_card: FakeCardService) -> None:
    cart_id = await cart_with(shop, {"MUG-1": 1})
    with pytest.raises(PaymentPending):
        await pay(shop, cart_id, "card", token="tok_timeout")
    with pytest.raises(InvalidValue, match="started a checkout paying with 'card'"):
        await pay(shop, cart_id, "wallet")
    assert (await pay(shop, cart_id, "card", token="tok_timeout")).status is OrderStatus.PAID
