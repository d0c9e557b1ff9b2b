"""Carts: lines of SKUs and quantities. Prices are computed by the server, never stored here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from omniretail.domain.errors import CartClosed, InvalidValue

Quantity = Annotated[int, msgspec.Meta(ge=1, le=999)]


class CartStatus(StrEnum):
    OPEN = "open"
    CHECKED_OUT = "checked_out"
    MERGED = "merged"


class CartLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    quantity: int


class Cart(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    currency: str
    #: The channel the cart was created on.
    channel: str
    #: Every channel that touched the cart, in order of first touch (origin first).
    channels: tuple[str, ...]
    customer_id: str | None = None
    status: CartStatus = CartStatus.OPEN
    lines: tuple[CartLine, ...] = ()
    coupon: str | None = None
    #: Where the shopper came from (utm_source, post id, ...): copied onto the order.
    attribution: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int = 1

    def require_open(self) -> None:
        if self.status is not CartStatus.OPEN:
            raise CartClosed(f"cart {self.id} is {self.status.value}", field="cart_id")

    def quantity_of(self, sku: str) -> int:
        return sum(line.quantity for line in self.lines if line.sku == sku)


def set_line(lines: tuple[CartLine, ...], sku: str, quantity: int) -> tuple[CartLine, ...]:
    """Lines with ``sku`` set to ``quantity`` (0 removes it); order of lines is kept."""
    if quantity < 0 or quantity > 999:
        raise InvalidValue(f"quantity {quantity} is out of range 0..999", field="quantity")
    out = [line for line in lines if line.sku != sku]
    if quantity:
        position = next((i for i, line in enumerate(lines) if line.sku == sku), len(out))
        out.insert(position, CartLine(sku=sku, quantity=quantity))
    return tuple(out)


def merge_lines(into: tuple[CartLine, ...], other: tuple[CartLine, ...]) -> tuple[CartLine, ...]:
    """Merge a guest cart into a customer's cart: same SKU keeps the larger quantity.

    Taking the maximum rather than the sum means a line the shopper added on both devices is not
    doubled, and a line present on one side only is kept.
    """
    result = list(into)
    for line in other:
        existing = next((i for i, x in enumerate(result) if x.sku == line.sku), None)
        if existing is None:
            result.append(line)
        elif line.quantity > result[existing].quantity:
            result[existing] = line
    return tuple(result)
