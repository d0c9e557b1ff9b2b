"""Checkout, external order ingestion, order transitions and returns.

Checkout without payment is one transaction: the cart is priced from the catalog as it is now,
every line's stock is taken by a conditional UPDATE, the order is written, the cart is closed and
``order.placed`` goes to the outbox. If any step fails, nothing happened. A checkout with payment
runs in steps with compensation (``omniretail.services.checkout``) and reuses the pieces here.

Cancelling an order voids or refunds its payments; a return refunds the returned units' share
(``omniretail.services.payments``), never more than was captured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import msgspec

from omniretail.domain.cart import Cart, CartStatus
from omniretail.domain.catalog import Sku
from omniretail.domain.customer import Customer, Identity, IdentityKind
from omniretail.domain.errors import Conflict, InvalidValue, NotFound, OutOfStock
from omniretail.domain.events import Event, OrderLineReturned, OrderPlaced, OrderStatusChanged
from omniretail.domain.ids import new_id, new_order_number
from omniretail.domain.inventory import StockLocation
from omniretail.domain.order import (
    UNFULFILLED,
    Fulfilment,
    Order,
    OrderLine,
    OrderStatus,
    check_transition,
)
from omniretail.domain.payment import split_refund
from omniretail.services.clock import Clock
from omniretail.services.customers import CustomerService
from omniretail.services.payments import PaymentService
from omniretail.services.pricing import OfferSource, PricedCart, price_cart
from omniretail.services.protocols import Transaction, UnitOfWork


class PaymentChoice(msgspec.Struct, frozen=True, kw_only=True):
    """How the customer pays: a configured provider, and its opaque token if it takes one."""

    provider: str
    token: str | None = None


class CheckoutRequest(msgspec.Struct, frozen=True, kw_only=True):
    cart_id: str
    channel: str
    fulfilment: Fulfilment = Fulfilment.SHIP
    pickup_location_id: str | None = None
    email: str | None = None
    phone: str | None = None
    #: The signed-in customer placing the order, if any (must own the cart).
    customer_id: str | None = None
    #: Also without ``customer_id``: a cart that belongs to a customer is not found (a gateway
    #: caller that is not the back office). Off for channels checking out on a customer's behalf.
    caller_must_own: bool = False
    #: Stock locations to sell from, in order; default: the channel's configured locations.
    locations: tuple[str, ...] | None = None
    #: For pickup: may lines the store lacks come from another location (endless aisle)?
    allow_transfer: bool = False
    actor: str = "customer"
    #: Pay at checkout (None: the order is placed unpaid, as an order taken by phone).
    payment: PaymentChoice | None = None
    #: The client's Idempotency-Key: a retry with it finishes or undoes the same attempt.
    idempotency_key: str | None = None


class CheckoutPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A checked checkout request: where stock may come from, the pickup store, the contact."""

    sources: tuple[str, ...]
    pickup: StockLocation | None
    contact: tuple[Identity, ...]


class ExternalLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: int
    #: What the channel charged per unit, in minor units (a marketplace sets its own price).
    unit_price: int


