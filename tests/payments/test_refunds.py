"""Refunds go back to the original payment, in part or in full, never more than was captured;
cancelling voids what is only authorized. Each is a recorded event on the order and the timeline."""

from __future__ import annotations

import asyncio

import pytest

from omniretail.domain.errors import InvalidValue
from omniretail.domain.order import Fulfilment, OrderStatus
from omniretail.domain.payment import LedgerKind, PaymentStatus, RefundExceedsCaptured, split_refund
from omniretail.kernel import Kernel
from tests.payments.conftest import cart_with, pay
from tests.payments.fake_card_service import FakeCardService


async def shipped_card_order(kernel: Kernel, lines: dict[str, int]) -> str:
    cart_id = await cart_with(kernel, lines)
    order = await pay(kernel, cart_id, "card", token="tok_ok")
    await kernel.orders.transition(order.id, OrderStatus.SHIPPED, channel="admin")
    return order.id


def test_line_shares_add_up_to_the_line_total_exactly() -> None:
    for total, quantity in [(1000, 3), (1, 3), (999, 7), (0, 2), (12345, 1)]:
        steps = [1] * quantity
        refunded = 0
        before = 0
        for step in steps:
            refunded += split_refund(total, quantity, before, step)
            before += step
        assert refunded == total
        assert split_refund(total, quantity, 0, quantity) == total


async def test_a_return_refunds_the_units_share_to_the_card(shop: Kernel, fake_card: FakeCardService) -> None:
    order_id = await shipped_card_order(shop, {"MUG-1": 3, "BEAN-1": 1})
    order = await shop.orders.return_line(order_id, 1, 2, location_id="wh", channel="admin")
    (payment,) = order.payments
    assert payment.refunded == 2500 and payment.refund_pending == 0 and payment.captured == 3 * 1250 + 899
    assert order.lines[0].quantity_refunded == 2
    assert fake_card.refunded_amount == 2500
    events = [e for _, e in await shop.orders.events(order_id) if e.type == "payment.refunded"]
    assert len(events) == 1 and events[0].amount == 2500  # type: ignore[attr-defined]
    assert events[0].customer_id == order.customer_id  # on the customer's timeline too
    # The rest, in two more steps: exactly the captured total, never more.
    await shop.orders.return_line(order_id, 1, 1, location_id="wh", channel="admin")
    order = await shop.orders.return_line(order_id, 2, 1, location_id="wh", channel="admin")
    assert order.payments[0].refunded == order.payments[0].captured == fake_card.refunded_amount
    with pytest.raises(RefundExceedsCaptured):
        await shop.payments.refund_order(order_id, 1, reason="one more", channel="admin")


async def test_refund_never_exceeds_capture_even_concurrently(shop: Kernel, fake_card: FakeCardService) -> None:
    order_id = await shipped_card_order(shop, {"MUG-1": 2})  # 2500 captured

    async def attempt() -> bool:
        try:
            await shop.payments.refund_order(order_id, 1000, reason="goodwill", channel="admin")
        except RefundExceedsCaptured:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert sum(results) == 2  # 2 x 1000 fit in 2500; a third would not
    (payment,) = (await shop.orders.get(order_id)).payments
    assert payment.refunded == 2000 and payment.refund_pending == 0
    assert fake_card.refunded_amount == 2000
    await shop.payments.refund_order(order_id, 500, reason="the rest", channel="admin")
    with pytest.raises(RefundExceedsCaptured):
        await shop.payments.refund_order(order_id, 1, reason="too much", channel="admin")
    with pytest.raises(InvalidValue):
        await shop.payments.refund_order(order_id, 0, reason="nothing", channel="admin")


async def test_a_refund_the_provider_refuses_is_given_back_not_counted(
    shop: Kernel, fake_card: FakeCardService
) -> None:
    order_id = await shipped_card_order(shop, {"MUG-1": 1})
    fake_card.payments[next(iter(fake_card.payments))]["captured"] = 0  # the service disagrees
    await shop.payments.refund_order(order_id, 500, reason="goodwill", channel="admin")
    (payment,) = (await shop.orders.get(order_id)).payments
    assert payment.refunded == 0 and payment.refund_pending == 0 and "declined" in (payment.last_error or "")
    ops = await shop.payments.operations(order_id)
    assert [(o.kind.value, o.status.value) for o in ops][-1] == ("refund", "failed")


