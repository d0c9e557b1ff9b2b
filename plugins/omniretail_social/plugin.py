"""Social commerce channel plugin (Meta: Facebook and Instagram; TikTok).

* ``render_listing``: per variant, a Meta catalog row and a TikTok catalog row (published,
  hashed, served as feeds).
* Routes under ``/channels/social/``: the Meta and TikTok catalog CSV (the channel key as Bearer
  or ``?token=``); shoppable links (the web shop's checkout URL with UTM parameters) per product
  and post; an attribution report of the orders those links brought; the Meta webhook (public,
  signed with ``X-Hub-Signature-256``) that turns "buy 2 latte" comments and messages into carts,
  and its subscription handshake.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, RegisterChannel
from omniretail.domain.catalog import Product
from omniretail.domain.errors import NotFound
from omniretail.gateway.routes.common import errors
from omniretail.storage.publications import PublicationStore
from omniretail_social import feeds, listing
from omniretail_social.attribution import AttributionReport, attribution_report
from omniretail_social.inbox import Inbox, WebhookAnswer
from omniretail_social.links import shoppable_link, utm
from omniretail_social.settings import Settings
from omniretail_social.webhooks import SIGNATURE_HEADER, decode, verify_signature, verify_subscription

__all__ = ["Settings"]

#: A ``post`` or ``campaign`` value: printable, at most 100 characters.
UtmParam = Annotated[str | None, QueryParameter(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class LinkOut(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    #: The shoppable link: the checkout URL with ``products=SKU:QTY`` and the UTM parameters.
    link: str
    #: The attribution an order placed through the link records.
    utm: dict[str, str]
    #: The product's social caption and hashtags, ready to post with the link.
    caption: str


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="social",
            title="Social commerce",
            description="Meta and TikTok catalog CSV, shoppable links with attribution, signed webhooks",
            settings=Settings,
            # Shoppers browse the catalogs on Facebook, Instagram and TikTok, and a comment or a
            # message makes a cart; checkout, payment and tracking happen on the web shop the
            # shoppable links lead to.
            capabilities=frozenset({Capability.BROWSE, Capability.CART}),
            formats=(
                "Meta catalog CSV",
                "TikTok catalog CSV",
                "checkout URL ?products=SKU:QTY with utm_*",
                "Meta webhooks (X-Hub-Signature-256)",
            ),
        )
    )


@hookimpl
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    return listing.render(channel, product, stock)


def caption_for(product: Product) -> str:
    social = product.channel_content.social
    text = (social.caption if social is not None and social.caption else product.title).strip()
    tags = " ".join(f"#{tag.lstrip('#')}" for tag in social.hashtags) if social is not None else ""
    return f"{text} {tags}".strip()


@hookimpl
def register_routes(register: Any, channel: ChannelContext) -> None:
    kernel = channel.kernel
    settings: Settings = channel.settings
    inbox = Inbox(channel)

    @get(
        "/feeds/meta.csv",
        opt={"token_query": True},
        operation_id="socialMetaCatalogCsv",
        media_type="text/csv",
        responses=errors(),
        summary="Meta (Facebook/Instagram) catalog CSV (full snapshot)",
    )
    async def meta_csv() -> Stream:
        listings = PublicationStore(kernel.db).listings(channel.name)
        return Stream(feeds.meta_csv(listings), media_type="text/csv; charset=utf-8")

    @get(
        "/feeds/tiktok.csv",
        opt={"token_query": True},
        operation_id="socialTikTokCatalogCsv",
        media_type="text/csv",
        responses=errors(),
        summary="TikTok catalog CSV (full snapshot)",
    )
    async def tiktok_csv() -> Stream:
        listings = PublicationStore(kernel.db).listings(channel.name)
        return Stream(feeds.tiktok_csv(listings), media_type="text/csv; charset=utf-8")

    @get(
        "/links/{sku:str}",
        operation_id="socialShoppableLink",
        responses=errors(),
        summary="Shoppable link for a product or a post: the checkout URL with UTM attribution",
    )
    async def link(
        sku: FromPath[str],
        post: UtmParam = None,
        campaign: UtmParam = None,
        quantity: Annotated[int, QueryParameter(ge=1, le=99)] = 1,
    ) -> LinkOut:
        snapshot = await kernel.catalog.snapshot()
        found = snapshot.by_sku.get(sku)
        if found is None or found[1].price_for(kernel.config.store.currency) is None:
            raise NotFound(f"SKU {sku!r} is not for sale", field="sku")
        product, _variant = found
        return LinkOut(
            sku=sku,
            link=shoppable_link(channel, sku, quantity=quantity, campaign=campaign, content=post),
            utm=utm(channel, campaign=campaign, content=post),
            caption=caption_for(product),
        )

    @get(
        "/attribution",
        operation_id="socialAttribution",
        responses=errors(),
        summary="Orders and revenue per utm_campaign and utm_content, for orders with utm_medium=social",
    )
    async def attribution() -> AttributionReport:
        return await attribution_report(kernel)

    @post(
        "/webhooks",
        opt={"public": True},
        status_code=200,
        operation_id="socialMetaWebhook",
        responses=errors(400, 401),
        summary="Meta webhook (X-Hub-Signature-256): buy intents in comments and messages become carts",
    )
    async def webhook(request: Request[Any, Any, Any]) -> WebhookAnswer:
        body = await request.body()
        verify_signature(settings.app_secret, request.headers.get(SIGNATURE_HEADER), body)
        return await inbox.handle(decode(body))

    @get(
        "/webhooks",
        opt={"public": True},
        operation_id="socialMetaWebhookVerify",
        media_type="text/plain",
        responses=errors(400, 403),
        summary="Meta webhook subscription handshake: echoes hub.challenge when hub.verify_token matches",
    )
    async def webhook_handshake(
        mode: Annotated[str | None, QueryParameter(name="hub.mode", max_length=40)] = None,
        token: Annotated[str | None, QueryParameter(name="hub.verify_token", max_length=500)] = None,
        challenge: Annotated[str | None, QueryParameter(name="hub.challenge", max_length=500)] = None,
    ) -> str:
        return verify_subscription(settings.verify_token, mode, token, challenge)

    for handler in (meta_csv, tiktok_csv, link, attribution, webhook, webhook_handshake):
        register(handler)
