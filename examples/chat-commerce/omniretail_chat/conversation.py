"""What the chat channel answers to a verified message.

An ``order`` message becomes an order in one go: the sender's phone number resolves to the one
customer record (``IdentityKind.PHONE``: the same person ordering on the web shop with that phone
is the same customer), a cart is made on the chat channel with the lines, and it is checked out
(picked up at ``pickup_location`` if set, else shipped). The reply carries the order number.

A chat provider delivers a message again when it did not see an answer in time, so an order
message is handled once per message id, through the gateway's idempotency store (the one behind
``Idempotency-Key`` headers), keyed ``chat:<message id>``: a repeat gets the first reply again,
byte for byte, and places nothing. If the process died half-way, the next delivery finds the
order the first one placed (by the ``chat_message_id`` on the cart's attribution) or places it.

Whatever the shopper typed, the answer is a reply (HTTP 200): a message that orders nothing we
sell, or more than there is, gets a reply saying so and changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Literal

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.errors import DomainError
from omniretail.domain.order import Fulfilment, Order
from omniretail.gateway.idempotency import IdempotencyStore
from omniretail.services.orders import CheckoutRequest
from omniretail.storage.publications import PublicationStore
from omniretail_chat import catalog, messages
from omniretail_chat.messages import InboundMessage
from omniretail_chat.settings import Settings

HELP = "Send 'menu' to see what we have, 'order 2 LATTE-REG' to order, 'status' to follow your order."
#: How each order status reads in a message.
STATUS_WORDS = {
    "placed": "has been received",
    "paid": "is paid",
    "ready_for_pickup": "is ready for pickup",
    "shipped": "is on its way",
    "delivered": "was delivered",
    "collected": "was collected",
    "cancelled": "was cancelled",
    "returned": "was returned",
}


class OrderSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    number: str
    status: str
    fulfilment: str
    #: Minor units of ``currency``.
    total: int
    currency: str


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What to send back to the shopper (the provider delivers it as a chat message)."""

    to: str
    #: The id of the message this answers.
    reply_to: str
    type: Literal["text", "interactive"] = "text"
    text: str = ""
    #: A product list message, for ``type = "interactive"``.
    interactive: catalog.ProductList | None = None
    #: The order the message placed (or asked about).
    order: OrderSummary | None = None


def summary(order: Order) -> OrderSummary:
    return OrderSummary(
        id=order.id,
        number=order.number,
        status=order.status.value,
        fulfilment=order.fulfilment.value,
        total=order.total,
        currency=order.currency,
    )


def status_text(number: str, status: str) -> str:
    return f"Your order {number} {STATUS_WORDS.get(status, 'is ' + status)}."


