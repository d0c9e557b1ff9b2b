"""Catalog reads for storefronts: products, availability, channels. ETag / 304 on reads."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, FromQuery, QueryParameter

from omniretail.domain.errors import NotFound
from omniretail.domain.inventory import availability_for
from omniretail.gateway.present import decode_cursor, encode_cursor, product_out
from omniretail.gateway.routes.common import (
    KernelDep,
    PageCache,
    caller,
    caller_customer,
    channel_locations,
    errors,
    json_with_etag,
)
from omniretail.gateway.schemas import (
    AvailabilityOut,
    ChannelOut,
    ChannelsOut,
    LocationLevelOut,
    Page,
    ProductOut,
)
from omniretail.gateway.security import STOREFRONT
from omniretail.matrix import capability_matrix

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]


def _page_cache(request: Request[Any, Any, Any]) -> PageCache:
    state = request.app.state
    cache = state.get("page_cache")
    if cache is None:
        cache = state["page_cache"] = PageCache()
    return cache


class CatalogController(Controller):
    path = "/v1"
    tags = ["catalog"]
    opt = STOREFRONT

    @get(
        "/products",
        operation_id="listProducts",
        responses=errors(),
        summary="List products with this caller's prices and availability",
        response_description="A page of products",
    )
    async def list_products(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
        brand: FromQuery[str | None] = None,
        category: FromQuery[str | None] = None,
        q: Annotated[str | None, QueryParameter(max_length=100, description="words in the title")] = None,
    ) -> Response[Page[ProductOut]]:
        principal = caller(request)
        customer = await caller_customer(kernel, principal)
        snapshot = await kernel.catalog.snapshot()
        tier = customer.tier if customer else None
        key = (snapshot.revision, kernel.db.generation, principal.channel, tier, limit, cursor, brand, category, q)

        async def build() -> Page[ProductOut]:
            items, more = snapshot.page(
                decode_cursor(cursor),
                limit,
                brand=brand or None,
                category=category or None,
                needle=q.lower() if q else None,
            )
            skus = [v.sku for p in items for v in p.variants]
            available = await kernel.inventory.available(skus, channel_locations(kernel, principal))
            currency = kernel.config.store.currency
            low = kernel.config.inventory.low_stock_threshold
            return Page(
                items=[product_out(p, currency, tier, available, low) for p in items],
                next_cursor=encode_cursor(items[-1].id) if more and items else None,
            )

        encoded = await _page_cache(request).get_or_build(key, build)
        return json_with_etag(request, None, encoded=encoded)  # type: ignore[return-value]

    @get(
        "/products/{product_ref:str}",
        operation_id="getProduct",
        responses=errors(),
        summary="One product by id or handle, with variants, prices and availability",
    )
    async def get_product(
        self, request: Request[Any, Any, Any], kernel: KernelDep, product_ref: FromPath[str]
    ) -> Response[ProductOut]:
        principal = caller(request)
        snapshot = await kernel.catalog.snapshot()
        product = snapshot.by_id.get(product_ref) or snapshot.by_handle.get(product_ref)
        if product is None:
            raise NotFound(f"no product {product_ref!r}", field="product_ref")
        customer = await caller_customer(kernel, principal)
        available = await kernel.inventory.available(
            [v.sku for v in product.variants], channel_locations(kernel, principal)
        )
        out = product_out(
            product,
            kernel.config.store.currency,
            customer.tier if customer else None,
            available,
            kernel.config.inventory.low_stock_threshold,
        )
        return json_with_etag(request, out)  # type: ignore[return-value]

    @get(
        "/availability/{sku:str}",
        operation_id="getAvailability",
        responses=errors(),
        summary="Stock of a SKU per location (live reservations deducted)",
    )
    async def availability(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        sku: FromPath[str],
        location: FromQuery[str | None] = None,
    ) -> AvailabilityOut:
        principal = caller(request)
        snapshot = await kernel.catalog.snapshot()
        if sku not in snapshot.by_sku:
            raise NotFound(f"SKU {sku!r} is not for sale", field="sku")
        locations = channel_locations(kernel, principal)
        if location is not None:
            if location not in locations:
                raise NotFound(f"this channel does not sell from {location!r}", field="query.location")
            locations = (location,)
        levels = {lv.location_id: lv for lv in await kernel.inventory.levels([sku], locations)}
        rows = []
        for loc_id in locations:
            loc = kernel.config.location(loc_id)
            if loc is None:
                continue
            lv = levels.get(loc_id)
            rows.append(
                LocationLevelOut(
                    location_id=loc.id,
                    name=loc.name,
                    kind=loc.kind.value,
                    pickup=loc.pickup,
                    preparation_minutes=loc.preparation_minutes,
                    on_hand=lv.on_hand if lv else 0,
                    reserved=lv.reserved if lv else 0,
                    available=lv.available if lv else 0,
                )
            )
        total = sum(r.available for r in rows)
        return AvailabilityOut(
            sku=sku,
            available=total,
            availability=availability_for(total, kernel.config.inventory.low_stock_threshold).value,
            locations=rows,
        )

    @get(
        "/channels",
        operation_id="listChannels",
        responses=errors(),
        summary="Enabled channels, the journey steps each carries, and the gaps (the capability matrix)",
    )
    async def channels(self, kernel: KernelDep) -> ChannelsOut:
        matrix = capability_matrix(kernel)
        return ChannelsOut(
            channels=[
                ChannelOut(
                    name=ctx.name,
                    title=ctx.spec.title,
                    description=ctx.spec.description,
                    capabilities=sorted(c.value for c in ctx.spec.capabilities),
                    formats=list(ctx.spec.formats),
                    locations=list(ctx.locations),
                )
                for ctx in (kernel.channels[name] for name in sorted(kernel.channels))
            ],
            matrix=matrix,
            maturity=round(matrix.maturity, 3),
        )
