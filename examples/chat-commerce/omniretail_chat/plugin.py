"""Chat commerce channel plugin: shop and order in a chat (WhatsApp Business, Telegram, ...).

Loaded through the ``omniretail`` entry-point group (``pyproject.toml``)::

    [project.entry-points.omniretail]
    chat = "omniretail_chat.plugin"

* ``register_channels``: the ``chat`` channel, its settings Struct and capabilities.
* ``kernel_started``: checks ``pickup_location`` (a ``ConfigError`` naming the key otherwise).
* ``render_listing``: WhatsApp Business catalog items, one per priced variant (``catalog``).
* ``register_routes``, under ``/channels/chat/``:

  - ``GET catalog.json`` (the channel key as Bearer or ``?token=``): the published catalog;
  - ``GET menu`` (the channel key): a product list message, ready to send;
  - ``POST messages`` (public, HMAC-signed by the provider): an inbound chat message; ``order 2
    LATTE-REG`` places an order (``conversation``).

* ``register_tasks``: ``chat.sync_catalog`` pushes the catalog to the provider after a publish
  changed it (when ``catalog_sync_url`` is set).
* ``order_status_changed``: tells the shopper, in the chat, when a chat order moves (when
  ``send_url`` is set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, PeriodicTask, RegisterChannel
from omniretail.config import ConfigError
from omniretail.domain.catalog import Product
from omniretail.domain.customer import IdentityKind, normalize_identity
from omniretail.domain.events import OrderStatusChanged
from omniretail.gateway.routes.common import errors
from omniretail.kernel import Kernel
from omniretail.storage.publications import PublicationStore
from omniretail_chat import catalog
from omniretail_chat.conversation import Conversation, status_text
from omniretail_chat.messages import SIGNATURE_HEADER, decode, verify_signature
from omniretail_chat.outbound import Sender
from omniretail_chat.settings import CHANNEL, Settings

__all__ = ["Settings"]


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name=CHANNEL,
            title="Chat commerce",
            description="WhatsApp Business catalog and product lists, orders taken in chat messages",
            settings=Settings,
            # Shoppers browse the product list in the chat, order with a message (the cart is
            # made and checked out in one go) and ask for their order's status the same way.
            capabilities=frozenset({Capability.BROWSE, Capability.CHECKOUT, Capability.TRACK}),
            formats=(
                "WhatsApp Business catalog items (JSON)",
                "WhatsApp product list message",
                "chat messages signed with X-Chat-Signature (HMAC-SHA256)",
            ),
        )
    )


@hookimpl
def kernel_started(kernel: Kernel) -> None:
    channel = kernel.channels.get(CHANNEL)
    if channel is None:
        return
    settings: Settings = channel.settings
    if settings.pickup_location is not None:
        location = kernel.config.location(settings.pickup_location)
        if location is None or not location.pickup:
            raise ConfigError(
                f"channels.{CHANNEL}.pickup_location",
                f"{settings.pickup_location!r} is not a [[locations]] id with pickup = true",
            )


@hookimpl
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    return catalog.render(channel, product, stock)


@hookimpl
def register_routes(register: Callable[[Any], None], channel: ChannelContext) -> None:
    kernel = channel.kernel
    settings: Settings = channel.settings
    conversation = Conversation(channel)

    async def published() -> list[catalog.CatalogItem]:
        return await catalog.published_items(PublicationStore(kernel.db).listings(channel.name))

    @get(
        "/catalog.json",
        opt={"token_query": True},
        operation_id="chatCatalog",
        responses=errors(),
        summary="The published catalog as WhatsApp Business catalog items",
    )
    async def catalog_feed() -> catalog.Catalog:
        return catalog.feed(settings, await published())

    @get(
        "/menu",
        operation_id="chatMenu",
        responses=errors(),
        summary="A product list message of the items in stock, one section per category",
    )
    async def menu(
        category: Annotated[str | None, QueryParameter(max_length=60, description="only this category")] = None,
    ) -> catalog.ProductList:
        items = [i for i in await published() if category is None or i.category.casefold() == category.casefold()]
        return catalog.product_list(settings, items, header=kernel.config.store.name, body="Tap a product to order it.")

    @post(
        "/messages",
        opt={"public": True},
        status_code=200,
        operation_id="chatInboundMessage",
        responses=errors(400, 401, 409),
        summary="An inbound chat message (signed with X-Chat-Signature); answers with the reply to send",
    )
    async def inbound(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await request.body()
        verify_signature(settings.webhook_secret, request.headers.get(SIGNATURE_HEADER), body)
        message = decode(body)
        normalize_identity(IdentityKind.PHONE, message.sender)  # a bad number: 422 before anything
        content, replayed = await conversation.answer(message, body)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(content, media_type="application/json", headers=headers)

    for handler in (catalog_feed, menu, inbound):
        register(handler)


@hookimpl
def register_tasks(register: Callable[[PeriodicTask], None], channel: ChannelContext) -> None:
    settings: Settings = channel.settings
    url = settings.catalog_sync_url
    if url is None:
        return
    store = PublicationStore(channel.kernel.db)

    async def sync_catalog(state: dict[str, Any]) -> dict[str, Any]:
        """Push the catalog when the publication history moved since the last push."""
        seen = after = int(state.get("after", 0))
        while page := await store.history(channel=channel.name, after=after, limit=1000):
            after = page[-1].seq
        if after == seen:
            return state
        items = await catalog.published_items(store.listings(channel.name))
        await Sender(settings.webhook_secret).post(url, catalog.feed(settings, items), key=f"chat-catalog-{after}")
        return {"after": after, "items": len(items)}

    register(
        PeriodicTask(name=f"{channel.name}.sync_catalog", every_seconds=settings.sync_minutes * 60, run=sync_catalog)
    )


@hookimpl
async def order_status_changed(event: OrderStatusChanged, kernel: Kernel) -> None:
    channel = kernel.channels.get(CHANNEL)
    if channel is None or channel.settings.send_url is None:
        return
    order = await kernel.orders.get(event.order_id)
    if order.channel != CHANNEL or not order.phone:
        return
    message = {"to": order.phone, "type": "text", "text": status_text(order.number, event.to_status)}
    # The outbox may deliver this event again: the event id lets the provider drop a repeat.
    await Sender(channel.settings.webhook_secret).post(channel.settings.send_url, message, key=event.id)