class Conversation:
    def __init__(self, channel: ChannelContext) -> None:
        self.channel = channel
        self.kernel = channel.kernel
        self.settings: Settings = channel.settings
        self.idempotency = IdempotencyStore(channel.kernel.db)
        #: Idempotency keys are kept per owner; this channel's inbound messages are one owner.
        self.owner = f"channel:{channel.name}"

    async def answer(self, message: InboundMessage, body: bytes) -> tuple[bytes, bool]:
        """The reply to a message, encoded, and whether it is a replay of an earlier reply."""
        command = messages.parse(message.text, max_quantity=self.settings.max_quantity)
        if isinstance(command, messages.Order):
            return await self._once(message, command, body)
        if isinstance(command, messages.Menu):
            reply = await self._menu(message)
        elif isinstance(command, messages.Status):
            reply = await self._status(message, command.number)
        else:
            text = f"Sorry, {command.problem}. {HELP}" if command.problem else HELP
            reply = Reply(to=message.sender, reply_to=message.id, text=text)
        return msgspec.json.encode(reply), False

    # -- orders ------------------------------------------------------------------------------------

    async def _once(self, message: InboundMessage, command: messages.Order, body: bytes) -> tuple[bytes, bool]:
        key = f"chat:{message.id}"
        retention = timedelta(hours=self.kernel.config.gateway.idempotency_retention_hours)
        fingerprint = hashlib.sha256(body).hexdigest()
        outcome, stored = await self.idempotency.begin(self.owner, key, fingerprint, self.kernel.clock(), retention)
        if outcome == "replay":
            _status, _headers, content = stored
            return bytes(content), True
        try:
            reply = await self._order(message, command, takeover=outcome == "takeover")
            content = msgspec.json.encode(reply)
        except BaseException:
            await self.idempotency.abandon(self.owner, key)
            raise
        await self.idempotency.complete(self.owner, key, 200, [("content-type", "application/json")], content)
        return content, False

    def _fulfilment(self) -> tuple[Fulfilment, str | None, tuple[str, ...]]:
        pickup = self.settings.pickup_location
        if pickup is not None:
            return Fulfilment.PICKUP, pickup, (pickup,)
        return Fulfilment.SHIP, None, self.channel.locations

    async def _refusal(self, command: messages.Order, sources: tuple[str, ...]) -> str | None:
        """Why the order cannot be placed, checked before anything is written; None if it can."""
        snapshot = await self.kernel.catalog.snapshot()
        currency = self.kernel.config.store.currency
        unknown = [
            sku
            for sku, _ in command.lines
            if sku not in snapshot.by_sku or snapshot.by_sku[sku][1].price_for(currency) is None
        ]
        if unknown:
            return f"we do not sell {', '.join(unknown)}. Send 'menu' to see what we have."
        best = dict.fromkeys((sku for sku, _ in command.lines), 0)
        for level in await self.kernel.inventory.levels(list(best), list(sources)):
            best[level.sku] = max(best[level.sku], level.available)
        short = [f"{sku} (we have {best[sku]})" for sku, quantity in command.lines if best[sku] < quantity]
        if short:
            return f"we do not have enough of {', '.join(short)}."
        return None

    async def _order(self, message: InboundMessage, command: messages.Order, *, takeover: bool) -> Reply:
        fulfilment, pickup, sources = self._fulfilment()
        refusal = await self._refusal(command, sources)
        if refusal is not None:
            return Reply(to=message.sender, reply_to=message.id, text=f"Sorry, {refusal}")
        name = self.channel.name
        phone = Identity(kind=IdentityKind.PHONE, value=message.sender)
        customer = await self.kernel.customers.resolve([phone], channel=name, name=message.name, actor="customer")
        if takeover:  # an earlier delivery died half-way: did it place the order?
            for placed in await self.kernel.orders.for_customer(customer.id, limit=20):
                if placed.attribution.get("chat_message_id") == message.id:
                    return self._placed(message, placed)
        try:
            cart = await self.kernel.carts.create(
                channel=name, customer_id=customer.id, attribution={"chat_message_id": message.id}
            )
            for sku, quantity in command.lines:
                await self.kernel.carts.set_quantity(cart.id, sku, quantity, channel=name)
            order = await self.kernel.orders.checkout(
                CheckoutRequest(
                    cart_id=cart.id,
                    channel=name,
                    fulfilment=fulfilment,
                    pickup_location_id=pickup,
                    phone=message.sender,
                    customer_id=customer.id,
                    locations=sources,
                )
            )
        except DomainError as exc:  # sold out or taken off sale a moment ago
            return Reply(to=message.sender, reply_to=message.id, text=f"Sorry, we could not place it: {exc.message}")
        return self._placed(message, order)

    def _placed(self, message: InboundMessage, order: Order) -> Reply:
        items = ", ".join(f"{line.quantity} x {line.title}" for line in order.lines)
        where = "We will tell you when it is ready for pickup." if order.pickup_location_id else "We will ship it soon."
        text = f"Thank you! Order {order.number}: {items}, {order.total_money.feed_string()}. {where}"
        return Reply(to=message.sender, reply_to=message.id, text=text, order=summary(order))

    # -- menu and status ---------------------------------------------------------------------------

    async def _menu(self, message: InboundMessage) -> Reply:
        items = await catalog.published_items(PublicationStore(self.kernel.db).listings(self.channel.name))
        if not items:
            return Reply(to=message.sender, reply_to=message.id, text="Our menu is not online yet. Try again soon!")
        store = self.kernel.config.store.name
        menu = catalog.product_list(self.settings, items, header=store, body="Tap a product to order it.")
        return Reply(to=message.sender, reply_to=message.id, type="interactive", interactive=menu)

    async def _status(self, message: InboundMessage, number: str | None) -> Reply:
        customer = await self.kernel.customers.find(Identity(kind=IdentityKind.PHONE, value=message.sender))
        order = None
        if customer is not None and number is not None:
            found = await self.kernel.orders.by_number(number)
            order = found if found is not None and found.customer_id == customer.id else None
        elif customer is not None:
            latest = await self.kernel.orders.for_customer(customer.id, limit=1)
            order = latest[0] if latest else None
        if order is None:
            which = f"order {number}" if number else "any order"
            return Reply(to=message.sender, reply_to=message.id, text=f"We cannot find {which} from this number.")
        return Reply(
            to=message.sender,
            reply_to=message.id,
            text=status_text(order.number, order.status.value),
            order=summary(order),
        )
