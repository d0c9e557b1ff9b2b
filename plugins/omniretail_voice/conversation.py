"""The state of a conversation: who speaks, the session attributes, the cart, the catalog's
spoken names, and the customer behind the account-linking token.

The skill keeps nothing in memory between requests: what a conversation needs (the cart id, an
order waiting for a yes, the product just talked about) travels in Alexa's session attributes,
and everything else is in the kernel. A customer is known by the account-linking access token
(an omniretail customer session token); the Alexa account is recorded on the customer
(``voice_account`` identity, namespace ``alexa``) the first time it comes linked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.cart import Cart, CartStatus
from omniretail.domain.catalog import Product, Variant
from omniretail.domain.customer import Customer, Identity, IdentityKind
from omniretail.domain.errors import DomainError, IdentityConflict, NotFound
from omniretail.domain.inventory import StockLocation
from omniretail.services.catalog import CatalogSnapshot
from omniretail.services.pricing import PricedCart
from omniretail_voice import speech
from omniretail_voice.envelope import LINK_ACCOUNT_CARD, Envelope, Intent, Slot, response
from omniretail_voice.model import slot_values
from omniretail_voice.settings import Settings
from omniretail_voice.speech import esc, speak

log = logging.getLogger("omniretail.voice")

#: ``session_customer(token, now)``: the customer a session token belongs to (KeyStore).
SessionLookup = Callable[[str, datetime], Awaitable[str | None]]

_ARTICLES = re.compile(r"^(?:a|an|the|some|one)\s+", re.I)


class Turn:
    """One request being answered: the envelope, who is speaking and the session attributes."""

    def __init__(self, envelope: Envelope, customer: Customer | None, token_sent: bool) -> None:
        self.envelope = envelope
        self.intent: Intent = envelope.request.intent or Intent()
        self.customer = customer
        self.token_sent = token_sent
        self.attrs: dict[str, Any] = envelope.attributes

    def ask(self, text: str, reprompt: str, **extra: Any) -> dict[str, Any]:
        return response(speak(text), end=False, attributes=self.attrs, reprompt=speak(reprompt), **extra)

    def tell(self, text: str, **extra: Any) -> dict[str, Any]:
        return response(speak(text), end=True, attributes=self.attrs, **extra)


class Catalog:
    """The snapshot with voice names: SKU → spoken name, and heard words → SKU."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.snapshot = snapshot
        self.names: dict[str, str] = {}
        self.heard: dict[str, str] = {}
        for product in snapshot.products:
            for value in slot_values(product):
                sku = value["id"]
                self.names[sku] = value["name"]["value"]
                for word in (value["name"]["value"], *value["name"]["synonyms"], sku):
                    self.heard.setdefault(word.lower(), sku)

    def find(self, heard: str) -> str | None:
        text = _ARTICLES.sub("", heard.strip().lower())
        for candidate in (text, text[:-1] if text.endswith("s") else "", text[:-2] if text.endswith("es") else ""):
            if candidate and candidate in self.heard:
                return self.heard[candidate]
        return None

    def item(self, sku: str) -> tuple[Product, Variant] | None:
        return self.snapshot.by_sku.get(sku)


def fingerprint(priced: PricedCart, pickup_id: str) -> str:
    """What the customer said yes to: the lines, the total and where to pick it up."""
    raw = msgspec.json.encode(
        [priced.cart_id, [[x.sku, x.quantity, x.total] for x in priced.lines], priced.total, priced.currency, pickup_id]
    )
    return hashlib.sha256(raw).hexdigest()[:32]


