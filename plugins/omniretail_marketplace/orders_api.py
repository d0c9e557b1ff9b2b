"""The Orders API connector: poll orders with a cursor, confirm shipments.

Amazon SP-API Orders v0 (https://developer-docs.amazon.com/sp-api/docs/orders-api-v0-model):

* ``GET /orders/v0/orders?MarketplaceIds=..&LastUpdatedAfter=..`` then ``&NextToken=..`` per page
  (``{"payload": {"Orders": [...], "NextToken": ...}}``);
* ``GET /orders/v0/orders/{id}/orderItems`` (``{"payload": {"OrderItems": [...]}}``);
* ``POST /orders/v0/orders/{id}/shipmentConfirmation`` (``confirmShipment``, 204 on success).

The poll is a periodic task (``marketplace.poll_orders``). Its state keeps the cursor: the latest
``LastUpdateDate`` seen. ``LastUpdatedAfter`` is inclusive and taking an order is idempotent, so an
order on the boundary is simply seen twice. An order that cannot be taken (a SKU not in the
catalog, stock short) holds the cursor at its ``LastUpdateDate``, so it is tried again at every
poll until it goes in; the reason is kept in the state (``failed``) and logged. An HTTP failure
ends the run with the cursor where it was: pages are not sorted by date, so a half-read window is
read again in full.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from omniretail import __version__
from omniretail.channel import ChannelContext
from omniretail.domain.errors import DomainError, NotFound
from omniretail.domain.events import OrderStatusChanged
from omniretail.domain.order import Order
from omniretail.kernel import Kernel
from omniretail_marketplace import amazon, intake
from omniretail_marketplace.settings import Settings
from omniretail_marketplace.signing import Deliveries

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("omniretail.marketplace")

#: Seconds before an Orders API call is abandoned.
TIMEOUT = 15.0
#: A runaway paging loop (a server that never stops handing out tokens) ends here.
MAX_PAGES = 1000

T = TypeVar("T")


class OrdersApiError(Exception):
    """The Orders API answered with an error, or with something that is not its model."""


class PermanentError(OrdersApiError):
    """An error retrying cannot fix (the request itself is refused)."""


def iso(at: datetime) -> str:
    """``2026-01-01T12:00:00Z``: whole seconds, UTC (rounded down, the bound is inclusive)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OrdersApi:
    """A thin async client of the endpoints above."""

    def __init__(self, settings: Settings) -> None:
        assert settings.orders_api_url is not None
        headers = {"user-agent": f"omniretail/{__version__}", "accept": "application/json"}
        if settings.orders_api_token:
            headers["x-amz-access-token"] = str(settings.orders_api_token)
        import httpx  # loaded when the Orders API is first polled, not by every process

        self.settings = settings
        self.client = httpx.AsyncClient(base_url=settings.orders_api_url.rstrip("/"), headers=headers, timeout=TIMEOUT)

    async def __aenter__(self) -> OrdersApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def _get(self, path: str, params: dict[str, str], model: type[T]) -> T:
        import httpx

        try:
            response = await self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise OrdersApiError(f"GET {path}: {exc!r}") from exc
        _raise_for(response, f"GET {path}")
        try:
            return msgspec.json.decode(response.content, type=model)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise OrdersApiError(f"GET {path}: not an Orders v0 answer: {exc}") from exc

    async def orders(self, updated_after: str, next_token: str | None) -> amazon.OrdersPage:
        params = {"MarketplaceIds": self.settings.marketplace_id, "LastUpdatedAfter": updated_after}
        if next_token:
            params["NextToken"] = next_token
        return (await self._get("/orders/v0/orders", params, amazon.GetOrdersResponse)).payload

    async def order_items(self, amazon_order_id: str) -> list[amazon.OrderItem]:
        items: list[amazon.OrderItem] = []
        token: str | None = None
        path = f"/orders/v0/orders/{amazon_order_id}/orderItems"
        for _ in range(MAX_PAGES):
            page = (await self._get(path, {"NextToken": token} if token else {}, amazon.GetOrderItemsResponse)).payload
            items.extend(page.order_items)
            if not page.next_token or page.next_token == token:
                return items
            token = page.next_token
        raise OrdersApiError(f"GET {path}: more than {MAX_PAGES} pages")

    async def confirm_shipment(self, amazon_order_id: str, body: dict[str, Any]) -> None:
        path = f"/orders/v0/orders/{amazon_order_id}/shipmentConfirmation"
        import httpx

        try:
            response = await self.client.post(path, content=msgspec.json.encode(body), headers=_JSON)
        except httpx.HTTPError as exc:
            raise OrdersApiError(f"POST {path}: {exc!r}") from exc
        _raise_for(response, f"POST {path}")


_JSON = {"content-type": "application/json"}


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    detail = f"{what}: HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code in (400, 404, 409, 422):
        raise PermanentError(detail)
    raise OrdersApiError(detail)  # 401/403 (token), 429 (rate), 5xx: may pass on a later try


# -- polling -------------------------------------------------------------------------------------


