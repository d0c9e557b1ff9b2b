"""The intents: one Alexa request in, one Alexa response out.

Browsing and filling a cart work for guests; reorder, checkout and order status need a linked
account (a ``LinkAccount`` card otherwise). Checkout reads the order back (items, total, pickup
store and time) and places it only after a yes: ``AMAZON.YesIntent``, or the ``CheckoutIntent``
coming back ``CONFIRMED`` from the dialog model, and only if the cart is still what was read back.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from omniretail.domain.cart import Cart
from omniretail.domain.errors import CartClosed, DomainError, OutOfStock
from omniretail.domain.inventory import StockLocation
from omniretail.domain.order import Fulfilment, Order, OrderStatus
from omniretail.services.orders import CheckoutRequest
from omniretail_voice import speech
from omniretail_voice.conversation import Conversation, Turn, fingerprint
from omniretail_voice.envelope import empty_response, simple_card
from omniretail_voice.model import spoken_name
from omniretail_voice.speech import esc

log = logging.getLogger("omniretail.voice")

MAX_QUANTITY = 99
_STOPWORDS = frozenset(
    ["a", "an", "the", "some", "any", "for", "of", "do", "you", "have", "i", "i'm", "im", "looking", "me", "please"]
)

_STATUS_WORDS = {
    OrderStatus.PLACED: "has been placed",
    OrderStatus.PAID: "is paid",
    OrderStatus.READY_FOR_PICKUP: "is ready for pickup",
    OrderStatus.SHIPPED: "has shipped",
    OrderStatus.DELIVERED: "has been delivered",
    OrderStatus.COLLECTED: "was collected",
    OrderStatus.CANCELLED: "was cancelled",
    OrderStatus.RETURNED: "was returned",
}


class VoiceSkill(Conversation):
    """The skill: dispatches each request to its intent handler."""

    # -- dispatch ------------------------------------------------------------------------------

    async def handle(self, turn: Turn) -> dict[str, Any]:
        kind = turn.envelope.request.type
        if kind == "LaunchRequest":
            return await self.launch(turn)
        if kind == "SessionEndedRequest":
            return empty_response()
        if kind != "IntentRequest":
            return empty_response()
        handler = {
            "SearchProductIntent": self.search,
            "ProductInfoIntent": self.product_info,
            "AddToCartIntent": self.add_to_cart,
            "ReorderIntent": self.reorder,
            "CheckoutIntent": self.checkout,
            "OrderStatusIntent": self.order_status,
            "AMAZON.YesIntent": self.yes,
            "AMAZON.NoIntent": self.no,
            "AMAZON.HelpIntent": self.help,
            "AMAZON.NavigateHomeIntent": self.help,
            "AMAZON.CancelIntent": self.stop,
            "AMAZON.StopIntent": self.stop,
        }.get(turn.intent.name, self.fallback)
        return await handler(turn)

    HELP = (
        "You can ask what we have, ask the price of something, add something to your cart, "
        "reorder your last order, check out, or ask where your order is."
    )

    async def launch(self, turn: Turn) -> dict[str, Any]:
        text = f"Welcome to {esc(self.store.name)}. "
        cart = await self.cart(turn, create=False)
        if cart is not None and cart.lines:
            priced = await self.kernel.carts.price(cart, turn.customer)
            text += f"Your cart has {await self.items(priced)}. "
        return turn.ask(text + self.HELP + " What would you like?", "What would you like?")

    async def help(self, turn: Turn) -> dict[str, Any]:
        return turn.ask(self.HELP + " What would you like?", "What would you like?")

    async def fallback(self, turn: Turn) -> dict[str, Any]:
        return turn.ask("Sorry, I didn't get that. " + self.HELP, "What would you like?")

    async def stop(self, turn: Turn) -> dict[str, Any]:
        turn.attrs.pop("pending", None)
        turn.attrs.pop("offer", None)
        return turn.tell("Goodbye!")

    # -- browsing ------------------------------------------------------------------------------

    async def search(self, turn: Turn) -> dict[str, Any]:
        catalog = await self.catalog()
        products = [p for p in catalog.snapshot.products if self._price_of(p, turn) is not None]
        query = turn.intent.value("query")
        if not query:
            names = [spoken_name(p) for p in products]
            if not names:
                return turn.tell("Sorry, there is nothing for sale right now.")
            shown = names[:6] + (["more"] if len(names) > 6 else [])
            return turn.ask(
                f"We have {esc(speech.join(shown, self.locale))}. What would you like?", "What would you like?"
            )
        wanted = {w.rstrip("s") for w in re.findall(r"[\w']+", query.lower()) if w not in _STOPWORDS}
        scored = []
        for index, product in enumerate(products):
            voice = product.channel_content.voice
            text = " ".join(
                [
                    spoken_name(product),
                    product.title,
                    product.category or "",
                    *(voice.synonyms if voice else ()),
                    *(v.title for v in product.variants),
                ]
            ).lower()
            words = {w.rstrip("s") for w in re.findall(r"[\w']+", text)}
            score = len(wanted & words)
            if score:
                scored.append((-score, index, product))
        if not scored:
            return turn.ask(
                f"Sorry, I couldn't find {esc(query)}. Ask me what we have, or try another name.",
                "What would you like?",
            )
        found = [p for _, _, p in sorted(scored, key=lambda x: (x[0], x[1]))[:3]]
        parts = []
        for product in found:
            price = self._price_of(product, turn)
            assert price is not None
            amount, varies = price
            parts.append(f"{esc(spoken_name(product))} {'from' if varies else 'for'} {self.money(amount)}")
        if len(found) == 1:
            turn.attrs["last_sku"] = found[0].variants[0].sku
        joined = speech.join(parts, self.locale)  # already escaped parts; join adds only words
        return turn.ask(f"I found {joined}. What would you like?", "What would you like?")

    async def product_info(self, turn: Turn) -> dict[str, Any]:
        sku, heard = await self._product(turn.intent.slot("product"))
        if sku is None:
            if heard:
                return turn.ask(f"Sorry, we don't have {esc(heard)}. What else?", "What would you like?")
            return turn.ask("Which product would you like to know about?", "Which product?")
        catalog = await self.catalog()
        found = catalog.item(sku)
        assert found is not None
        product, variant = found
        name = esc(catalog.names[sku])
        tier = turn.customer.tier if turn.customer else None
        price = variant.price_for(self.store.currency, tier)
        if price is None:
            return turn.ask(f"Sorry, {name} isn't for sale right now. What else?", "What would you like?")
        listed = variant.price_for(self.store.currency)
        text = f"A {name} is {self.money(price.amount)}"
        if listed is not None and listed.amount > price.amount:
            text += f" for you, instead of {self.money(listed.amount)}"
        text += ". "
        voice = product.channel_content.voice
        if voice is not None and voice.description:
            text += esc(voice.description) + " "
        pickup = self.pickup()
        if pickup is not None:
            have = (await self.kernel.inventory.available([sku], [pickup.id])).get(sku, 0)
            where = esc(pickup.name)
            if have <= 0:
                turn.attrs.pop("offer", None)
                return turn.ask(text + f"It's sold out at {where} right now. What else?", "What would you like?")
            text += f"It's available at {where}. "
        turn.attrs["last_sku"] = sku
        turn.attrs["offer"] = sku
        return turn.ask(text + "Shall I add one to your cart?", "Shall I add one to your cart?")

    # -- cart ----------------------------------------------------------------------------------

    async def add_to_cart(self, turn: Turn) -> dict[str, Any]:
        slot = turn.intent.slot("product")
        sku, heard = await self._product(slot)
        said_nothing = slot is None or slot.value is None or not slot.value.strip()
        if sku is None and said_nothing and isinstance(turn.attrs.get("last_sku"), str):
            sku = turn.attrs["last_sku"]  # "add two", "add it": the product just talked about
        if sku is None:
            if heard:
                return turn.ask(f"Sorry, we don't have {esc(heard)}. What else?", "What would you like?")
            return turn.ask("What would you like to add?", "What would you like to add?")
        raw = turn.intent.value("quantity")
        if raw is None:
            quantity = 1
        elif raw.isdigit() and 1 <= int(raw) <= MAX_QUANTITY:
            quantity = int(raw)
        else:
            return turn.ask(
                f"You can add 1 to {MAX_QUANTITY} at a time. How many would you like?", "How many would you like?"
            )
        return await self._add(turn, sku, quantity)

    async def _add(self, turn: Turn, sku: str, quantity: int) -> dict[str, Any]:
        turn.attrs.pop("offer", None)
        turn.attrs.pop("pending", None)
        catalog = await self.catalog()
        name = catalog.names.get(sku, sku)
        cart = await self.cart(turn, create=True)
        assert cart is not None
        pickup = self.pickup()
        if pickup is not None:
            have = (await self.kernel.inventory.available([sku], [pickup.id])).get(sku, 0)
            if have < cart.quantity_of(sku) + quantity:
                left = (
                    f"only {speech.count(have, name, self.locale)}"
                    if have
                    else f"no {speech.plural(name, self.locale)}"
                )
                return turn.ask(
                    f"Sorry, {esc(pickup.name)} has {esc(left)} left right now. What else?", "What would you like?"
                )
        try:
            cart = await self.kernel.carts.set_quantity(cart.id, sku, quantity, channel=self.name, add=True)
        except DomainError as exc:
            log.info("voice add to cart refused: %s", exc)
            return turn.ask(f"Sorry, I can't add {esc(name)} right now. What else?", "What would you like?")
        priced = await self.kernel.carts.price(cart, turn.customer)
        turn.attrs["last_sku"] = sku
        added = esc(speech.count(quantity, name, self.locale))
        return turn.ask(
            f"Added {added}. Your cart comes to {self.money(priced.total, priced.currency)}. "
            "Anything else? Say check out when you're ready.",
            "Anything else? Say check out when you're ready.",
        )

    async def reorder(self, turn: Turn) -> dict[str, Any]:
        if turn.customer is None:
            return self.link_account(turn, "reorder")
        last = await self.kernel.orders.for_customer(turn.customer.id, limit=1)
        if not last:
            return turn.ask("You haven't ordered yet. What would you like?", "What would you like?")
        cart = await self.cart(turn, create=True)
        assert cart is not None
        catalog = await self.catalog()
        skipped = []
        for line in last[0].lines:
            try:
                cart = await self.kernel.carts.set_quantity(
                    cart.id, line.sku, line.quantity, channel=self.name, add=True
                )
            except DomainError:
                skipped.append(catalog.names.get(line.sku, line.title))
        note = "I've added your last order. "
        if skipped:
            note += f"{esc(speech.join(skipped, self.locale))} can't be ordered any more. "
        return await self.confirm(turn, cart, prefix=note)

    # -- checkout ------------------------------------------------------------------------------

    async def checkout(self, turn: Turn) -> dict[str, Any]:
        if turn.customer is None:
            return self.link_account(turn, "place an order")
        status = turn.intent.confirmation_status
        if status == "DENIED":
            return self._declined(turn)
        cart = await self.cart(turn, create=False)
        if status == "CONFIRMED" and isinstance(turn.attrs.get("pending"), dict):
            return await self.yes(turn)
        return await self.confirm(turn, cart, directive=True)

    async def confirm(
        self, turn: Turn, cart: Cart | None, *, prefix: str = "", directive: bool = False
    ) -> dict[str, Any]:
        """Read the order back and ask for a yes; nothing is placed before it."""
        turn.attrs.pop("pending", None)
        turn.attrs.pop("offer", None)
        pickup = self.pickup()
        if pickup is None:
            return turn.tell(f"{prefix}Sorry, ordering by voice isn't available at the moment.")
        if cart is None or not cart.lines:
            return turn.ask(f"{prefix}Your cart is empty. What would you like to order?", "What would you like?")
        priced = await self.kernel.carts.price(cart, turn.customer)
        if priced.unavailable:
            for sku in priced.unavailable:
                cart = await self.kernel.carts.set_quantity(cart.id, sku, 0, channel=self.name)
            prefix += "Some items can't be ordered any more, so I removed them. "
            if not cart.lines:
                return turn.ask(f"{prefix}Your cart is empty. What would you like?", "What would you like?")
            priced = await self.kernel.carts.price(cart, turn.customer)
        short = await self._short(priced, pickup)
        if short is not None:
            return turn.ask(f"{prefix}{short} What would you like to change?", "What would you like?")
        turn.attrs["pending"] = {"cart_id": cart.id, "fingerprint": fingerprint(priced, pickup.id)}
        question = (
            f"{prefix}Your order is {await self.items(priced)} for {self.money(priced.total, priced.currency)} "
            f"to pick up at {esc(pickup.name)} {speech.minutes(pickup.preparation_minutes)}. Shall I place it?"
        )
        directives = None
        if directive:
            directives = [
                {
                    "type": "Dialog.ConfirmIntent",
                    "updatedIntent": {"name": "CheckoutIntent", "confirmationStatus": "NONE", "slots": {}},
                }
            ]
        return turn.ask(question, "Shall I place your order?", directives=directives)

    def _declined(self, turn: Turn) -> dict[str, Any]:
        turn.attrs.pop("pending", None)
        return turn.ask("Okay, I haven't placed your order. Your cart is saved. Anything else?", "Anything else?")

    async def yes(self, turn: Turn) -> dict[str, Any]:
        pending = turn.attrs.get("pending")
        if isinstance(pending, dict):
            if turn.customer is None:
                return self.link_account(turn, "place an order")
            cart_id = pending.get("cart_id")
            done = await self.kernel.orders.by_cart(cart_id) if isinstance(cart_id, str) else None
            if done is not None and done.customer_id == turn.customer.id:
                return self._placed(turn, done)  # the same yes, delivered again: already placed
            cart = await self.cart(turn, create=False)
            pickup = self.pickup()
            if cart is None or cart.id != pending.get("cart_id") or pickup is None or not cart.lines:
                return await self.confirm(turn, cart, prefix="Your cart changed. ")
            priced = await self.kernel.carts.price(cart, turn.customer)
            if fingerprint(priced, pickup.id) != pending.get("fingerprint"):
                return await self.confirm(turn, cart, prefix="Your order changed. ")
            return await self.place(turn, cart, pickup)
        offer = turn.attrs.get("offer")
        if isinstance(offer, str) and (await self.catalog()).item(offer) is not None:
            return await self._add(turn, offer, 1)
        return turn.ask("Sorry, I'm not sure what you're agreeing to. " + self.HELP, "What would you like?")

    async def no(self, turn: Turn) -> dict[str, Any]:
        if isinstance(turn.attrs.get("pending"), dict):
            return self._declined(turn)
        if turn.attrs.pop("offer", None) is not None:
            return turn.ask("Okay. Anything else?", "Anything else?")
        return turn.tell("Okay. Goodbye!")

    async def place(self, turn: Turn, cart: Cart, pickup: StockLocation) -> dict[str, Any]:
        assert turn.customer is not None
        turn.attrs.pop("pending", None)
        request = CheckoutRequest(
            cart_id=cart.id,
            channel=self.name,
            customer_id=turn.customer.id,
            fulfilment=Fulfilment.PICKUP,
            pickup_location_id=pickup.id,
        )
        try:
            await self.kernel.carts.touch(cart.id, channel=self.name)
            order = await self.kernel.orders.checkout(request)
        except OutOfStock as exc:
            catalog = await self.catalog()
            name = speech.plural(catalog.names.get(exc.sku, exc.sku), self.locale)
            return turn.ask(
                f"Sorry, {esc(pickup.name)} just ran out of {esc(name)}. What would you like to change?",
                "What would you like?",
            )
        except CartClosed:
            existing = await self.kernel.orders.by_cart(cart.id)
            if existing is None or existing.customer_id != turn.customer.id:
                turn.attrs.pop("cart_id", None)
                return turn.ask("That cart was already checked out. What would you like?", "What would you like?")
            order = existing  # the same yes, delivered twice: the order is placed
        except DomainError as exc:
            log.info("voice checkout refused: %s", exc)
            return turn.ask("Sorry, I couldn't place your order. What would you like to change?", "Anything else?")
        return self._placed(turn, order)

    def _ready(self, order: Order) -> tuple[str, str]:
        """(store name, "in 10 minutes") for a pickup order."""
        where = next((x for x in self.kernel.config.locations if x.id == order.pickup_location_id), None)
        name = where.name if where is not None else "the store"
        if order.ready_by is None:
            return name, "soon"
        return name, speech.minutes(-int((self.kernel.clock() - order.ready_by).total_seconds() // 60))

    def _placed(self, turn: Turn, order: Order) -> dict[str, Any]:
        turn.attrs.pop("cart_id", None)
        turn.attrs.pop("pending", None)
        store, when = self._ready(order)
        text = (
            f"Done! Your order number is {speech.order_number(order.number)}. "
            f"Pick it up at {esc(store)} {when}, and pay when you collect it."
        )
        lines = [f"{x.quantity} x {x.title}: {speech.money(x.total, order.currency, self.locale)}" for x in order.lines]
        lines.append(f"Total: {speech.money(order.total, order.currency, self.locale)}")
        lines.append(f"Pick up at {store} {when}.")
        return turn.tell(text, card=simple_card(f"Order {order.number}", "\n".join(lines)))

    # -- tracking ------------------------------------------------------------------------------

    async def order_status(self, turn: Turn) -> dict[str, Any]:
        if turn.customer is None:
            return self.link_account(turn, "check your orders")
        heard = turn.intent.value("orderNumber")
        order: Order | None
        if heard:
            number = speech.heard_order_number(heard)
            order = await self.kernel.orders.by_number(number) if number else None
            if order is None or order.customer_id != turn.customer.id:
                return turn.ask("Sorry, I can't find that order. Anything else?", "Anything else?")
        else:
            latest = await self.kernel.orders.for_customer(turn.customer.id, limit=1)
            if not latest:
                return turn.ask("You have no orders yet. What would you like?", "What would you like?")
            order = latest[0]
        text = f"Your order {speech.order_number(order.number)} {_STATUS_WORDS.get(order.status, order.status.value)}"
        if order.fulfilment is Fulfilment.PICKUP and order.pickup_location_id:
            store, when = self._ready(order)
            if order.status is OrderStatus.READY_FOR_PICKUP:
                text += f" at {esc(store)}"
            elif order.status in (OrderStatus.PLACED, OrderStatus.PAID) and order.ready_by is not None:
                text += (
                    f". It should be ready at {esc(store)} now"
                    if when == "now"
                    else f". It will be ready at {esc(store)} {when}"
                )
        return turn.ask(text + ". Anything else?", "Anything else?")
