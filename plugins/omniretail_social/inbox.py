"""What a verified webhook delivery does: a buy intent in a comment or a direct message becomes
a cart for the author, and the answer carries a reply (Meta Send API shape) with the cart link.

For each buy intent naming a product for sale:

1. the delivery is claimed once (``webhooks.Deliveries``); a repeat does nothing;
2. the author's social handle (and Meta's scoped user id) resolves to one customer record
   (``IdentityKind.SOCIAL_HANDLE``, namespace ``instagram`` / ``facebook`` for the handle and
   ``instagram:id`` / ``facebook:id`` for the id), created on first contact;
3. a cart is created on the social channel for that customer, attributed
   ``utm_source=<settings.utm_source>``, ``utm_medium=social``, ``utm_content=<media id>``, with
   the line;
4. the reply links to the web shop's checkout URL for the same line and attribution, so the
   order placed there records the social origin too.

A buy intent that names nothing (or several products) gets a reply and changes nothing. Other
comments and messages are ignored.
"""

from __future__ import annotations

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.errors import DomainError
from omniretail_social import intents
from omniretail_social.intents import CatalogIndex
from omniretail_social.links import checkout_link, utm
from omniretail_social.webhooks import Deliveries, Payload, SocialEvent, events

#: Longest handle taken as an identity (Instagram's limit is 30).
HANDLE_MAX = 100


class ReplyMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    text: str
    #: Where the shopper checks out the cart: the web shop's checkout URL for it.
    cart_link: str | None = None


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A reply to send back: ``{"comment_id"}`` (a private reply to a comment) or ``{"id"}``."""

    recipient: dict[str, str]
    message: ReplyMessage
    #: The cart the intent created (absent when nothing was created).
    cart_id: str | None = None


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True):
    #: Comments and messages from people in the delivery.
    received: int
    #: Buy intents already handled by an earlier delivery: nothing was done again.
    duplicates: int
    replies: list[Reply]


class Outcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a handled delivery did, kept in ``inbound_deliveries.result``."""

    cart_id: str | None = None
    customer_id: str | None = None
    sku: str | None = None
    quantity: int | None = None
    error: str | None = None


class Inbox:
    def __init__(self, channel: ChannelContext) -> None:
        self.channel = channel
        self.kernel = channel.kernel
        self.deliveries = Deliveries(channel.kernel.db, channel.name, channel.kernel.clock)
        self._index: CatalogIndex | None = None

    async def index(self) -> CatalogIndex:
        snapshot = await self.kernel.catalog.snapshot()
        if self._index is None or self._index.revision != snapshot.revision:
            self._index = CatalogIndex(snapshot, self.kernel.config.store.currency)
        return self._index

    async def handle(self, payload: Payload) -> WebhookAnswer:
        found = events(payload)
        replies: list[Reply] = []
        duplicates = 0
        for event in found:
            number = intents.parse_status(event.text)
            if number is not None:
                replies.append(await self._status(event, number))
                continue
            intent = intents.parse(event.text)
            if intent is None:
                continue
            reply = await self._buy(event, intent)
            if reply is None:
                duplicates += 1
            else:
                replies.append(reply)
        return WebhookAnswer(received=len(found), duplicates=duplicates, replies=replies)

    def _identities(self, event: SocialEvent) -> list[Identity]:
        identities = []
        if event.username and len(event.username) <= HANDLE_MAX and event.username.strip("@ "):
            identities.append(Identity(kind=IdentityKind.SOCIAL_HANDLE, value=event.username, namespace=event.platform))
        identities.append(
            Identity(
                kind=IdentityKind.SOCIAL_HANDLE, value=event.user_id[:HANDLE_MAX], namespace=f"{event.platform}:id"
            )
        )
        return identities

    async def _status(self, event: SocialEvent, number: str) -> Reply:
        """Order status, in the channel's idiom: a reply. Only the author's own orders are told;
        nothing is created for a stranger asking."""
        customer = None
        for identity in self._identities(event):
            customer = await self.kernel.customers.find(identity)
            if customer is not None:
                break
        order = await self.kernel.orders.by_number(number) if customer is not None else None
        if order is None or customer is None or order.customer_id != customer.id:
            text = f"Sorry, we could not find order {number} for you."
        else:
            text = f"Your order {order.number} is {order.status.value.replace('_', ' ')}."
        return Reply(recipient=event.recipient, message=ReplyMessage(text=text))

    async def _buy(self, event: SocialEvent, intent: intents.BuyIntent) -> Reply | None:
        """The reply to one buy intent; None for a repeat delivery."""
        if intent.quantity is None:
            return Reply(
                recipient=event.recipient,
                message=ReplyMessage(text=f"We can take 1 to {intents.MAX_QUANTITY} of an item per message."),
            )
        found = (await self.index()).find(intent.query)
        if found.candidates:
            return Reply(
                recipient=event.recipient,
                message=ReplyMessage(text="Which one would you like: " + " or ".join(found.candidates) + "?"),
            )
        if found.product is None or found.variant is None:
            return Reply(
                recipient=event.recipient,
                message=ReplyMessage(text='Sorry, we could not find that product. Try "buy 2 <product name>".'),
            )
        product, variant, quantity = found.product, found.variant, intent.quantity
        if not await self.deliveries.claim(event.delivery_id):
            return None
        attribution = utm(self.channel, content=event.media_id)
        try:
            customer = await self.kernel.customers.resolve(
                self._identities(event), channel=self.channel.name, name=event.username or "", actor="customer"
            )
            cart = await self.kernel.carts.create(
                channel=self.channel.name, customer_id=customer.id, attribution=attribution
            )
            await self.kernel.carts.set_quantity(cart.id, variant.sku, quantity, channel=self.channel.name)
        except DomainError as exc:  # e.g. the product left the catalog a moment ago
            await self.deliveries.finish(event.delivery_id, Outcome(error=exc.message))
            return Reply(
                recipient=event.recipient,
                message=ReplyMessage(text=f"Sorry, we could not add {product.title} to a cart: {exc.message}"),
            )
        except BaseException:
            await self.deliveries.release(event.delivery_id)
            raise
        await self.deliveries.finish(
            event.delivery_id,
            Outcome(cart_id=cart.id, customer_id=customer.id, sku=variant.sku, quantity=quantity),
        )
        title = product.title if not variant.title else f"{product.title} ({variant.title})"
        link = checkout_link(self.channel, {variant.sku: quantity}, attribution)
        return Reply(
            recipient=event.recipient,
            message=ReplyMessage(text=f"{quantity} x {title} is in your cart. Check out here: {link}", cart_link=link),
            cart_id=cart.id,
        )
