"""Carts: created on a channel, continued on any other, priced by the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from omniretail.domain.cart import Cart, CartStatus, merge_lines, set_line
from omniretail.domain.catalog import Product, ProductStatus
from omniretail.domain.customer import Customer
from omniretail.domain.errors import Conflict, HandoffExpired, HandoffUsed, InvalidValue, NotFound
from omniretail.domain.events import (
    CartChannelJoined,
    CartCreated,
    CartHandedOff,
    CartHandoffClaimed,
    CartLineChanged,
    CartMerged,
    Event,
)
from omniretail.domain.ids import new_id, new_short_code, normalize_code
from omniretail.services.catalog import CatalogService, CatalogSnapshot
from omniretail.services.clock import Clock
from omniretail.services.pricing import OfferSource, PricedCart, price_cart
from omniretail.services.protocols import Transaction, UnitOfWork

#: How often an optimistic cart write is retried when another request changed the cart.
_RETRIES = 5


class CartService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        catalog: CatalogService,
        *,
        currency: str,
        offers: OfferSource | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.catalog = catalog
        self.currency = currency
        self.offers = offers

    async def create(
        self,
        *,
        channel: str,
        customer_id: str | None = None,
        currency: str | None = None,
        attribution: Mapping[str, str] | None = None,
        actor: str = "customer",
    ) -> Cart:
        now = self.clock()
        cart = Cart(
            id=new_id("cart"),
            currency=currency or self.currency,
            channel=channel,
            channels=(channel,),
            customer_id=customer_id,
            created_at=now,
            updated_at=now,
            attribution=dict(attribution or {}),
        )
        async with self.uow.write() as tx:
            await tx.carts.insert(cart)
            await tx.events.record(
                CartCreated(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=channel,
                    actor=actor,
                    customer_id=customer_id,
                    cart_id=cart.id,
                )
            )
        return cart

    async def get(self, cart_id: str) -> Cart:
        async with self.uow.read() as tx:
            cart = await tx.carts.get(cart_id)
        if cart is None:
            raise NotFound(f"no cart {cart_id!r}", field="cart_id")
        return cart

    async def _mutate(
        self,
        cart_id: str,
        change: Callable[[Cart, Transaction], Awaitable[tuple[Cart, list[Event]]]],
        visible: Callable[[Cart], bool] | None = None,
    ) -> Cart:
        """Apply ``change`` with optimistic concurrency: re-read and retry if the cart moved."""
        for _ in range(_RETRIES):
            async with self.uow.write() as tx:
                cart = await tx.carts.get(cart_id)
                if cart is None or (visible is not None and not visible(cart)):
                    raise NotFound(f"no cart {cart_id!r}", field="cart_id")
                cart.require_open()
                updated, events = await change(cart, tx)
                if updated == cart:
                    return cart
                updated = msgspec.structs.replace(updated, version=cart.version + 1, updated_at=self.clock())
                if await tx.carts.update(updated, cart.version, previous=cart.lines):
                    for event in events:
                        await tx.events.record(event)
                    if updated.customer_id and not cart.customer_id:
                        await tx.events.adopt_cart(cart.id, updated.customer_id)
                    return updated
        raise Conflict("the cart is being changed by another request; try again", field="cart_id")

    def _joined(self, cart: Cart, channel: str, actor: str) -> tuple[Cart, list[Event]]:
        if channel in cart.channels:
            return cart, []
        event = CartChannelJoined(
            id=new_id("evt"),
            occurred_at=self.clock(),
            channel=channel,
            actor=actor,
            customer_id=cart.customer_id,
            cart_id=cart.id,
            from_channel=cart.channels[-1],
        )
        return msgspec.structs.replace(cart, channels=(*cart.channels, channel)), [event]

    async def set_quantity(
        self,
        cart_id: str,
        sku: str,
        quantity: int,
        *,
        channel: str,
        actor: str = "customer",
        add: bool = False,
        visible: Callable[[Cart], bool] | None = None,
    ) -> Cart:
        """Set (or with ``add``, increase) a line's quantity; 0 removes the line. A cart for which
        ``visible`` is false is not found (read once, inside the write)."""
        snapshot = await self.catalog.snapshot()

        async def change(cart: Cart, tx: Transaction) -> tuple[Cart, list[Event]]:
            if quantity or add:
                _check_sku_in(snapshot, sku, cart.currency)
            target = cart.quantity_of(sku) + quantity if add else quantity
            if not add and quantity == 0 and cart.quantity_of(sku) == 0:
                raise NotFound(f"the cart has no line for {sku!r}", field="sku")
            cart2, events = self._joined(cart, channel, actor)
            cart2 = msgspec.structs.replace(cart2, lines=set_line(cart2.lines, sku, target))
            events.append(
                CartLineChanged(
                    id=new_id("evt"),
                    occurred_at=self.clock(),
                    channel=channel,
                    actor=actor,
                    customer_id=cart.customer_id,
                    cart_id=cart.id,
                    sku=sku,
                    quantity=target,
                )
            )
            return cart2, events

        return await self._mutate(cart_id, change, visible)

    async def set_coupon(self, cart_id: str, coupon: str | None, *, channel: str) -> Cart:
        async def change(cart: Cart, tx: Transaction) -> tuple[Cart, list[Event]]:
            cart2, events = self._joined(cart, channel, "customer")
            return msgspec.structs.replace(cart2, coupon=coupon or None), events

        return await self._mutate(cart_id, change)

    async def touch(self, cart_id: str, *, channel: str, actor: str = "customer") -> Cart:
        """Record that the cart is now used on ``channel`` (it keeps every channel it passed)."""

        async def change(cart: Cart, tx: Transaction) -> tuple[Cart, list[Event]]:
            return self._joined(cart, channel, actor)

        return await self._mutate(cart_id, change)

    async def attach_customer(self, cart_id: str, customer_id: str, *, channel: str) -> Cart:
        """Give a guest cart to a customer. If they already have an open cart, the guest cart's
        lines merge into it (no line lost or doubled) and that cart is returned."""
        guest = await self.get(cart_id)
        guest.require_open()
        if guest.customer_id == customer_id:
            return await self.touch(cart_id, channel=channel)
        if guest.customer_id is not None:
            raise NotFound(f"no cart {cart_id!r}", field="cart_id")  # someone else's: do not reveal
        async with self.uow.read() as tx:
            existing = await tx.carts.open_for_customer(customer_id)
        if existing is None or existing.id == guest.id or existing.currency != guest.currency:

            async def adopt(cart: Cart, tx: Transaction) -> tuple[Cart, list[Event]]:
                cart2, events = self._joined(cart, channel, "customer")
                return msgspec.structs.replace(cart2, customer_id=customer_id), events

            return await self._mutate(cart_id, adopt)
        return await self._merge(guest, existing, channel)

    async def _merge(self, guest: Cart, target: Cart, channel: str) -> Cart:
        now = self.clock()
        async with self.uow.write() as tx:
            g = await tx.carts.get(guest.id)
            c = await tx.carts.get(target.id)
            if g is None or c is None or g.status is not CartStatus.OPEN or c.status is not CartStatus.OPEN:
                raise Conflict("the cart changed during sign-in; try again", field="cart_id")
            channels = tuple(dict.fromkeys((*c.channels, *g.channels, channel)))
            merged = msgspec.structs.replace(
                c,
                lines=merge_lines(c.lines, g.lines),
                channels=channels,
                version=c.version + 1,
                updated_at=now,
                coupon=c.coupon or g.coupon,
                attribution={**g.attribution, **c.attribution},
            )
            closed = msgspec.structs.replace(g, status=CartStatus.MERGED, version=g.version + 1, updated_at=now)
            if not (await tx.carts.update(merged, c.version) and await tx.carts.update(closed, g.version)):
                raise Conflict("the cart changed during sign-in; try again", field="cart_id")
            await tx.events.adopt_cart(g.id, c.customer_id or "")
            await tx.events.record(
                CartMerged(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=channel,
                    actor="customer",
                    customer_id=c.customer_id,
                    cart_id=c.id,
                    merged_cart_id=g.id,
                )
            )
        return merged

    async def hand_off(
        self, cart_id: str, *, channel: str, minutes: int = 15, actor: str = "customer"
    ) -> tuple[str, datetime]:
        """A short code (6 characters, no look-alike letters) that continues this cart on
        another channel; it expires after ``minutes`` and can be claimed once."""
        if not 1 <= minutes <= 24 * 60:
            raise InvalidValue("a handoff lasts 1 minute to 24 hours", field="minutes")
        cart = await self.get(cart_id)
        cart.require_open()
        now = self.clock()
        expires = now + timedelta(minutes=minutes)
        async with self.uow.write() as tx:
            for _ in range(10):
                code = new_short_code(6)
                if await tx.carts.create_handoff(code, cart.id, channel, now, expires):
                    break
            else:  # pragma: no cover - 10 collisions in a 2^30 space
                raise Conflict("could not draw a free handoff code; try again", field="cart_id")
            await tx.events.record(
                CartHandedOff(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=channel,
                    actor=actor,
                    customer_id=cart.customer_id,
                    cart_id=cart.id,
                    expires_at=expires,
                )
            )
        return code, expires

    async def claim(self, code: str, *, channel: str, customer_id: str | None = None) -> Cart:
        """Continue the cart behind ``code`` on ``channel``. A second claim, an expired or an
        unknown code is refused (and changes nothing)."""
        code = normalize_code(code)
        now = self.clock()
        async with self.uow.write() as tx:
            cart_id = await tx.carts.claim_handoff(code, channel, now)
            if cart_id is None:
                found = await tx.carts.handoff(code)
                if found is None:
                    raise NotFound("no such handoff code", field="code")
                if found[3] is not None:
                    raise HandoffUsed("this code was already used", field="code")
                raise HandoffExpired("this code has expired; ask for a new one", field="code")
            cart = await tx.carts.get(cart_id)
            assert cart is not None
            await tx.events.record(
                CartHandoffClaimed(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=channel,
                    actor="customer",
                    customer_id=cart.customer_id,
                    cart_id=cart_id,
                    from_channel=cart.channels[-1],
                )
            )
        cart = await self.touch(cart_id, channel=channel)
        if customer_id is not None and cart.customer_id != customer_id:
            cart = await self.attach_customer(cart_id, customer_id, channel=channel)
        return cart

    async def price(self, cart: Cart, customer: Customer | None) -> PricedCart:
        snapshot = await self.catalog.snapshot()
        products = {sku: snapshot.by_sku[sku][0] for sku in {x.sku for x in cart.lines} if sku in snapshot.by_sku}
        return price_cart(cart, products, customer, self.offers, strict=False)


def _check_sku_in(snapshot: CatalogSnapshot, sku: str, currency: str) -> Product:
    found = snapshot.by_sku.get(sku)
    if found is None or found[0].status is not ProductStatus.ACTIVE:
        raise NotFound(f"SKU {sku!r} is not for sale", field="sku")
    product, variant = found
    if variant.price_for(currency) is None:
        raise InvalidValue(f"SKU {sku!r} has no price in {currency}", field="sku")
    return product
