"""Marketplace channel plugin (Amazon-shaped), loaded through the ``omniretail`` entry-point group.

* ``render_listing``: an Amazon ``JSON_LISTINGS_FEED`` message per variant (``listing``), served
  as ``GET /channels/marketplace/feeds/listings.json`` with ``DELETE`` messages for withdrawn SKUs.
* ``POST /channels/marketplace/webhooks``: an Orders v0 order, signed with Standard Webhooks or a
  Shopify-style HMAC (``signing``), taken into the order book (``intake``).
* ``register_tasks``: ``marketplace.poll_orders`` polls the Orders API with a cursor (``orders_api``).
* ``order_status_changed``: a marketplace order that ships is confirmed to the marketplace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.response import Stream

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, PeriodicTask, RegisterChannel
from omniretail.config import ConfigError
from omniretail.domain.catalog import Product
from omniretail.domain.events import OrderStatusChanged
from omniretail.gateway.problems import ApiError, field_path
from omniretail.kernel import Kernel
from omniretail_marketplace import amazon, intake, listing, orders_api, signing
from omniretail_marketplace.settings import CHANNEL, Settings

__all__ = ["Settings"]


class WebhookReply(intake.Outcome, frozen=True, kw_only=True, omit_defaults=True):
    """The answer to a webhook delivery: what happened to the order it carried."""

    delivery_id: str
    #: True when this delivery id was processed before: nothing was done again.
    duplicate: bool


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name=CHANNEL,
            title="Marketplace",
            description=(
                "Amazon JSON_LISTINGS_FEED export, signed order webhooks, order polling, shipment confirmation"
            ),
            settings=Settings,
            # Shoppers browse the listings and check out on the marketplace itself; its orders
            # come here and their shipping status goes back. Cart, payment, pickup, returns and
            # handoff happen on the marketplace's side, out of the merchant's reach.
            capabilities=frozenset({Capability.BROWSE, Capability.CHECKOUT, Capability.TRACK}),
            formats=(
                "Amazon JSON_LISTINGS_FEED v2",
                "Amazon Orders v0 (getOrders, getOrderItems, confirmShipment)",
                "Standard Webhooks v1",
                "Shopify-style HMAC webhooks",
            ),
        )
    )


@hookimpl
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    return listing.render(channel, product, stock)


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


def _decode_order(body: bytes) -> amazon.WebhookOrder:
    """The body as an Orders v0 order; a 4xx problem naming the field when it is not one."""
    try:
        return msgspec.json.decode(body, type=amazon.WebhookOrder)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = _AT.search(message)
        path = field_path(at.group("path")) if at else ""
        message = message[: at.start()] if at else message
        missing = _MISSING.fullmatch(message)
        if missing:
            path = f"{path}.{missing.group('name')}" if path else missing.group("name")
            message = "required field is missing"
        field = path or "body"
        raise ApiError(422, "validation", f"{field}: {message}", field=field) from None
    except msgspec.DecodeError:
        raise ApiError(400, "validation", "the body is not valid JSON", field="body") from None


def _verifiers(channel: ChannelContext) -> tuple[Any, list[str]]:
    settings: Settings = channel.settings
    standard = None
    if settings.webhook_secret:
        try:
            standard = signing.standard_webhook(settings.webhook_secret)
        except ValueError as exc:
            raise ConfigError(f"channels.{channel.name}.webhook_secret", str(exc)) from None
    shopify = [str(s) for s in (settings.hmac_secret, settings.hmac_previous_secret) if s]
    return standard, shopify


@hookimpl
def register_routes(register: Callable[[Any], None], channel: ChannelContext) -> None:
    kernel = channel.kernel
    settings: Settings = channel.settings
    standard, shopify = _verifiers(channel)
    deliveries = signing.Deliveries(kernel.db, channel.name)

    @get(
        "/feeds/listings.json",
        opt={"token_query": True},
        operation_id="marketplaceListingsFeed",
        media_type="application/json",
        summary="Amazon JSON_LISTINGS_FEED (v2): UPDATE per published SKU, DELETE per withdrawn SKU",
    )
    async def listings_feed() -> Stream:
        return Stream(listing.feed(kernel, channel.name, settings), media_type="application/json")

    @post(
        "/webhooks",
        opt={"public": True},
        operation_id="marketplaceOrderWebhook",
        status_code=200,
        summary="A signed marketplace order (Amazon Orders v0 Order with OrderItems)",
    )
    async def order_webhook(request: Request[Any, Any, Any]) -> WebhookReply:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        now = kernel.clock()
        try:
            if "webhook-signature" in headers or "webhook-id" in headers:
                if standard is None:
                    raise signing.Refused("Standard Webhooks deliveries are not accepted (no webhook_secret)")
                delivery = "sw:" + signing.verify_standard(standard, body, headers, now)
            elif "x-shopify-hmac-sha256" in headers:
                if not shopify:
                    raise signing.Refused("Shopify-style deliveries are not accepted (no hmac_secret)")
                delivery = "shopify:" + signing.verify_shopify(shopify, body, headers, now)
            else:
                raise signing.Refused(
                    "unsigned: send Standard Webhooks headers (webhook-id, webhook-timestamp, "
                    "webhook-signature) or X-Shopify-Hmac-SHA256"
                )
        except signing.Refused as exc:
            raise ApiError(401, "signature-invalid", str(exc)) from None
        except signing.Malformed as exc:
            raise ApiError(400, "delivery-id-invalid", str(exc), field="header.webhook-id") from None
        delivery_id = delivery.partition(":")[2]
        prior = await deliveries.seen(delivery)
        if prior is not None:
            return _reply(prior, delivery_id, duplicate=True)
        order = _decode_order(body)
        outcome = await intake.sync(kernel, channel.name, order, order.order_items)
        recorded = msgspec.json.encode(outcome).decode()
        await deliveries.record(delivery, kernel.clock(), recorded)
        return _reply(recorded, delivery_id, duplicate=False)

    register(listings_feed)
    register(order_webhook)


def _reply(recorded: str, delivery_id: str, *, duplicate: bool) -> WebhookReply:
    try:
        outcome = msgspec.json.decode(recorded, type=intake.Outcome)
    except msgspec.DecodeError:
        return WebhookReply(result="duplicate", amazon_order_id="", delivery_id=delivery_id, duplicate=duplicate)
    return WebhookReply(**msgspec.structs.asdict(outcome), delivery_id=delivery_id, duplicate=duplicate)


@hookimpl
def register_tasks(register: Callable[[PeriodicTask], None], channel: ChannelContext) -> None:
    settings: Settings = channel.settings
    if settings.orders_api_url is None:
        return

    async def poll_orders(state: dict[str, Any]) -> dict[str, Any]:
        return await orders_api.poll(channel, state)

    register(PeriodicTask(name=f"{channel.name}.poll_orders", every_seconds=settings.poll_seconds, run=poll_orders))


@hookimpl
async def order_status_changed(event: OrderStatusChanged, kernel: Kernel) -> None:
    # Only a shipment made here goes back: one the marketplace reported is already known there.
    if event.to_status != "shipped" or event.actor == intake.actor(CHANNEL):
        return
    channel = kernel.channels.get(CHANNEL)
    if channel is None:
        return
    await orders_api.confirm_shipment(channel, event)