class Conversation:
    """What every intent handler needs: the channel, the catalog, the customer, the cart."""

    def __init__(self, channel: ChannelContext, settings: Settings) -> None:
        self.channel = channel
        self.kernel = channel.kernel
        self.settings = settings
        self.store = self.kernel.config.store
        self.locale = self.store.locale
        self._catalog: Catalog | None = None
        self._linked: set[tuple[str, str]] = set()

    # -- context -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.channel.name

    def pickup(self) -> StockLocation | None:
        """Where voice orders are picked up: the configured store, else the channel's first
        location that offers pickup."""
        by_id = {loc.id: loc for loc in self.kernel.config.locations}
        wanted = [self.settings.pickup_location] if self.settings.pickup_location else list(self.channel.locations)
        for location_id in wanted:
            loc = by_id.get(location_id)
            if loc is not None and loc.pickup:
                return loc
        return None

    async def catalog(self) -> Catalog:
        snapshot = await self.kernel.catalog.snapshot()
        if self._catalog is None or self._catalog.snapshot is not snapshot:
            self._catalog = Catalog(snapshot)
        return self._catalog

    def money(self, amount: int, currency: str | None = None) -> str:
        return esc(speech.money(amount, currency or self.store.currency, self.locale))

    async def identify(self, envelope: Envelope, lookup: SessionLookup) -> tuple[Customer | None, bool]:
        """The linked customer (None for a guest) and whether an access token was sent at all."""
        user = envelope.user
        token = user.access_token if user is not None else None
        if not token:
            return None, False
        customer_id = await lookup(token, self.kernel.clock())
        if customer_id is None:
            return None, True
        try:
            customer = await self.kernel.customers.get(customer_id)
        except NotFound:
            return None, True
        if user is not None and user.user_id:
            await self._remember(customer, user.user_id)
        return customer, True

    async def _remember(self, customer: Customer, user_id: str) -> None:
        """Record the Alexa account on the customer the first time it comes linked."""
        if (user_id, customer.id) in self._linked:
            return
        identity = Identity(kind=IdentityKind.VOICE_ACCOUNT, value=user_id, namespace="alexa")
        owner = await self.kernel.customers.find(identity)
        if owner is None:
            with contextlib.suppress(IdentityConflict):  # linked by a concurrent request meanwhile
                await self.kernel.customers.link(customer.id, identity, channel=self.name)
        elif owner.id != customer.id:
            log.info(
                "Alexa account ...%s is recorded on customer %s but linked to %s; acting for %s (the token's)",
                user_id[-12:],
                owner.id,
                customer.id,
                customer.id,
            )
        if len(self._linked) > 10_000:
            self._linked.clear()
        self._linked.add((user_id, customer.id))

    # -- carts ---------------------------------------------------------------------------------

    async def cart(self, turn: Turn, *, create: bool) -> Cart | None:
        """The conversation's cart: the session's, else the linked customer's open cart (from any
        channel), else a new one if ``create``."""
        customer_id = turn.customer.id if turn.customer else None
        cart_id = turn.attrs.get("cart_id")
        if isinstance(cart_id, str) and cart_id:
            try:
                cart: Cart | None = await self.kernel.carts.get(cart_id)
                if cart is not None and cart.status is CartStatus.OPEN:
                    if cart.customer_id is None and customer_id is not None:
                        cart = await self.kernel.carts.attach_customer(cart.id, customer_id, channel=self.name)
                    if cart.customer_id == customer_id:
                        turn.attrs["cart_id"] = cart.id
                        return cart
            except DomainError:
                pass
        turn.attrs.pop("cart_id", None)
        if customer_id is not None:
            async with self.kernel.uow.read() as tx:
                cart = await tx.carts.open_for_customer(customer_id)
            if cart is not None:
                turn.attrs["cart_id"] = cart.id
                return cart
        if not create:
            return None
        cart = await self.kernel.carts.create(channel=self.name, customer_id=customer_id)
        turn.attrs["cart_id"] = cart.id
        return cart

    async def items(self, priced: PricedCart) -> str:
        catalog = await self.catalog()
        return esc(
            speech.join(
                [speech.count(x.quantity, catalog.names.get(x.sku, x.title), self.locale) for x in priced.lines],
                self.locale,
            )
        )

    async def _short(self, priced: PricedCart, pickup: StockLocation) -> str | None:
        """What the pickup store lacks for this cart, as a sentence; None if it has it all."""
        available = await self.kernel.inventory.available([x.sku for x in priced.lines], [pickup.id])
        catalog = await self.catalog()
        for line in priced.lines:
            have = available.get(line.sku, 0)
            if have < line.quantity:
                name = catalog.names.get(line.sku, line.title)
                left = (
                    f"only {speech.count(have, name, self.locale)}"
                    if have
                    else f"no {speech.plural(name, self.locale)}"
                )
                return f"Sorry, {esc(pickup.name)} has {esc(left)} left right now."
        return None

    def link_account(self, turn: Turn, action: str) -> dict[str, Any]:
        store = esc(self.store.name)
        if turn.token_sent:
            text = f"Your {store} account link has expired. To {action}, link it again in the Alexa app."
        else:
            text = f"To {action}, link your {store} account: I've sent a card to the Alexa app."
        return turn.ask(text + " Anything else meanwhile?", "What would you like?", card=LINK_ACCOUNT_CARD)

    def _price_of(self, product: Product, turn: Turn) -> tuple[int, bool] | None:
        """The lowest price of the product for this customer, and whether variants differ."""
        tier = turn.customer.tier if turn.customer else None
        prices = [p.amount for v in product.variants if (p := v.price_for(self.store.currency, tier)) is not None]
        if not prices:
            return None
        return min(prices), len(set(prices)) > 1

    async def _product(self, slot: Slot | None) -> tuple[str | None, str | None]:
        """(SKU, what was heard): by entity resolution (the slot value id is the SKU), else by
        the words heard, matched against the spoken names and synonyms."""
        if slot is None:
            return None, None
        catalog = await self.catalog()
        resolved = slot.resolved_id()
        if resolved and catalog.item(resolved) is not None:
            return resolved, slot.value
        heard = slot.value.strip() if slot.value and slot.value.strip() != "?" else None
        if heard:
            return catalog.find(heard), heard
        return None, None
