"""Back office: products and import, stock, order transitions and returns, customers, keys,
outbound webhook subscriptions. Every route needs a key with the ``admin`` scope."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy import insert, select, update

from omniretail.domain.errors import InvalidValue, NotFound
from omniretail.domain.ids import new_id
from omniretail.gateway.present import customer_out, decode_cursor, encode_cursor, order_out, product_out
from omniretail.gateway.routes.common import KernelDep, caller, errors
from omniretail.gateway.routes.customers import int_cursor, timeline_page
from omniretail.gateway.schemas import (
    ApiKeyOut,
    CustomerOut,
    DeliveryStatus,
    EventOut,
    ImportOut,
    KeyCreate,
    MergeBody,
    OrderOut,
    Page,
    ProductOut,
    ReturnBody,
    RevisionOut,
    StockAdjustment,
    StockLevelOut,
    TierBody,
    TransitionBody,
    WebhookCreate,
    WebhookDeliveryOut,
    WebhookOut,
)
from omniretail.gateway.security import ADMIN
from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft
from omniretail.storage import tables as t

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]


def admin_product(kernel: Kernel, product: Any) -> ProductOut:
    return product_out(product, kernel.config.store.currency, None, {}, kernel.config.inventory.low_stock_threshold)


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    opt = ADMIN

    # -- catalog -------------------------------------------------------------------------------

    @post(
        "/products",
        operation_id="adminCreateProduct",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Create a product",
    )
    async def create_product(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[ProductDraft]
    ) -> ProductOut:
        product = await kernel.catalog.create(data, actor=f"staff:{caller(request).key_id}")
        return admin_product(kernel, product)

    @get(
        "/products/{product_id:str}",
        operation_id="adminGetProduct",
        responses=errors(),
        summary="A product in any status",
    )
    async def get_product(self, kernel: KernelDep, product_id: FromPath[str]) -> ProductOut:
        return admin_product(kernel, await kernel.catalog.get(product_id))

    @put(
        "/products/{product_id:str}",
        operation_id="adminUpdateProduct",
        responses=errors(),
        summary="Replace a product's content (a new revision when anything changed)",
    )
    async def update_product(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        product_id: FromPath[str],
        data: JSONBody[ProductDraft],
    ) -> ProductOut:
        product = await kernel.catalog.update(product_id, data, actor=f"staff:{caller(request).key_id}")
        return admin_product(kernel, product)

    @get(
        "/products/{product_id:str}/revisions",
        operation_id="adminListProductRevisions",
        responses=errors(),
        summary="Every revision of a product",
    )
    async def revisions(self, kernel: KernelDep, product_id: FromPath[str]) -> list[RevisionOut]:
        await kernel.catalog.get(product_id)
        return [RevisionOut(r, at, actor) for r, at, actor in await kernel.catalog.revisions(product_id)]

    @post(
        "/products/import",
        operation_id="adminImportProducts",
        status_code=HTTP_200_OK,
        responses=errors(415),
        opt={"idempotency": "optional"},
        summary="Import products: a JSON array of products, or CSV (text/csv), all or nothing",
    )
    async def import_products(self, request: Request[Any, Any, Any], kernel: KernelDep) -> ImportOut:
        from omniretail.gateway.problems import ApiError

        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        actor = f"staff:{caller(request).key_id}"
        if content_type == "application/json":
            result = await kernel.catalog.import_json(body, actor=actor)
        elif content_type == "text/csv":
            try:
                text = body.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InvalidValue("CSV must be UTF-8", field="body") from None
            result = await kernel.catalog.import_csv(text, actor=actor)
            if result.errors:
                raise ApiError(
                    422,
                    "import-rejected",
                    f"{len(result.errors)} row(s) are invalid; nothing imported",
                    field="body",
                ) from None
        else:
            raise ApiError(
                415,
                "unsupported-media-type",
                "send application/json or text/csv",
                field="header.content-type",
            )
        return ImportOut(created=result.created, updated=result.updated, unchanged=result.unchanged, errors=[])

    # -- stock ---------------------------------------------------------------------------------

    @post(
        "/stock/adjustments",
        operation_id="adminAdjustStock",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Receive (+) or write off (-) units at a location",
    )
    async def adjust(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[StockAdjustment]
    ) -> StockLevelOut:
        snapshot = await kernel.catalog.snapshot()
        if data.sku not in snapshot.by_sku:
            async with kernel.uow.read() as tx:
                if await tx.products.sku_owner(data.sku) is None:
                    raise NotFound(f"no SKU {data.sku!r} in the catalog", field="sku")
        level = await kernel.inventory.adjust(
            data.sku,
            data.location_id,
            data.delta,
            reason=data.reason,
            actor=f"staff:{caller(request).key_id}",
        )
        return StockLevelOut(level.sku, level.location_id, level.on_hand, level.reserved, level.available)

    @get(
        "/stock/{sku:str}",
        operation_id="adminGetStock",
        responses=errors(),
        summary="A SKU's stock at every location",
    )
    async def stock(self, kernel: KernelDep, sku: FromPath[str]) -> list[StockLevelOut]:
        return [
            StockLevelOut(lv.sku, lv.location_id, lv.on_hand, lv.reserved, lv.available)
            for lv in await kernel.inventory.levels([sku])
        ]

    # -- orders --------------------------------------------------------------------------------

    @get(
        "/orders",
        operation_id="adminListOrders",
        responses=errors(),
        summary="Orders from every channel, newest first",
    )
    async def orders(
        self,
        kernel: KernelDep,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
        channel: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> Page[OrderOut]:
        found = await kernel.orders.page(after=decode_cursor(cursor), limit=limit + 1, channel=channel, status=status)
        more = len(found) > limit
        found = found[:limit]
        return Page(
            items=[order_out(o) for o in found],
            next_cursor=encode_cursor(found[-1].id) if more and found else None,
        )

    @get("/orders/{order_id:str}", operation_id="adminGetOrder", responses=errors(), summary="Any order")
    async def order(self, kernel: KernelDep, order_id: FromPath[str]) -> OrderOut:
        return order_out(await kernel.orders.get(order_id))

    @post(
        "/orders/{order_id:str}/transitions",
        operation_id="adminTransitionOrder",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Move an order: paid, ready_for_pickup, shipped, delivered, collected, cancelled",
    )
    async def transition(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        order_id: FromPath[str],
        data: JSONBody[TransitionBody],
    ) -> OrderOut:
        principal = caller(request)
        order = await kernel.orders.transition(
            order_id, data.to, channel=principal.channel, actor=f"staff:{principal.key_id}", note=data.note
        )
        return order_out(order)

    @post(
        "/orders/{order_id:str}/returns",
        operation_id="adminReturnOrderLine",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Take back units of a line at any location",
    )
    async def return_line(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        order_id: FromPath[str],
        data: JSONBody[ReturnBody],
    ) -> OrderOut:
        principal = caller(request)
        order = await kernel.orders.return_line(
            order_id,
            data.line_no,
            data.quantity,
            location_id=data.location_id,
            channel=principal.channel,
            actor=f"staff:{principal.key_id}",
            refund=data.refund,
        )
        return order_out(order)

    # -- customers -----------------------------------------------------------------------------

    @get(
        "/customers/{customer_id:str}",
        operation_id="adminGetCustomer",
        responses=errors(),
        summary="A customer",
    )
    async def customer(self, kernel: KernelDep, customer_id: FromPath[str]) -> CustomerOut:
        return customer_out(await kernel.customers.get(customer_id))

    @get(
        "/customers/{customer_id:str}/timeline",
        operation_id="adminGetCustomerTimeline",
        responses=errors(),
        summary="A customer's timeline on every channel",
    )
    async def timeline(
        self,
        kernel: KernelDep,
        customer_id: FromPath[str],
        limit: Limit = 50,
        cursor: FromQuery[str | None] = None,
        type_: Annotated[list[str] | None, QueryParameter(name="type")] = None,
        channel: FromQuery[list[str] | None] = None,
    ) -> Page[EventOut]:
        return await timeline_page(kernel, customer_id, limit, cursor, type_, channel)

    @put(
        "/customers/{customer_id:str}/tier",
        operation_id="adminSetCustomerTier",
        responses=errors(),
        summary="Set or clear a customer's tier (e.g. vip)",
    )
    async def set_tier(self, kernel: KernelDep, customer_id: FromPath[str], data: JSONBody[TierBody]) -> CustomerOut:
        return customer_out(await kernel.customers.set_tier(customer_id, data.tier))

    @post(
        "/customers/merge",
        operation_id="adminMergeCustomers",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Merge two records of one person (source into target)",
    )
    async def merge(self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[MergeBody]) -> CustomerOut:
        principal = caller(request)
        merged = await kernel.customers.merge(
            data.source_id, data.target_id, actor=f"staff:{principal.key_id}", channel=principal.channel
        )
        return customer_out(merged)

    # -- keys ----------------------------------------------------------------------------------

    @post(
        "/keys",
        operation_id="adminCreateKey",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Create an API key (the secret is shown once)",
    )
    async def create_key(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[KeyCreate]
    ) -> ApiKeyOut:
        if data.channel != "admin" and data.channel not in kernel.channels:
            raise InvalidValue(f"no enabled channel {data.channel!r}", field="channel")
        key, secret = await request.app.state.key_store.create(
            data.channel, data.scopes, name=data.name, now=kernel.clock()
        )
        return ApiKeyOut(
            id=key.id,
            prefix=key.prefix,
            channel=key.channel,
            scopes=list(key.scopes),
            name=key.name,
            created_at=key.created_at,
            revoked_at=None,
            secret=secret,
        )

    @get("/keys", operation_id="adminListKeys", responses=errors(), summary="API keys (never their secrets)")
    async def list_keys(self, request: Request[Any, Any, Any]) -> list[ApiKeyOut]:
        return [
            ApiKeyOut(
                id=k.id,
                prefix=k.prefix,
                channel=k.channel,
                scopes=list(k.scopes),
                name=k.name,
                created_at=k.created_at,
                revoked_at=k.revoked_at,
            )
            for k in await request.app.state.key_store.list()
        ]

    @delete(
        "/keys/{key_id:str}",
        operation_id="adminRevokeKey",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(),
        summary="Revoke an API key",
    )
    async def revoke_key(self, request: Request[Any, Any, Any], kernel: KernelDep, key_id: FromPath[str]) -> None:
        if not await request.app.state.key_store.revoke(key_id, kernel.clock()):
            raise NotFound(f"no active key {key_id!r}", field="key_id")

    # -- outbound webhooks ---------------------------------------------------------------------

    @post(
        "/webhooks",
        operation_id="adminCreateWebhook",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Subscribe a URL to events (Standard Webhooks; the secret is shown once)",
    )
    async def create_webhook(self, kernel: KernelDep, data: JSONBody[WebhookCreate]) -> WebhookOut:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        sub_id = new_id("whk")
        now = kernel.clock()
        async with kernel.db.write() as conn:
            await conn.execute(
                insert(t.webhook_subscriptions).values(
                    id=sub_id,
                    url=data.url,
                    event_types=" ".join(data.event_types),
                    secret=secret,
                    active=True,
                    created_at=now,
                )
            )
        return WebhookOut(
            id=sub_id,
            url=data.url,
            event_types=list(data.event_types),
            active=True,
            created_at=now,
            secret=secret,
        )

    @get("/webhooks", operation_id="adminListWebhooks", responses=errors(), summary="Webhook subscriptions")
    async def list_webhooks(self, kernel: KernelDep) -> list[WebhookOut]:
        async with kernel.db.read() as conn:
            rows = await conn.execute(select(t.webhook_subscriptions).order_by(t.webhook_subscriptions.c.created_at))
            return [
                WebhookOut(
                    id=r.id,
                    url=r.url,
                    event_types=r.event_types.split(),
                    active=r.active,
                    created_at=r.created_at,
                )
                for r in rows
            ]

    @delete(
        "/webhooks/{webhook_id:str}",
        operation_id="adminDeleteWebhook",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(),
        summary="Stop a webhook subscription",
    )
    async def delete_webhook(self, kernel: KernelDep, webhook_id: FromPath[str]) -> None:
        async with kernel.db.write() as conn:
            result = await conn.execute(
                update(t.webhook_subscriptions)
                .where(t.webhook_subscriptions.c.id == webhook_id, t.webhook_subscriptions.c.active.is_(True))
                .values(active=False)
            )
        if result.rowcount != 1:
            raise NotFound(f"no active webhook {webhook_id!r}", field="webhook_id")

    @get(
        "/webhooks/{webhook_id:str}/deliveries",
        operation_id="adminListWebhookDeliveries",
        responses=errors(),
        summary="A webhook subscription's delivery log, newest event first",
    )
    async def webhook_deliveries(
        self,
        kernel: KernelDep,
        webhook_id: FromPath[str],
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
        status: FromQuery[DeliveryStatus | None] = None,
    ) -> Page[WebhookDeliveryOut]:
        d, e = t.webhook_deliveries, t.events
        after = int_cursor(cursor)
        query = (
            select(d, e.c.id.label("event_id"), e.c.type.label("event_type"), e.c.occurred_at)
            .join(e, e.c.seq == d.c.event_seq)
            .where(d.c.subscription_id == webhook_id)
            .order_by(d.c.event_seq.desc())
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(d.c.event_seq < after)
        if status is not None:
            query = query.where(d.c.status == status)
        async with kernel.db.read() as conn:
            known = await conn.scalar(
                select(t.webhook_subscriptions.c.id).where(t.webhook_subscriptions.c.id == webhook_id)
            )
            if known is None:
                raise NotFound(f"no webhook {webhook_id!r}", field="webhook_id")
            rows = (await conn.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            items=[
                WebhookDeliveryOut(
                    id=r.id,
                    event_id=r.event_id,
                    event_type=r.event_type,
                    occurred_at=r.occurred_at,
                    status=r.status,
                    attempts=r.attempts,
                    last_status_code=r.last_status_code,
                    last_error=r.last_error,
                    next_attempt_at=r.next_attempt_at if r.status == "pending" else None,
                    delivered_at=r.delivered_at,
                )
                for r in rows
            ],
            next_cursor=encode_cursor(rows[-1].event_seq) if more and rows else None,
        )