async def poll(ctx: ChannelContext, state: dict[str, Any]) -> dict[str, Any]:
    """One poll: every order updated since the cursor, all pages. Returns the new state."""
    kernel = ctx.kernel
    settings: Settings = ctx.settings
    cursor = _parse_cursor(state.get("cursor"))
    if cursor is None:
        cursor = kernel.clock() - timedelta(hours=settings.poll_lookback_hours)
    newest = cursor
    held: datetime | None = None
    failed: dict[str, str] = {}
    counts = dict.fromkeys(("seen", "created", "cancelled", "skipped"), 0)
    async with OrdersApi(settings) as api:
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = await api.orders(iso(cursor), token)
            for order in page.orders:
                counts["seen"] += 1
                newest = max(newest, order.last_update_date)
                try:
                    outcome = await _take(kernel, ctx.name, api, order)
                except (DomainError, PermanentError) as exc:
                    reason = exc.message if isinstance(exc, DomainError) else str(exc)
                    failed[order.amazon_order_id] = reason
                    held = min(held or order.last_update_date, order.last_update_date)
                    log.warning("marketplace order %s not taken: %s", order.amazon_order_id, reason)
                    continue
                if outcome.result in counts:
                    counts[outcome.result] += 1
            if not page.next_token:
                break
            if page.next_token == token:
                raise OrdersApiError("getOrders returned the same NextToken twice")
            token = page.next_token
        else:
            raise OrdersApiError(f"getOrders: more than {MAX_PAGES} pages")
    new_cursor = max(held, cursor) if held is not None else newest
    return {"cursor": iso(new_cursor), "failed": failed, "last": counts}


def _parse_cursor(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def _take(kernel: Kernel, channel: str, api: OrdersApi, order: amazon.Order) -> intake.Outcome:
    existing = await intake.find(kernel, channel, order.amazon_order_id)
    items = await api.order_items(order.amazon_order_id) if intake.needs_items(order, existing) else []
    return await intake.sync(kernel, channel, order, items, existing)


# -- status back ---------------------------------------------------------------------------------


class Tracking(msgspec.Struct, frozen=True, kw_only=True):
    carrier_code: str
    number: str
    carrier_name: str | None = None


def tracking(note: str, default_carrier: str) -> Tracking | None:
    """The tracking details in a shipped note: ``"UPS 1Z999AA10123456784"`` (carrier code, tracking
    number), ``"Other 12345 Royal Mail"`` (a carrier without an Amazon code, then its name), or a
    tracking number alone (carrier ``default_carrier``). None when the note is empty."""
    parts = note.split()
    if not parts:
        return None
    if len(parts) == 1:
        return Tracking(carrier_code=default_carrier, number=parts[0])
    return Tracking(carrier_code=parts[0], number=parts[1], carrier_name=" ".join(parts[2:]) or None)


def confirmation(
    settings: Settings, order: Order, event: OrderStatusChanged, items: list[amazon.OrderItem]
) -> dict[str, Any] | None:
    """The ``confirmShipment`` body for a shipped order, or None without a tracking number."""
    found = tracking(event.note, settings.carrier_code)
    if found is None:
        return None
    wanted: dict[str, int] = {}
    for line in order.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    order_items = []
    for item in items:
        sku = item.seller_sku or ""
        quantity = min(wanted.get(sku, 0), item.quantity_ordered)
        if quantity > 0 and item.order_item_id:
            order_items.append({"orderItemId": item.order_item_id, "quantity": quantity})
            wanted[sku] -= quantity
    package: dict[str, Any] = {
        # One package per order: omniretail ships an order at once.
        "packageReferenceId": "1",
        "carrierCode": found.carrier_code,
        "trackingNumber": found.number,
        "shipDate": iso(event.occurred_at),
        "orderItems": order_items,
    }
    if found.carrier_name:
        package["carrierName"] = found.carrier_name
    return {"marketplaceId": settings.marketplace_id, "packageDetail": package}


async def confirm_shipment(ctx: ChannelContext, event: OrderStatusChanged) -> None:
    """Tell the marketplace a marketplace order shipped. Raises on a failure worth retrying (the
    outbox worker delivers the event again, with backoff); logs and gives up on one that is not."""
    kernel = ctx.kernel
    settings: Settings = ctx.settings
    if settings.orders_api_url is None:
        return
    try:
        order = await kernel.orders.get(event.order_id)
    except NotFound:
        return
    if order.channel != ctx.name or not order.external_ref:
        return
    done = Deliveries(kernel.db, f"{ctx.name}:shipment-confirmations")
    if await done.seen(event.id) is not None:  # this event was confirmed already
        return
    try:
        async with OrdersApi(settings) as api:
            items = await api.order_items(order.external_ref)
            body = confirmation(settings, order, event, items)
            if body is None:
                log.error(
                    "order %s (%s) shipped without a tracking number in the note: confirm it on the marketplace",
                    order.number,
                    order.external_ref,
                )
                return
            await api.confirm_shipment(order.external_ref, body)
    except PermanentError as exc:
        log.error("shipment confirmation of %s refused, not retried: %s", order.external_ref, exc)
        await done.record(event.id, kernel.clock(), f"refused: {exc}"[:2000])
        return
    await done.record(event.id, kernel.clock(), "confirmed")
    log.info("confirmed shipment of %s (%s)", order.number, order.external_ref)
