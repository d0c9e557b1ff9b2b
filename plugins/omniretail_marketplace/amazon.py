"""Amazon SP-API Orders v0 on the wire, and its translation into an ``ExternalOrder``.

Model: ``models/orders-api-model/ordersV0.json`` in github.com/amzn/selling-partner-api-models
(copied to shared/schemas/amazon-orders-v0.json). Only the fields omniretail uses are declared;
every other Amazon field is ignored, so a richer payload decodes. Declared fields are strict:
amounts are decimal strings, dates carry a time zone, statuses are Amazon's enum.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from omniretail.domain.catalog import Sku
from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.errors import CurrencyMismatch, InvalidValue
from omniretail.domain.money import Currency, minor_exponent
from omniretail.services.orders import ExternalLine, ExternalOrder

OrderStatus = Literal[
    "PendingAvailability",
    "Pending",
    "Unshipped",
    "PartiallyShipped",
    "Shipped",
    "InvoiceUnconfirmed",
    "Canceled",
    "Unfulfillable",
]
#: Statuses in which the order is paid and ours to fulfil: taken into the order book.
TAKEN = frozenset({"Unshipped", "PartiallyShipped", "Shipped", "InvoiceUnconfirmed"})
#: Statuses in which every unit has left (the order is shipped here too).
SHIPPED = frozenset({"Shipped", "InvoiceUnconfirmed"})
#: Why an order in these statuses is not taken.
NOT_YET = {
    "Pending": "payment is not confirmed yet (Amazon gives no reliable prices before Unshipped)",
    "PendingAvailability": "a pre-order whose payment is not confirmed yet",
    "Unfulfillable": "Amazon cannot fulfil it (a fulfilled-by-Amazon order)",
    "Canceled": "it was cancelled on the marketplace before it was taken",
}

#: ``"12.34"``: digits, optionally a point and more digits. Bounded so Decimal stays exact.
DecimalString = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,15}(\.[0-9]{1,6})?$")]
AmazonId = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


class Money(msgspec.Struct, frozen=True, rename="pascal"):
    currency_code: Currency
    amount: DecimalString


#: Text without NUL characters (PostgreSQL text cannot hold them).
Text = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*$")]


class BuyerInfo(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    buyer_email: Annotated[Text, msgspec.Meta(max_length=320)] | None = None
    buyer_name: Annotated[Text, msgspec.Meta(max_length=300)] | None = None


class OrderItem(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    seller_sku: Annotated[Text, msgspec.Meta(min_length=1, max_length=200)] | None = msgspec.field(
        default=None, name="SellerSKU"
    )
    order_item_id: Annotated[Text, msgspec.Meta(max_length=100)] | None = None
    asin: str | None = msgspec.field(default=None, name="ASIN")
    quantity_ordered: Annotated[int, msgspec.Meta(ge=0, le=100_000)]
    #: The price of the whole line (unit price times quantity), not of one unit.
    item_price: Money | None = None


class Order(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    amazon_order_id: AmazonId
    order_status: OrderStatus
    purchase_date: AwareDateTime
    last_update_date: AwareDateTime
    fulfillment_channel: Literal["MFN", "AFN"] | None = None
    marketplace_id: str | None = None
    order_total: Money | None = None
    buyer_info: BuyerInfo | None = None


class WebhookOrder(Order, frozen=True, kw_only=True, rename="pascal"):
    """The webhook body: an Orders v0 ``Order`` with its ``OrderItems`` alongside."""

    order_items: Annotated[list[OrderItem], msgspec.Meta(max_length=500)] = msgspec.field(default_factory=list)


class OrdersPage(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    orders: list[Order]
    next_token: str | None = None


class GetOrdersResponse(msgspec.Struct, frozen=True, kw_only=True):
    payload: OrdersPage


class OrderItemsPage(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    order_items: list[OrderItem]
    next_token: str | None = None


class GetOrderItemsResponse(msgspec.Struct, frozen=True, kw_only=True):
    payload: OrderItemsPage


# -- to the order book ---------------------------------------------------------------------------


class UnknownSku(InvalidValue):
    """The marketplace sold a SKU the catalog does not have."""

    code = "unknown-sku"


def _is_sku(value: str) -> bool:
    try:
        msgspec.convert(value, Sku)
    except msgspec.ValidationError:
        return False
    return True


def minor_units(money: Money, field: str) -> int:
    """``"12.34"`` EUR -> 1234, exactly; more decimals than the currency has is an error."""
    scaled = Decimal(money.amount).scaleb(minor_exponent(money.currency_code))
    if scaled != scaled.to_integral_value():
        raise InvalidValue(
            f"{money.amount} has more decimals than {money.currency_code} allows", field=f"{field}.Amount"
        )
    return int(scaled)


def external_lines(items: list[OrderItem], currency: str) -> tuple[ExternalLine, ...]:
    """One line per item (two when the line price does not divide evenly by the quantity: the
    first units at the lower cent, the rest one cent more, so the total stays exact)."""
    lines: list[ExternalLine] = []
    for i, item in enumerate(items):
        where = f"OrderItems[{i}]"
        if item.quantity_ordered == 0:  # a cancelled item of a partly cancelled order
            continue
        if not item.seller_sku:
            raise InvalidValue("SellerSKU is required", field=f"{where}.SellerSKU")
        if not _is_sku(item.seller_sku):  # cannot be in the catalog
            raise UnknownSku(f"SKU {item.seller_sku!r} is not in the catalog", field=f"{where}.SellerSKU")
        if item.item_price is None:
            raise InvalidValue("ItemPrice is required for an order to take", field=f"{where}.ItemPrice")
        if item.item_price.currency_code != currency:
            raise CurrencyMismatch(
                f"ItemPrice is in {item.item_price.currency_code}, the order in {currency}",
                field=f"{where}.ItemPrice.CurrencyCode",
            )
        total = minor_units(item.item_price, f"{where}.ItemPrice")
        base, extra = divmod(total, item.quantity_ordered)
        if item.quantity_ordered > extra:
            lines.append(ExternalLine(sku=item.seller_sku, quantity=item.quantity_ordered - extra, unit_price=base))
        if extra:
            lines.append(ExternalLine(sku=item.seller_sku, quantity=extra, unit_price=base + 1))
    if not lines:
        raise InvalidValue("the order has no item with a quantity", field="OrderItems")
    return tuple(lines)


def order_currency(order: Order, items: list[OrderItem]) -> str:
    if order.order_total is not None:
        return order.order_total.currency_code
    for item in items:
        if item.item_price is not None:
            return item.item_price.currency_code
    raise InvalidValue("the order has no OrderTotal and no ItemPrice", field="OrderTotal")


def external_order(channel: str, order: Order, items: list[OrderItem]) -> ExternalOrder:
    """The marketplace order as omniretail ingests it. The buyer is known by the (anonymised,
    stable per buyer) e-mail Amazon gives: as the marketplace buyer id and as an e-mail."""
    currency = order_currency(order, items)
    identities: tuple[Identity, ...] = ()
    email = None
    buyer = order.buyer_info
    if buyer is not None and buyer.buyer_email and buyer.buyer_email.strip():
        email = buyer.buyer_email.strip().lower()
        identities = (
            Identity(kind=IdentityKind.MARKETPLACE_BUYER, value=email, namespace=channel),
            Identity(kind=IdentityKind.EMAIL, value=email),
        )
    return ExternalOrder(
        channel=channel,
        external_ref=order.amazon_order_id,
        currency=currency,
        lines=external_lines(items, currency),
        identities=identities,
        buyer_name=(buyer.buyer_name or "").strip() if buyer is not None else "",
        email=email,
    )
