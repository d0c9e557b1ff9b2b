"""Built-in payments plugin: the providers, points per order, capture on fulfilment.

* ``register_payment_providers``: ``wallet`` (loyalty stored value), ``pickup`` (pay at pickup)
  and ``card`` (a payment service over HTTP). Each is used only when its ``[payments.<name>]``
  table is in the configuration.
* ``order_placed``: loyalty points (and tier spend) for the order's customer, on every channel,
  once per order (the ledger reference ``earn:<order id>``; a redelivered event changes nothing).
* ``order_status_changed``: an order handed over (collected, shipped, delivered) or marked paid by
  staff captures its payments that wait for fulfilment (pay at pickup, or any provider with
  ``capture = "on_fulfilment"``); each payment is captured once, however often the event comes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniretail import hookimpl
from omniretail.domain.events import OrderPlaced, OrderStatusChanged
from omniretail.domain.order import OrderStatus
from omniretail.domain.payment import CaptureMode, PaymentStatus
from omniretail.payment import RegisterPaymentProvider
from omniretail_payments import card, pickup, wallet

if TYPE_CHECKING:
    from omniretail.kernel import Kernel

#: Statuses that take the money of a payment waiting for fulfilment: the goods are handed over
#: (collected, shipped, delivered), or staff marked the order paid (the state machine has a
#: shipped order pass through ``paid``).
CAPTURE_ON = frozenset(
    {
        OrderStatus.PAID.value,
        OrderStatus.COLLECTED.value,
        OrderStatus.SHIPPED.value,
        OrderStatus.DELIVERED.value,
    }
)


@hookimpl
def register_payment_providers(register: RegisterPaymentProvider) -> None:
    register(wallet.SPEC)
    register(pickup.SPEC)
    register(card.SPEC)


@hookimpl
async def order_placed(event: OrderPlaced, kernel: Kernel) -> None:
    # The event carries the order's customer and figures (an order's customer only ever changes by
    # a merge, which the wallet write follows), so the order is not read back.
    await kernel.loyalty.earn(
        event.customer_id,
        order_id=event.order_id,
        number=event.number,
        total=event.total,
        currency=event.currency,
        channel=event.channel,
    )


@hookimpl
async def order_status_changed(event: OrderStatusChanged, kernel: Kernel) -> None:
    if event.to_status not in CAPTURE_ON:
        return
    order = await kernel.orders.get(event.order_id)
    waiting = [
        p
        for p in order.payments
        if p.status is PaymentStatus.AUTHORIZED and p.capture_mode is CaptureMode.ON_FULFILMENT
    ]
    if waiting:
        await kernel.payments.capture_order(order.id, channel=event.channel, actor="system")
