"""Wire schemas: what the gateway accepts and returns. Separate from the domain Structs.

Every request Struct forbids unknown fields, so a client cannot slip in a price, a total or a
status (no mass assignment): the gateway answers 422 naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from omniretail.domain.catalog import Sku
from omniretail.domain.order import Fulfilment, OrderStatus
from omniretail.matrix import Matrix

T = TypeVar("T")

Quantity = Annotated[int, msgspec.Meta(ge=1, le=999, description="units, 1..999")]
QuantityOrZero = Annotated[int, msgspec.Meta(ge=0, le=999, description="units, 0..999 (0 removes)")]
Email = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Phone = Annotated[str, msgspec.Meta(min_length=6, max_length=40)]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every request body."""


# -- requests ----------------------------------------------------------------------------------


class CartCreate(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] | None = None
    #: Where the shopper came from (utm_source, utm_campaign, post id...); copied onto the order.
    attribution: dict[Annotated[str, msgspec.Meta(max_length=40)], ShortText] = msgspec.field(default_factory=dict)


class LineAdd(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity = 1


class LineSet(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    quantity: QuantityOrZero


class CouponSet(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] | None


class PaymentBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to pay. The amount is the cart total the server computes: a client never sends it."""

    #: A ``[payments.<name>]`` provider offered on the caller's channel (``wallet``, ``card``, ...).
    provider: Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
    #: Opaque payment details for the provider (a card token from the payment form).
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None


class CheckoutBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    fulfilment: Fulfilment = Fulfilment.SHIP
    pickup_location_id: str | None = None
    email: Email | None = None
    phone: Phone | None = None
    #: Pay now (authorized, then captured at once or when the goods are handed over); without
    #: it the order is placed unpaid.
    payment: PaymentBody | None = None


class SignUp(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]
    name: ShortText = ""


class SignIn(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=200)]
    password: Annotated[str, msgspec.Meta(max_length=200)]


class StockAdjustment(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    location_id: str
    delta: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
    reason: ShortText = ""


class TransitionBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to: OrderStatus
    note: ShortText = ""


class ReturnBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    line_no: Annotated[int, msgspec.Meta(ge=1)]
    quantity: Quantity
    #: Where the units are received (any store or warehouse).
    location_id: str
    #: Give the units' share of the line total back to the order's payments.
    refund: bool = True


class RefundBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Minor units to give back, at most what is left captured.
    amount: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    reason: ShortText = ""


class WalletChange(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: ``top_up`` adds stored value; ``adjustment`` adds (positive) or removes (negative) it.
    kind: Literal["top_up", "adjustment"]
    #: Minor units of the store currency; never takes the balance below zero.
    amount: Annotated[int, msgspec.Meta(ge=-100_000_000, le=100_000_000)]
    note: ShortText = ""


class KeyCreate(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
    scopes: tuple[Literal["storefront", "admin"], ...] = ("storefront",)
    name: ShortText = ""


class WebhookCreate(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2000)]
    #: Event types (``order.placed``), prefixes (``order``) or ``*``.
    event_types: tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=60)], ...] = ("*",)


class MergeBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source_id: str
    target_id: str


class HandoffBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: How long the code lives.
    minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 15


class TierBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tier: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] | None


# -- responses ---------------------------------------------------------------------------------


class MoneyOut(msgspec.Struct, frozen=True):
    amount: int
    currency: str


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    #: Pass as ``cursor`` for the next page; null on the last page.
    next_cursor: str | None = None


class VariantOut(msgspec.Struct, frozen=True):
    sku: str
    title: str
    gtin: str | None
    mpn: str | None
    attributes: dict[str, str]
    #: What this caller pays (tier price for a signed-in VIP).
    price: MoneyOut | None
    list_price: MoneyOut | None
    availability: str
    available: int


class MediaOut(msgspec.Struct, frozen=True):
    url: str
    alt: str


class ProductOut(msgspec.Struct, frozen=True):
    id: str
    handle: str
    title: str
    description: str
    brand: str | None
    condition: str
    category: str | None
    media: list[MediaOut]
    attributes: dict[str, str]
    variants: list[VariantOut]
    revision: int


class CartLineOut(msgspec.Struct, frozen=True):
    sku: str
    product_id: str
    title: str
    quantity: int
    unit_price: int
    list_price: int
    discount: int
    total: int


class OfferOut(msgspec.Struct, frozen=True):
    code: str
    title: str
    amount: int
    sku: str | None


class CartOut(msgspec.Struct, frozen=True):
    id: str
    status: str
    currency: str
    channel: str
    channels: list[str]
    customer_id: str | None
    coupon: str | None
    lines: list[CartLineOut]
    offers: list[OfferOut]
    subtotal: int
    discount: int
    total: int
    version: int
    #: SKUs still in the cart that can no longer be bought; checkout refuses until removed.
    unavailable: list[str] = []


class OrderLineOut(msgspec.Struct, frozen=True):
    line_no: int
    sku: str
    title: str
    quantity: int
    unit_price: int
    total: int
    location_id: str
    quantity_returned: int
    quantity_refunded: int


class PaymentOut(msgspec.Struct, frozen=True):
    id: str
    provider: str
    #: authorizing, authorized, declined, capturing, captured, voiding or voided.
    status: str
    #: ``immediate`` or ``on_fulfilment``.
    capture: str
    currency: str
    #: What was asked for (the order total computed by the server), in minor units.
    amount: int
    authorized: int
    captured: int
    refunded: int
    #: Refunds asked of the provider and not yet confirmed.
    refund_pending: int
    created_at: datetime


class OrderOut(msgspec.Struct, frozen=True):
    id: str
    number: str
    status: str
    channel: str
    external_ref: str | None
    customer_id: str | None
    fulfilment: str
    pickup_location_id: str | None
    ready_by: datetime | None
    currency: str
    subtotal: int
    discount: int
    total: int
    lines: list[OrderLineOut]
    return_state: str
    attribution: dict[str, str]
    created_at: datetime
    updated_at: datetime
    #: The order's payments with what was authorized, captured and refunded (minor units).
    payments: list[PaymentOut] = []


class EventOut(msgspec.Struct, frozen=True):
    seq: int
    id: str
    type: str
    occurred_at: datetime
    channel: str
    actor: str
    data: dict[str, Any]


class IdentityOut(msgspec.Struct, frozen=True):
    kind: str
    value: str


class CustomerOut(msgspec.Struct, frozen=True):
    id: str
    name: str
    tier: str | None
    identities: list[IdentityOut]
    created_at: datetime


class LedgerEntryOut(msgspec.Struct, frozen=True):
    seq: int
    #: top_up, pay, refund, adjustment or earn.
    kind: str
    #: Signed change of the balance (minor units).
    amount: int
    #: Signed change of the points.
    points: int
    balance_after: int
    points_after: int
    reference: str
    order_id: str | None
    channel: str
    note: str
    created_at: datetime


class WalletOut(msgspec.Struct, frozen=True):
    customer_id: str
    currency: str
    #: Stored value, minor units; never below zero.
    balance: int
    points: int
    tier: str | None
    #: Order totals counted for tiers (minor units).
    lifetime_spend: int
    #: Newest first.
    ledger: list[LedgerEntryOut]
    #: Pass as ``cursor`` for older ledger entries; null on the last page.
    next_cursor: str | None = None


class CheckoutAttemptOut(msgspec.Struct, frozen=True):
    id: str
    cart_id: str
    #: reserving, authorizing, completed, declined or abandoned.
    status: str
    channel: str
    customer_id: str | None
    currency: str
    total: int
    payment_id: str
    order_id: str | None
    reason: str | None
    #: The stock holds (reservation ids) the attempt took.
    reservations: list[str]
    #: When the holds lapse: an attempt not completed by then is undone.
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class SessionOut(msgspec.Struct, frozen=True):
    #: Send as the ``Customer-Token`` header.
    token: str
    customer: CustomerOut


class ChannelOut(msgspec.Struct, frozen=True):
    name: str
    title: str
    description: str
    capabilities: list[str]
    formats: list[str]
    locations: list[str]


class ChannelsOut(msgspec.Struct, frozen=True):
    channels: list[ChannelOut]
    #: For each channel, which journey steps it carries; the steps nobody carries are ``gaps``.
    matrix: Matrix
    #: Share of (channel, step) cells carried, 0..1.
    maturity: float


class LocationLevelOut(msgspec.Struct, frozen=True):
    location_id: str
    name: str
    kind: str
    pickup: bool
    preparation_minutes: int
    on_hand: int
    reserved: int
    available: int


class AvailabilityOut(msgspec.Struct, frozen=True):
    sku: str
    available: int
    availability: str
    locations: list[LocationLevelOut]


class StockLevelOut(msgspec.Struct, frozen=True):
    sku: str
    location_id: str
    on_hand: int
    reserved: int
    available: int


class ApiKeyOut(msgspec.Struct, frozen=True):
    id: str
    prefix: str
    channel: str
    scopes: list[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None
    #: Only in the response that creates the key; never shown again.
    secret: str | None = None


class WebhookOut(msgspec.Struct, frozen=True):
    id: str
    url: str
    event_types: list[str]
    active: bool
    created_at: datetime
    #: Standard Webhooks signing secret, only in the creating response.
    secret: str | None = None


DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookDeliveryOut(msgspec.Struct, frozen=True):
    """One event's delivery to one subscription (all attempts together)."""

    id: str
    #: Also the ``webhook-id`` header: receivers deduplicate on it.
    event_id: str
    event_type: str
    occurred_at: datetime
    status: DeliveryStatus
    attempts: int
    #: The receiver's HTTP status on the last attempt (null: no answer, e.g. a timeout).
    last_status_code: int | None
    last_error: str | None
    #: When the next attempt is due (pending deliveries only).
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class RevisionOut(msgspec.Struct, frozen=True):
    revision: int
    changed_at: datetime
    actor: str


class ImportOut(msgspec.Struct, frozen=True):
    created: int
    updated: int
    unchanged: int
    errors: list[dict[str, Any]]


class HealthOut(msgspec.Struct, frozen=True):
    status: str
    database: str
    schema_revision: str | None
    catalog_revision: int
    channels: list[str]


class HandoffOut(msgspec.Struct, frozen=True):
    #: Six characters to read out or type (no I, L, O or U); case and dashes do not matter.
    code: str
    expires_at: datetime
    #: What the QR code opens (``store.handoff_url``).
    url: str
    qr_svg: str
    #: The same QR code as a PNG data URI.
    qr_png: str
