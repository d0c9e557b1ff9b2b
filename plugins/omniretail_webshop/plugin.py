"""Web shop channel plugin.

* ``render_listing``: a Google Merchant item per variant (published, hashed, served as feeds).
* Routes under ``/channels/webshop/``: product pages (public HTML with schema.org JSON-LD and
  Open Graph ``product:*`` tags), the Google Merchant feeds (RSS 2.0 ``g:`` and TSV; the channel
  key as Bearer or ``?token=``), the checkout URL that Meta, Google and the kiosk QR code send
  shoppers to, and a plain cart page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, RegisterChannel
from omniretail.domain.catalog import Product
from omniretail.domain.errors import DomainError
from omniretail.domain.inventory import availability_for
from omniretail_webshop import feeds, listing, pages


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The storefront's cart page the checkout URL redirects to; ``{cart_id}`` is filled in.
    storefront_cart_url: str = "http://127.0.0.1:8000/channels/webshop/cart/{cart_id}"
    #: Public product page URL; ``{sku}``, ``{handle}`` and ``{product_id}`` are filled in.
    product_url: str = "http://127.0.0.1:8000/channels/webshop/products/{sku}"


CHECKOUT_MAX_LINES = 50


def html_error(*codes: int) -> dict[int, ResponseSpec]:
    """The HTML pages a shopper's browser gets for a bad link or a missing page."""
    return {
        c: ResponseSpec(data_container=str, media_type="text/html", description="An HTML error page") for c in codes
    }


_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="webshop",
            title="Web shop",
            description=(
                "product pages with schema.org JSON-LD and Open Graph, "
                "Google Merchant feeds (RSS and TSV), checkout URL"
            ),
            settings=Settings,
            capabilities=frozenset({Capability.BROWSE, Capability.CART, Capability.CHECKOUT, Capability.TRACK}),
            formats=(
                "schema.org Product JSON-LD",
                "Open Graph product",
                "Google Merchant RSS 2.0",
                "Google Merchant TSV",
                "checkout URL ?products=SKU:QTY",
            ),
        )
    )


@hookimpl
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    return listing.render(channel, product, stock)


def parse_products(raw: str) -> dict[str, int]:
    """``SKU:QTY,SKU:QTY`` into {sku: qty}; a ValueError names the bad part."""
    wanted: dict[str, int] = {}
    parts = [p for p in raw.split(",") if p.strip()]
    if not parts:
        raise ValueError("no products given (products=SKU:QTY,SKU:QTY)")
    if len(parts) > CHECKOUT_MAX_LINES:
        raise ValueError(f"at most {CHECKOUT_MAX_LINES} products at once")
    for part in parts:
        sku, sep, qty = part.strip().rpartition(":")
        if not sep:
            sku, qty = qty, "1"
        if not sku:
            raise ValueError(f"{part!r} has no SKU")
        if not qty.isdigit() or not 1 <= int(qty) <= 999:
            raise ValueError(f"quantity {qty!r} for {sku!r} must be a whole number from 1 to 999")
        wanted[sku] = wanted.get(sku, 0) + int(qty)
        if wanted[sku] > 999:
            raise ValueError(f"quantity for {sku!r} must be at most 999")
    return wanted


