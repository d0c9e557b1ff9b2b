"""Domain events: tagged Structs with stable tags, written to the outbox with the change.

Every event carries the channel it happened on and the actor, so a customer's timeline and an
order's history read the same whatever channel each step came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    id: str
    occurred_at: datetime
    #: The channel the step happened on (``admin`` for the back office, ``system`` for jobs).
    channel: str
    #: Who did it: ``customer``, ``staff:<key id>``, ``channel:<name>``, ``system``.
    actor: str = "system"
    customer_id: str | None = None

    @property
    def type(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    @property
    def subject(self) -> dict[str, str]:
        """Ids this event is about (order_id, cart_id, ...): indexed for lookups."""
        return {k: v for k in ("order_id", "cart_id", "sku") if isinstance(v := getattr(self, k, None), str)}


class ProductChanged(Event, frozen=True, kw_only=True, tag="product.changed"):
    product_id: str
    revision: int
    removed: bool = False


class StockAdjusted(Event, frozen=True, kw_only=True, tag="stock.adjusted"):
    sku: str
    location_id: str
    delta: int
    on_hand: int
    reason: str = ""


class CustomerCreated(Event, frozen=True, kw_only=True, tag="customer.created"):
    pass


class IdentityLinked(Event, frozen=True, kw_only=True, tag="customer.identity_linked"):
    kind: str
    value: str


class CustomersMerged(Event, frozen=True, kw_only=True, tag="customer.merged"):
    #: The record that was folded into ``customer_id``.
    merged_customer_id: str
    orders_moved: int
    carts_moved: int
    identities_moved: int


class CartCreated(Event, frozen=True, kw_only=True, tag="cart.created"):
    cart_id: str


class CartLineChanged(Event, frozen=True, kw_only=True, tag="cart.line_changed"):
    cart_id: str
    sku: str
    quantity: int


class CartChannelJoined(Event, frozen=True, kw_only=True, tag="cart.channel_joined"):
    """The cart moved to (or was touched from) another channel: persistence across channels."""

    cart_id: str
    from_channel: str


class CartHandedOff(Event, frozen=True, kw_only=True, tag="cart.handed_off"):
    """A handoff code was made for the cart, to continue it on another channel."""

    cart_id: str
    expires_at: datetime


class CartHandoffClaimed(Event, frozen=True, kw_only=True, tag="cart.handoff_claimed"):
    """The code was claimed: the cart continues on ``channel`` (handed off from ``from_channel``)."""

    cart_id: str
    from_channel: str


class CartMerged(Event, frozen=True, kw_only=True, tag="cart.merged"):
    cart_id: str
    merged_cart_id: str


class OrderPlaced(Event, frozen=True, kw_only=True, tag="order.placed"):
    order_id: str
    number: str
    total: int
    currency: str
    fulfilment: str
    external_ref: str | None = None
    cart_id: str | None = None
    #: Channels the cart passed through before this order (journey analytics).
    journey: tuple[str, ...] = ()


class OrderStatusChanged(Event, frozen=True, kw_only=True, tag="order.status_changed"):
    order_id: str
    number: str
    from_status: str
    to_status: str
    note: str = ""


class OrderLineReturned(Event, frozen=True, kw_only=True, tag="order.line_returned"):
    order_id: str
    number: str
    line_no: int
    sku: str
    quantity: int
    location_id: str


class PaymentAuthorized(Event, frozen=True, kw_only=True, tag="payment.authorized"):
    order_id: str
    number: str
    payment_id: str
    provider: str
    amount: int
    currency: str


class PaymentDeclinedEvent(Event, frozen=True, kw_only=True, tag="payment.declined"):
    """A checkout's payment was refused; no order was written (``cart_id`` says which cart)."""

    cart_id: str
    payment_id: str
    provider: str
    amount: int
    currency: str
    reason: str = ""


class PaymentCaptured(Event, frozen=True, kw_only=True, tag="payment.captured"):
    order_id: str
    number: str
    payment_id: str
    provider: str
    amount: int
    currency: str


class PaymentRefunded(Event, frozen=True, kw_only=True, tag="payment.refunded"):
    order_id: str
    number: str
    payment_id: str
    provider: str
    amount: int
    currency: str
    #: Every refund of this payment so far, this one included.
    refunded_total: int
    operation_id: str
    reason: str = ""


class PaymentVoided(Event, frozen=True, kw_only=True, tag="payment.voided"):
    """An authorization was released without taking the money (a cancelled order, or a checkout
    undone after a timeout: then ``order_id`` is None and ``cart_id`` says which cart)."""

    payment_id: str
    provider: str
    amount: int
    currency: str
    order_id: str | None = None
    cart_id: str | None = None
    reason: str = ""


class WalletCredited(Event, frozen=True, kw_only=True, tag="wallet.credited"):
    #: ``top_up``, ``refund`` or ``adjustment``.
    kind: str
    amount: int
    balance: int
    currency: str
    reference: str
    order_id: str | None = None


class WalletDebited(Event, frozen=True, kw_only=True, tag="wallet.debited"):
    #: ``pay`` or ``adjustment``.
    kind: str
    amount: int
    balance: int
    currency: str
    reference: str
    order_id: str | None = None


class PointsEarned(Event, frozen=True, kw_only=True, tag="loyalty.points_earned"):
    order_id: str
    points: int
    total_points: int


class TierChanged(Event, frozen=True, kw_only=True, tag="loyalty.tier_changed"):
    from_tier: str | None
    to_tier: str | None
    lifetime_spend: int


AnyEvent = (
    ProductChanged
    | StockAdjusted
    | CustomerCreated
    | IdentityLinked
    | CustomersMerged
    | CartCreated
    | CartLineChanged
    | CartChannelJoined
    | CartHandedOff
    | CartHandoffClaimed
    | CartMerged
    | OrderPlaced
    | OrderStatusChanged
    | OrderLineReturned
    | PaymentAuthorized
    | PaymentDeclinedEvent
    | PaymentCaptured
    | PaymentRefunded
    | PaymentVoided
    | WalletCredited
    | WalletDebited
    | PointsEarned
    | TierChanged
)

_decoder = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder()
_registry: dict[str, type[Event]] = {}


def register_event_type(cls: type[Event]) -> type[Event]:
    """Let a plugin add its own event type (tag must be ``<plugin>.<name>``)."""
    _registry[cls.__struct_config__.tag] = cls  # type: ignore[index]
    return cls


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str, event_type: str | None = None) -> Event:
    if event_type is not None and event_type in _registry:
        event: Event = msgspec.json.decode(data, type=_registry[event_type])
        return event
    decoded: Event = _decoder.decode(data)
    return decoded


def event_payload(event: Event) -> dict[str, Any]:
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]