async def test_a_refund_with_no_answer_stays_pending_and_is_retried_with_the_same_key(
    shop: Kernel, fake_card: FakeCardService, clock: object
) -> None:
    order_id = await shipped_card_order(shop, {"MUG-1": 1})
    fake_card.fail_next = 1
    await shop.payments.refund_order(order_id, 700, reason="goodwill", channel="admin")
    (payment,) = (await shop.orders.get(order_id)).payments
    assert (payment.refunded, payment.refund_pending) == (0, 700)  # counted against the capture already
    with pytest.raises(RefundExceedsCaptured):
        await shop.payments.refund_order(order_id, 600, reason="more", channel="admin")
    clock.advance(seconds=31)  # type: ignore[attr-defined]
    assert await shop.payments.recover_operations() == 1
    (payment,) = (await shop.orders.get(order_id)).payments
    assert (payment.refunded, payment.refund_pending) == (700, 0)
    refunds = fake_card.calls("/refunds")
    assert len(refunds) == 2 and len({r.headers["idempotency-key"] for r in refunds}) == 1
    assert fake_card.refunds == 1


async def test_cancelling_voids_an_authorization_and_refunds_a_capture(
    shop: Kernel, fake_card: FakeCardService
) -> None:
    await shop.inventory.adjust("MUG-1", "store-a", 5)
    cart_id = await cart_with(shop, {"MUG-1": 1}, channel="kiosk")
    held = await pay(
        shop,
        cart_id,
        "pickup",
        channel="kiosk",
        fulfilment=Fulfilment.PICKUP,
        pickup_location_id="store-a",
        locations=None,
    )
    cancelled = await shop.orders.transition(held.id, OrderStatus.CANCELLED, channel="kiosk")
    assert cancelled.payments[0].status is PaymentStatus.VOIDED and cancelled.payments[0].captured == 0
    assert "payment.voided" in [e.type for _, e in await shop.orders.events(held.id)]

    paid = await pay(shop, await cart_with(shop, {"BEAN-1": 2}), "card", token="tok_ok")
    cancelled = await shop.orders.transition(paid.id, OrderStatus.CANCELLED, channel="admin")
    (payment,) = cancelled.payments
    assert payment.refunded == payment.captured == 2 * 899
    assert fake_card.refunded_amount == 2 * 899


async def test_a_wallet_refund_goes_back_to_the_wallet(shop: Kernel) -> None:
    customer = await shop.customers.sign_up("wally@example.com", "pass-word-1", channel="webshop")
    await shop.loyalty.credit(customer.id, 5000, kind=LedgerKind.TOP_UP, reference="t", channel="admin", actor="s")
    cart_id = await cart_with(shop, {"MUG-1": 2}, customer_id=customer.id)
    order = await pay(shop, cart_id, "wallet", customer_id=customer.id)
    assert (await shop.loyalty.wallet(customer.id)).balance == 2500
    await shop.orders.transition(order.id, OrderStatus.SHIPPED, channel="admin")
    await shop.orders.return_line(order.id, 1, 1, location_id="wh", channel="admin")
    assert (await shop.loyalty.wallet(customer.id)).balance == 3750
    ledger = await shop.loyalty.ledger(customer.id)
    assert [(e.kind, e.amount) for e in ledger][:2] == [(LedgerKind.REFUND, 1250), (LedgerKind.PAY, -2500)]


async def test_a_return_of_an_unpaid_order_refunds_nothing(shop: Kernel) -> None:
    from tests.integration.helpers import buy

    order = await buy(shop, {"MUG-1": 1}, locations=("wh",))
    await shop.orders.transition(order.id, OrderStatus.PAID, channel="admin")
    await shop.orders.transition(order.id, OrderStatus.SHIPPED, channel="admin")
    returned = await shop.orders.return_line(order.id, 1, 1, location_id="wh", channel="admin")
    assert returned.payments == () and returned.status is OrderStatus.RETURNED