@hookimpl
def register_routes(register: Any, channel: ChannelContext) -> None:
    kernel = channel.kernel
    settings: Settings = channel.settings
    store = kernel.config.store

    @get(
        "/products/{sku:str}",
        opt={"public": True},
        operation_id="webshopProductPage",
        responses=html_error(404),
        media_type="text/html",
        summary="Product page with schema.org JSON-LD and Open Graph product tags",
    )
    async def product_page(sku: FromPath[str]) -> Response[str]:
        snapshot = await kernel.catalog.snapshot()
        found = snapshot.by_sku.get(sku)
        if found is None:
            return Response(
                pages.message_page("Not found", f"There is no product {sku!r}."),
                status_code=404,
                media_type="text/html",
            )
        product, variant = found
        units = (await kernel.inventory.available([sku], channel.locations))[sku]
        availability = availability_for(units, kernel.config.inventory.low_stock_threshold)
        url = listing.product_url(settings.product_url, product, sku)
        html = pages.product_page(product, variant, variant.price_for(store.currency), availability, url, store.name)
        return Response(html, media_type="text/html", headers={"Cache-Control": "public, max-age=60"})

    @get(
        "/feeds/google.xml",
        opt={"token_query": True},
        operation_id="webshopGoogleFeedXml",
        media_type="application/rss+xml",
        summary="Google Merchant product feed, RSS 2.0 (full snapshot)",
    )
    async def google_xml() -> Stream:
        from omniretail.storage.publications import PublicationStore

        listings = PublicationStore(kernel.db).listings("webshop")
        body = feeds.rss(listings, title=store.name, link=store.base_url)
        return Stream(body, media_type="application/rss+xml; charset=utf-8")

    @get(
        "/feeds/google.tsv",
        opt={"token_query": True},
        operation_id="webshopGoogleFeedTsv",
        media_type="text/tab-separated-values",
        summary="Google Merchant product feed, TSV (full snapshot)",
    )
    async def google_tsv() -> Stream:
        from omniretail.storage.publications import PublicationStore

        listings = PublicationStore(kernel.db).listings("webshop")
        return Stream(feeds.tsv(listings), media_type="text/tab-separated-values; charset=utf-8")

    @get(
        "/checkout",
        opt={"public": True},
        operation_id="webshopCheckoutUrl",
        responses=html_error(400),
        media_type="text/html",
        summary="Checkout URL: build a cart from ?products=SKU:QTY,... and redirect to the storefront cart",
    )
    async def checkout_url(
        request: Request[Any, Any, Any],
        products: FromQuery[str | None] = None,
        coupon: FromQuery[str | None] = None,
    ) -> Response[str] | Redirect:
        if len(products or "") > 2000 or len(coupon or "") > 60:
            return Response(
                pages.message_page("This link does not work", "The link is too long."),
                status_code=400,
                media_type="text/html",
            )
        try:
            wanted = parse_products(products or "")
        except ValueError as exc:
            return Response(
                pages.message_page("This link does not work", str(exc)), status_code=400, media_type="text/html"
            )
        snapshot = await kernel.catalog.snapshot()
        unknown = [
            sku
            for sku in wanted
            if sku not in snapshot.by_sku or snapshot.by_sku[sku][1].price_for(store.currency) is None
        ]
        if unknown:
            return Response(
                pages.message_page("Unknown product", f"We do not sell {', '.join(unknown)}."),
                status_code=400,
                media_type="text/html",
            )
        attribution = {k: str(request.query_params[k])[:200] for k in _UTM if request.query_params.get(k)}
        try:
            cart = await kernel.carts.create(channel="webshop", attribution=attribution)
            for sku, qty in wanted.items():
                await kernel.carts.set_quantity(cart.id, sku, qty, channel="webshop")
            if coupon:
                await kernel.carts.set_coupon(cart.id, coupon, channel="webshop")
        except DomainError as exc:
            return Response(
                pages.message_page("This link does not work", exc.message), status_code=400, media_type="text/html"
            )
        return Redirect(settings.storefront_cart_url.replace("{cart_id}", cart.id), status_code=303)

    @get(
        "/cart/{cart_id:str}",
        opt={"public": True},
        operation_id="webshopCartPage",
        responses=html_error(404),
        media_type="text/html",
        summary="A plain cart page (the default storefront_cart_url)",
    )
    async def cart_page(cart_id: FromPath[str]) -> Response[str]:
        try:
            cart = await kernel.carts.get(cart_id)
        except DomainError:
            return Response(
                pages.message_page("Not found", "This cart does not exist."), status_code=404, media_type="text/html"
            )
        if cart.customer_id is not None:  # a customer's cart is theirs: sign in to see it
            return Response(
                pages.message_page("Not found", "This cart does not exist."), status_code=404, media_type="text/html"
            )
        priced = await kernel.carts.price(cart, None)
        return Response(pages.cart_page(priced, store.name), media_type="text/html")

    for handler in (product_page, google_xml, google_tsv, checkout_url, cart_page):
        register(handler)