class ExternalOrder(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    external_ref: str
    currency: str
    lines: tuple[ExternalLine, ...]
    identities: tuple[Identity, ...] = ()
    buyer_name: str = ""
    fulfilment: Fulfilment = Fulfilment.SHIP
    locations: tuple[str, ...] | None = None
    email: str | None = None


class _Duplicate(Exception):
    pass


class OrderService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        customers: CustomerService,
        *,
        locations: Sequence[StockLocation],
        channel_locations: dict[str, tuple[str, ...]],
        offers: OfferSource | None = None,
        payments: PaymentService | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.customers = customers
        self.locations = {loc.id: loc for loc in locations}
        self.channel_locations = channel_locations
        self.offers = offers
        self.payments = payments
        #: The paid checkout (set by the kernel when payment providers are configured).
        self.paid_checkout: Callable[[CheckoutRequest], Awaitable[Order]] | None = None

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, order_id: str) -> Order:
        async with self.uow.read() as tx:
            order = await tx.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", field="order_id")
        return order

    async def by_number(self, number: str) -> Order | None:
        async with self.uow.read() as tx:
            return await tx.orders.get_by_number(number.strip().upper())

    async def by_cart(self, cart_id: str) -> Order | None:
        async with self.uow.read() as tx:
            return await tx.orders.get_by_cart(cart_id)

    async def events(self, order_id: str) -> list[tuple[int, Event]]:
        async with self.uow.read() as tx:
            return await tx.events.for_order(order_id)

    async def for_customer(self, customer_id: str, *, after: str | None = None, limit: int = 20) -> list[Order]:
        async with self.uow.read() as tx:
            return await tx.orders.for_customer(customer_id, after=after, limit=limit)

    async def page(
        self,
        *,
        after: str | None = None,
        limit: int = 20,
        channel: str | None = None,
        status: str | None = None,
    ) -> list[Order]:
        async with self.uow.read() as tx:
            return await tx.orders.page(after=after, limit=limit, channel=channel, status=status)

    # -- checkout ------------------------------------------------------------------------------

    def _sources(self, channel: str, locations: Sequence[str] | None) -> tuple[str, ...]:
        sources = (
            tuple(locations) if locations is not None else self.channel_locations.get(channel, tuple(self.locations))
        )
        for loc in sources:
            if loc not in self.locations:
                raise NotFound(f"no stock location {loc!r}", field="locations")
        return sources

    async def _allocate(self, tx: Transaction, sku: str, quantity: int, candidates: Sequence[str]) -> str:
        now = self.clock()
        for location_id in candidates:
            if await tx.stock.take(sku, location_id, quantity):
                return location_id
            # Holds that lapsed still count as reserved until swept: sweep them, then try again.
            if await tx.stock.sweep_expired(now, sku, location_id) and await tx.stock.take(sku, location_id, quantity):
                return location_id
        raise OutOfStock(sku, quantity)

    def plan(self, request: CheckoutRequest) -> CheckoutPlan:
        """Check a checkout request before anything is written (locations, pickup, contact)."""
        sources = self._sources(request.channel, request.locations)
        pickup: StockLocation | None = None
        if request.fulfilment is Fulfilment.PICKUP:
            if not request.pickup_location_id:
                raise InvalidValue("pickup needs pickup_location_id", field="pickup_location_id")
            pickup = self.locations.get(request.pickup_location_id)
            if pickup is None or not pickup.pickup:
                raise InvalidValue(f"{request.pickup_location_id!r} does not offer pickup", field="pickup_location_id")
        elif request.pickup_location_id:
            raise InvalidValue("pickup_location_id is only for pickup orders", field="pickup_location_id")
        contact = [Identity(kind=IdentityKind.EMAIL, value=request.email)] if request.email else []
        if request.phone:
            contact.append(Identity(kind=IdentityKind.PHONE, value=request.phone))
        contact = [c.normalized() for c in contact]  # validates before anything is written
        return CheckoutPlan(sources=sources, pickup=pickup, contact=tuple(contact))

    def candidates(self, plan: CheckoutPlan, request: CheckoutRequest) -> list[str]:
        """Locations a line may come from, in preference order."""
        if plan.pickup is None:
            return list(plan.sources)
        others = [x for x in plan.sources if x != plan.pickup.id] if request.allow_transfer else []
        return [plan.pickup.id, *others]

    async def price_in(
        self, tx: Transaction, request: CheckoutRequest, plan: CheckoutPlan
    ) -> tuple[Cart, str, PricedCart]:
        """The open cart, the customer ordering (resolved from the contact for a guest) and the
        cart priced now, by the server."""
        cart = await tx.carts.get(request.cart_id)
        if cart is None or (
            (request.customer_id or request.caller_must_own) and cart.customer_id not in (None, request.customer_id)
        ):
            raise NotFound(f"no cart {request.cart_id!r}", field="cart_id")
        cart.require_open()
        if not cart.lines:
            raise InvalidValue("the cart is empty", field="cart_id")
        customer_id = request.customer_id or cart.customer_id
        if customer_id is None and not plan.contact:
            raise InvalidValue("a guest order needs an email or phone", field="email")
        created: Customer | None = None
        if customer_id is None:
            customer_id, created = await self.customers.resolve_or_create_in(
                tx, plan.contact, channel=request.channel, name="", actor=request.actor
            )
        customer = created or await tx.customers.get(customer_id)
        products = await tx.products.get_by_skus([x.sku for x in cart.lines])
        return cart, customer_id, price_cart(cart, products, customer, self.offers)

    def build(
        self,
        request: CheckoutRequest,
        plan: CheckoutPlan,
        cart: Cart,
        customer_id: str,
        priced: PricedCart,
        located: dict[int, str],
        now: datetime,
    ) -> Order:
        """The order for a priced cart whose line ``n`` (from 1) comes from ``located[n]``."""
        lines = [
            OrderLine(
                line_no=no,
                sku=line.sku,
                title=line.title,
                quantity=line.quantity,
                unit_price=line.unit_price,
                total=line.total,
                location_id=located[no],
            )
            for no, line in enumerate(priced.lines, start=1)
        ]
        pickup = plan.pickup
        ready_by = None
        if pickup is not None:
            transfer = any(x.location_id != pickup.id for x in lines)
            ready_by = (
                now + timedelta(minutes=pickup.preparation_minutes) + (timedelta(days=2) if transfer else timedelta())
            )
        return Order(
            id=new_id("ord"),
            number=new_order_number(),
            channel=request.channel,
            customer_id=customer_id,
            fulfilment=request.fulfilment,
            pickup_location_id=pickup.id if pickup else None,
            ready_by=ready_by,
            currency=cart.currency,
            subtotal=priced.subtotal,
            discount=priced.discount,
            total=priced.total,
            lines=tuple(lines),
            email=request.email,
            phone=request.phone,
            cart_id=cart.id,
            attribution=cart.attribution,
            created_at=now,
            updated_at=now,
        )

    async def place_in(self, tx: Transaction, order: Order, cart: Cart, request: CheckoutRequest) -> None:
        """Write the order, close the cart (if nobody changed it) and record ``order.placed``."""
        now = order.created_at
        if not await tx.orders.insert(order):
            raise Conflict("this cart was checked out already", field="cart_id")
        # A guest cart stays a guest cart (its id is all the guest holds); its events join
        # the customer's timeline below.
        closed = msgspec.structs.replace(cart, status=CartStatus.CHECKED_OUT, version=cart.version + 1, updated_at=now)
        if not await tx.carts.update(closed, cart.version, lines=False):
            raise Conflict("the cart changed during checkout; try again", field="cart_id")
        assert order.customer_id is not None
        await tx.events.adopt_cart(cart.id, order.customer_id)
        await tx.events.record(
            OrderPlaced(
                id=new_id("evt"),
                occurred_at=now,
                channel=request.channel,
                actor=request.actor,
                customer_id=order.customer_id,
                order_id=order.id,
                number=order.number,
                total=order.total,
                currency=order.currency,
                fulfilment=order.fulfilment.value,
                cart_id=cart.id,
                journey=cart.channels,
            )
        )

    async def checkout(self, request: CheckoutRequest) -> Order:
        """Turn an open cart into an order. Raises a named domain error and changes nothing if
        the cart is closed or empty, a line is not for sale or stock is short.

        With ``request.payment`` the checkout is paid (reserve, authorize, write the order,
        capture; see ``omniretail.services.checkout``); without it the order is placed unpaid."""
        if request.payment is not None:
            if self.paid_checkout is None:
                raise InvalidValue("no payment provider is configured", field="payment.provider")
            return await self.paid_checkout(request)
        plan = self.plan(request)
        now = self.clock()
        async with self.uow.write() as tx:
            cart, customer_id, priced = await self.price_in(tx, request, plan)
            located: dict[int, str] = {}
            # Stock rows are taken in SKU order so concurrent checkouts lock them in one order.
            for no, line in sorted(enumerate(priced.lines, start=1), key=lambda x: x[1].sku):
                located[no] = await self._allocate(tx, line.sku, line.quantity, self.candidates(plan, request))
            order = self.build(request, plan, cart, customer_id, priced, located, now)
            await self.place_in(tx, order, cart, request)
        return order

    async def ingest(self, external: ExternalOrder, *, actor: str | None = None) -> tuple[Order, bool]:
        """Record an order a channel took (marketplace, ...). Idempotent on
        (channel, external_ref): a repeat returns the first order and ``False``."""
        if not external.lines:
            raise InvalidValue("an order needs at least one line", field="lines")
        for i, line in enumerate(external.lines):
            if line.quantity < 1 or line.unit_price < 0:
                raise InvalidValue("quantity must be >= 1 and unit_price >= 0", field=f"lines[{i}]")
        async with self.uow.read() as tx:
            existing = await tx.orders.get_by_external_ref(external.channel, external.external_ref)
        if existing is not None:
            return existing, False
        sources = self._sources(external.channel, external.locations)
        identities = [i.normalized() for i in external.identities]
        now = self.clock()
        actor = actor or f"channel:{external.channel}"
        try:
            async with self.uow.write() as tx:
                customer_id = None
                if identities:
                    customer_id = await self.customers.resolve_in(
                        tx, identities, channel=external.channel, name=external.buyer_name, actor=actor
                    )
                products = await tx.products.get_by_skus([x.sku for x in external.lines])
                lines = []
                for no, line in sorted(enumerate(external.lines, start=1), key=lambda x: x[1].sku):
                    product = products.get(line.sku)
                    if product is None:
                        raise NotFound(f"SKU {line.sku!r} is not in the catalog", field=f"lines[{no - 1}].sku")
                    location_id = await self._allocate(tx, line.sku, line.quantity, sources)
                    lines.append(
                        OrderLine(
                            line_no=no,
                            sku=line.sku,
                            title=product.title,
                            quantity=line.quantity,
                            unit_price=line.unit_price,
                            total=line.unit_price * line.quantity,
                            location_id=location_id,
                        )
                    )
                lines.sort(key=lambda x: x.line_no)
                total = sum(x.total for x in lines)
                order = Order(
                    id=new_id("ord"),
                    number=new_order_number(),
                    channel=external.channel,
                    external_ref=external.external_ref,
                    customer_id=customer_id,
                    fulfilment=external.fulfilment,
                    currency=external.currency,
                    subtotal=total,
                    total=total,
                    lines=tuple(lines),
                    email=external.email,
                    created_at=now,
                    updated_at=now,
                )
                if not await tx.orders.insert(order):
                    raise _Duplicate
                await tx.events.record(
                    OrderPlaced(
                        id=new_id("evt"),
                        occurred_at=now,
                        channel=external.channel,
                        actor=actor,
                        customer_id=customer_id,
                        order_id=order.id,
                        number=order.number,
                        total=total,
                        currency=order.currency,
                        fulfilment=order.fulfilment.value,
                        external_ref=external.external_ref,
                        journey=(external.channel,),
                    )
                )
        except _Duplicate:
            async with self.uow.read() as tx:
                existing = await tx.orders.get_by_external_ref(external.channel, external.external_ref)
            assert existing is not None
            return existing, False
        return order, True

    # -- after the order -----------------------------------------------------------------------

    async def transition(
        self, order_id: str, target: OrderStatus, *, channel: str, actor: str = "staff", note: str = ""
    ) -> Order:
        """Move the order in its state machine. Cancelling an unfulfilled order returns its
        units to the locations they came from, voids its authorized payments and refunds what
        was captured."""
        for _ in range(3):
            order = await self.get(order_id)
            check_transition(order.status, target, order.fulfilment)
            now = self.clock()
            operations: list[str] = []
            async with self.uow.write() as tx:
                if not await tx.orders.set_status(order.id, order.status, target, now):
                    continue  # changed concurrently: re-check against the new status
                if target is OrderStatus.CANCELLED and order.status in UNFULFILLED:
                    for line in order.lines:
                        if line.returnable:
                            await tx.stock.put_back(line.sku, line.location_id, line.returnable)
                if target is OrderStatus.CANCELLED and self.payments is not None:
                    operations = await self.payments.plan_cancel_in(tx, order, channel=channel, actor=actor)
                await tx.events.record(
                    OrderStatusChanged(
                        id=new_id("evt"),
                        occurred_at=now,
                        channel=channel,
                        actor=actor,
                        customer_id=order.customer_id,
                        order_id=order.id,
                        number=order.number,
                        from_status=order.status.value,
                        to_status=target.value,
                        note=note,
                    )
                )
            if self.payments is not None:
                await self.payments.execute_all(operations)
            return await self.get(order_id)
        raise Conflict("the order is being changed by another request; try again", field="status")

    async def return_line(
        self,
        order_id: str,
        line_no: int,
        quantity: int,
        *,
        location_id: str,
        channel: str,
        actor: str = "staff",
        refund: bool = True,
    ) -> Order:
        """Take back units of a line at any location (bought anywhere, returned anywhere). With
        ``refund``, the units' share of the line total goes back to the order's payments (at most
        what is left captured)."""
        if location_id not in self.locations:
            raise NotFound(f"no stock location {location_id!r}", field="location_id")
        order = await self.get(order_id)
        line = order.check_return(line_no, quantity)
        now = self.clock()
        operations: list[str] = []
        async with self.uow.write() as tx:
            if not await tx.orders.add_returned(order.id, line_no, quantity):
                raise InvalidValue(f"line {line_no} cannot take {quantity} more returned unit(s)", field="quantity")
            await tx.stock.put_back(line.sku, location_id, quantity)
            if refund and self.payments is not None and order.payments:
                returned = await tx.orders.get(order.id)
                assert returned is not None
                after = returned.line(line_no).quantity_returned
                share = split_refund(line.total, line.quantity, after - quantity, quantity)
                operations = await self.payments.plan_refund_in(
                    tx, order, share, reason=f"return of {quantity} x {line.sku}", channel=channel, actor=actor
                )
                if operations:
                    await tx.orders.add_refunded(order.id, line_no, quantity)
            await tx.events.record(
                OrderLineReturned(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=channel,
                    actor=actor,
                    customer_id=order.customer_id,
                    order_id=order.id,
                    number=order.number,
                    line_no=line_no,
                    sku=line.sku,
                    quantity=quantity,
                    location_id=location_id,
                )
            )
            updated = await tx.orders.get(order.id)
            assert updated is not None
            if updated.return_state == "full" and await tx.orders.set_status(
                order.id, order.status, OrderStatus.RETURNED, now
            ):
                await tx.events.record(
                    OrderStatusChanged(
                        id=new_id("evt"),
                        occurred_at=now,
                        channel=channel,
                        actor=actor,
                        customer_id=order.customer_id,
                        order_id=order.id,
                        number=order.number,
                        from_status=order.status.value,
                        to_status=OrderStatus.RETURNED.value,
                        note="every unit returned",
                    )
                )
        if self.payments is not None:
            await self.payments.execute_all(operations)
        return await self.get(order_id)
