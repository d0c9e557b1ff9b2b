"""Orders and their state machine.

The state machine is data: ``TRANSITIONS`` lists every allowed move, ``FULFILMENT_ONLY`` restricts
moves that only make sense for some fulfilment methods. Anything else is ``IllegalTransition``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

from omniretail.domain.errors import IllegalTransition, InvalidValue, ReturnExceedsSold
from omniretail.domain.money import Money
from omniretail.domain.payment import Payment


class Fulfilment(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"
    SHIP_FROM_STORE = "ship_from_store"
    CARRY_OUT = "carry_out"


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    READY_FOR_PICKUP = "ready_for_pickup"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COLLECTED = "collected"
    CANCELLED = "cancelled"
    RETURNED = "returned"


S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PLACED: frozenset({S.PAID, S.READY_FOR_PICKUP, S.COLLECTED, S.CANCELLED}),
    S.PAID: frozenset({S.READY_FOR_PICKUP, S.SHIPPED, S.COLLECTED, S.CANCELLED}),
    S.READY_FOR_PICKUP: frozenset({S.COLLECTED, S.CANCELLED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.RETURNED}),
    S.DELIVERED: frozenset({S.RETURNED}),
    S.COLLECTED: frozenset({S.RETURNED}),
    S.CANCELLED: frozenset(),
    S.RETURNED: frozenset(),
}

#: Statuses that only some fulfilment methods pass through.
FULFILMENT_ONLY: dict[OrderStatus, frozenset[Fulfilment]] = {
    S.READY_FOR_PICKUP: frozenset({Fulfilment.PICKUP}),
    S.COLLECTED: frozenset({Fulfilment.PICKUP, Fulfilment.CARRY_OUT}),
    S.SHIPPED: frozenset({Fulfilment.SHIP, Fulfilment.SHIP_FROM_STORE}),
    S.DELIVERED: frozenset({Fulfilment.SHIP, Fulfilment.SHIP_FROM_STORE}),
}

#: Statuses in which the goods are still held by the merchant (cancelling returns them to stock).
UNFULFILLED = frozenset({S.PLACED, S.PAID, S.READY_FOR_PICKUP})
#: Statuses after the customer has the goods (lines can be returned).
FULFILLED = frozenset({S.SHIPPED, S.DELIVERED, S.COLLECTED})


def check_transition(current: OrderStatus, target: OrderStatus, fulfilment: Fulfilment) -> None:
    """Raise ``IllegalTransition`` unless ``current -> target`` is allowed for this fulfilment."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current.value, target.value)
    allowed = FULFILMENT_ONLY.get(target)
    if allowed is not None and fulfilment not in allowed:
        raise IllegalTransition(current.value, target.value, f"not for {fulfilment.value} orders")
    if target is S.COLLECTED and current is S.PLACED and fulfilment is not Fulfilment.CARRY_OUT:
        raise IllegalTransition(current.value, target.value, "a pickup order is made ready first")


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    line_no: int
    sku: str
    title: str
    quantity: int
    unit_price: int
    #: unit_price * quantity minus this line's share of discounts.
    total: int
    #: The stock location the units came from.
    location_id: str
    quantity_returned: int = 0
    quantity_refunded: int = 0

    @property
    def returnable(self) -> int:
        return self.quantity - self.quantity_returned


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    number: str
    channel: str
    #: The channel's own order id (marketplace order id, ...); unique per channel.
    external_ref: str | None = None
    customer_id: str | None = None
    status: OrderStatus = OrderStatus.PLACED
    fulfilment: Fulfilment = Fulfilment.SHIP
    pickup_location_id: str | None = None
    #: When a pickup order is expected to be ready (placed + the store's preparation time).
    ready_by: datetime | None = None
    currency: str
    subtotal: int
    discount: int = 0
    total: int
    lines: tuple[OrderLine, ...]
    email: str | None = None
    phone: str | None = None
    cart_id: str | None = None
    attribution: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    #: The order's payments, oldest first (none for an order placed unpaid or taken by a channel).
    payments: tuple[Payment, ...] = ()

    def __post_init__(self) -> None:
        if not self.lines:
            raise InvalidValue("an order needs at least one line", field="lines")
        if self.fulfilment is Fulfilment.PICKUP and not self.pickup_location_id:
            raise InvalidValue("a pickup order needs a pickup location", field="pickup_location_id")

    @property
    def total_money(self) -> Money:
        return Money(amount=self.total, currency=self.currency)

    @property
    def return_state(self) -> str:
        """``none``, ``partial`` or ``full``: how much of the order came back."""
        returned = sum(line.quantity_returned for line in self.lines)
        if returned == 0:
            return "none"
        return "full" if returned == sum(line.quantity for line in self.lines) else "partial"

    def line(self, line_no: int) -> OrderLine:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        raise InvalidValue(f"order {self.number} has no line {line_no}", field="line_no")

    def check_return(self, line_no: int, quantity: int) -> OrderLine:
        """The line, if ``quantity`` more units of it may be returned; else a named error."""
        if self.status not in FULFILLED:
            raise IllegalTransition(self.status.value, "returned", "nothing has been handed over yet")
        line = self.line(line_no)
        if quantity < 1:
            raise InvalidValue("return quantity must be at least 1", field="quantity")
        if quantity > line.returnable:
            raise ReturnExceedsSold(
                f"line {line_no} has {line.returnable} unit(s) left to return, not {quantity}",
                field="quantity",
            )
        return line
