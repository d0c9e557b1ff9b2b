"""Pricing on the server: tier prices from the catalog, then offers from plugins.

A client never sends a price. The same cart and customer price the same on every channel:
nothing here takes the channel into account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import msgspec

from omniretail.domain.cart import Cart
from omniretail.domain.catalog import Product, ProductStatus
from omniretail.domain.customer import Customer
from omniretail.domain.errors import DomainError, InvalidValue, NotFound


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """A discount a plugin grants: on one SKU's line(s) or, with ``sku=None``, on the cart."""

    code: str
    title: str
    #: Discount in minor units of the cart's currency (positive number).
    amount: int
    sku: str | None = None

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise InvalidValue(f"offer {self.code!r} has a negative amount", field="amount")


class PricedLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    product_id: str
    title: str
    quantity: int
    #: The price this customer pays per unit before offers (tier price where one exists).
    unit_price: int
    #: The public price per unit, to show what a tier saves.
    list_price: int
    discount: int = 0

    @property
    def subtotal(self) -> int:
        return self.unit_price * self.quantity

    @property
    def total(self) -> int:
        return self.subtotal - self.discount


class PricedCart(msgspec.Struct, frozen=True, kw_only=True):
    cart_id: str
    currency: str
    tier: str | None
    coupon: str | None
    lines: tuple[PricedLine, ...]
    offers: tuple[Offer, ...] = ()
    #: SKUs in the cart that can no longer be bought (archived, unpriced); checkout refuses them.
    unavailable: tuple[str, ...] = ()

    @property
    def subtotal(self) -> int:
        return sum(line.subtotal for line in self.lines)

    @property
    def discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def total(self) -> int:
        return self.subtotal - self.discount


OfferSource = Callable[[PricedCart, Customer | None], Iterable[Offer]]


def price_cart(
    cart: Cart,
    products: Mapping[str, Product],
    customer: Customer | None,
    offer_source: OfferSource | None = None,
    *,
    strict: bool = True,
) -> PricedCart:
    """Price every line from the catalog, then apply offers (capped so no line goes below 0).

    ``strict`` (checkout) raises on a line that cannot be bought; otherwise (showing a cart) such
    lines are left out of the totals and listed in ``unavailable``.
    """
    tier = customer.tier if customer is not None else None
    lines: list[PricedLine] = []
    unavailable: list[str] = []
    for line in cart.lines:
        product = products.get(line.sku)
        variant = product.variant(line.sku) if product else None
        unit = variant.price_for(cart.currency, tier) if variant else None
        listed = variant.price_for(cart.currency, None) if variant else None
        if product is None or variant is None or product.status is not ProductStatus.ACTIVE:
            problem: DomainError = NotFound(f"SKU {line.sku!r} is not for sale", field="sku")
        elif unit is None or listed is None:
            problem = InvalidValue(f"SKU {line.sku!r} has no price in {cart.currency}", field="sku")
        else:
            title = product.title if not variant.title else f"{product.title} - {variant.title}"
            lines.append(
                PricedLine(
                    sku=line.sku,
                    product_id=product.id,
                    title=title,
                    quantity=line.quantity,
                    unit_price=unit.amount,
                    list_price=listed.amount,
                )
            )
            continue
        if strict:
            raise problem
        unavailable.append(line.sku)
    priced = PricedCart(
        cart_id=cart.id,
        currency=cart.currency,
        tier=tier,
        coupon=cart.coupon,
        lines=tuple(lines),
        unavailable=tuple(unavailable),
    )
    if offer_source is None or not lines:
        return priced
    return apply_offers(priced, list(offer_source(priced, customer)))


def apply_offers(priced: PricedCart, offers: list[Offer]) -> PricedCart:
    """Spread offers over lines: SKU offers on that SKU's line, cart offers pro rata by value.
    No line is discounted below zero, so the total discount never exceeds the subtotal."""
    discounts = [0] * len(priced.lines)
    applied: list[Offer] = []
    for offer in sorted(offers, key=lambda o: (o.sku is None, o.code)):
        room = [line.subtotal - d for line, d in zip(priced.lines, discounts, strict=True)]
        if offer.sku is not None:
            targets = [i for i, line in enumerate(priced.lines) if line.sku == offer.sku]
        else:
            targets = list(range(len(priced.lines)))
        available = sum(room[i] for i in targets)
        amount = min(offer.amount, available)
        if amount <= 0:
            continue
        remaining = amount
        for n, i in enumerate(targets):
            share = remaining if n == len(targets) - 1 else min(room[i], amount * room[i] // available)
            share = min(share, room[i])
            discounts[i] += share
            remaining -= share
        # Rounding leftovers go to any line that still has room.
        for i in targets:
            if remaining <= 0:
                break
            extra = min(remaining, priced.lines[i].subtotal - discounts[i])
            discounts[i] += extra
            remaining -= extra
        applied.append(msgspec.structs.replace(offer, amount=amount - remaining))
    lines = tuple(msgspec.structs.replace(line, discount=d) for line, d in zip(priced.lines, discounts, strict=True))
    return msgspec.structs.replace(priced, lines=lines, offers=tuple(applied))
