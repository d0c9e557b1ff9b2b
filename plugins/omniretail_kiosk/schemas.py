"""Request bodies and responses of the kiosk routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from omniretail.domain.catalog import Sku
from omniretail.gateway.schemas import CartOut, Email, MoneyOut, OrderOut, PaymentBody, Phone, Quantity, ShortText

CartId = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
LoyaltyCard = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-]*$", examples=["4711-0042"])
]

# -- requests -------------------------------------------------------------------------------------


class OrderLineIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity = 1


class KioskOrderBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Give ``cart_id`` (a cart built at the kiosk) or ``lines`` (the kiosk makes the cart)."""

    cart_id: CartId | None = None
    lines: Annotated[tuple[OrderLineIn, ...], msgspec.Meta(max_length=50)] = ()
    #: ``pickup``: collect at this store (click and collect); ``ship``: delivered from the
    #: channel's other locations (endless aisle, shipped home).
    fulfilment: Literal["pickup", "ship"] = "pickup"
    #: For pickup: may lines this store lacks come from another location (ready later)?
    allow_transfer: bool = True
    #: A guest order needs one of these (a signed-in or identified customer does not).
    email: Email | None = None
    phone: Phone | None = None
    #: Pay now with a provider the kiosk offers (e.g. ``{"provider": "wallet"}`` once the shopper
    #: is identified); without it the order is placed unpaid (pay at the counter).
    payment: PaymentBody | None = None


class StaffBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: ShortText = ""


class IdentifyBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    loyalty_card: LoyaltyCard
    #: A kiosk cart to give to this customer (merged into their open cart if they have one).
    cart_id: CartId | None = None
    #: Name for a customer seen for the first time.
    name: ShortText = ""


class ReturnBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The order number on the receipt (from any channel: bought online, returned here).
    order_number: Annotated[str, msgspec.Meta(min_length=4, max_length=20)]
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=999)] = 1
    #: Who took the item back, for the order's history.
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


class OrderLookupOut(msgspec.Struct, frozen=True, kw_only=True):
    orders: list[OrderOut]


# -- responses ------------------------------------------------------------------------------------


class StoreOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    address: str
    store_code: str | None
    pickup: bool
    #: Minutes from order to ready for pickup when the store has the units.
    preparation_minutes: int
    #: Minutes from order to ready for pickup when a unit comes from another location.
    transfer_preparation_minutes: int


class KioskVariantOut(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    title: str
    gtin: str | None
    price: MoneyOut | None
    #: Availability at this store: in_stock, low_stock or out_of_stock.
    availability: str
    #: Free units at this store.
    in_store: int
    #: Free units at the channel's other locations (endless aisle).
    elsewhere: int
    #: The most units one order line can get now.
    orderable: int
    #: The store lacks it but another location has it: orderable for pickup later or shipping.
    endless_aisle: bool
    #: Minutes until a pickup order of one unit would be ready (None: not orderable now).
    pickup_ready_minutes: int | None


class KioskProductOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    handle: str
    title: str
    description: str
    brand: str | None
    image: str | None
    variants: list[KioskVariantOut]


class KioskCatalogOut(msgspec.Struct, frozen=True, kw_only=True):
    store: StoreOut
    items: list[KioskProductOut]
    next_cursor: str | None = None


class KioskOrderOut(msgspec.Struct, frozen=True, kw_only=True):
    order: OrderOut
    #: When a pickup order will be ready (None for shipped orders).
    ready_by: datetime | None
    #: The store the order is collected at (None for shipped orders).
    pickup_store: StoreOut | None
    #: Lines that come from another location than this store.
    from_elsewhere: list[str]


class QrOut(msgspec.Struct, frozen=True, kw_only=True):
    #: What the code encodes.
    url: str
    #: A standalone SVG document (inline it, or use it as a data URI).
    svg: str
    png_base64: str
    #: GET URLs of the same code as image/svg+xml and image/png (signed handoff only).
    svg_url: str | None = None
    png_url: str | None = None


class HandoffOut(msgspec.Struct, frozen=True, kw_only=True):
    cart_id: str
    #: Continues this same cart on the phone (needs ``handoff_secret``), until ``expires_at``.
    handoff_url: str | None
    expires_at: datetime | None
    #: The web shop checkout URL that rebuilds the cart's lines on the phone.
    checkout_url: str | None
    #: The QR code to show: of ``handoff_url`` when there is one, else of ``checkout_url``.
    qr: QrOut


class KioskCustomerOut(msgspec.Struct, frozen=True, kw_only=True):
    """What a kiosk may show about a shopper: no e-mail, phone or other identities."""

    id: str
    name: str
    tier: str | None
    #: The card used, as stored (spaces and dashes removed, upper case).
    loyalty_card: str


class IdentifyOut(msgspec.Struct, frozen=True, kw_only=True):
    customer: KioskCustomerOut
    #: True when this card was seen for the first time (a new customer record).
    created: bool
    #: The customer's cart after ``cart_id`` was given to them (may be their existing cart).
    cart: CartOut | None = None
