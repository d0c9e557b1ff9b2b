"""Bring one marketplace order into the order book: the webhook and the poller share this.

* ``Unshipped``, ``PartiallyShipped``, ``Shipped`` and ``InvoiceUnconfirmed`` orders are taken
  (``OrderService.ingest``, idempotent on the Amazon order id): the buyer resolves to one customer
  and the units are committed from the channel's locations. Amazon has taken the payment, so the
  order moves on to ``paid``; an order Amazon reports as shipped moves on to ``shipped`` too
  (by ``channel:marketplace``, so no shipment confirmation is sent back for it).
* ``Pending`` and ``PendingAvailability`` orders are skipped (no reliable prices, payment not
  confirmed): they come back once Amazon moves them on.
* ``Canceled``: an order taken earlier and not yet shipped is cancelled here too (its units go back
  to stock); one never taken is skipped.
* Orders fulfilled by Amazon (``FulfillmentChannel: AFN``) are skipped: they are not sold from the
  merchant's stock.
"""

from __future__ import annotations

import logging
import re

import msgspec

from omniretail.domain.errors import Conflict, NotFound, OutOfStock
from omniretail.domain.order import UNFULFILLED, Order, OrderStatus
from omniretail.kernel import Kernel
from omniretail_marketplace import amazon

log = logging.getLogger("omniretail.marketplace")


class Outcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What happened to one marketplace order."""

    #: ``created``, ``exists``, ``cancelled`` or ``skipped``.
    result: str
    amazon_order_id: str
    order_id: str | None = None
    number: str | None = None
    status: str | None = None
    reason: str | None = None


def actor(channel: str) -> str:
    return f"channel:{channel}"


async def find(kernel: Kernel, channel: str, amazon_order_id: str) -> Order | None:
    async with kernel.uow.read() as tx:
        return await tx.orders.get_by_external_ref(channel, amazon_order_id)


async def _advance(kernel: Kernel, channel: str, order: Order, target: OrderStatus, note: str) -> Order:
    """Move ``order`` to ``target`` unless it is there or past it; a concurrent move wins."""
    try:
        return await kernel.orders.transition(order.id, target, channel=channel, actor=actor(channel), note=note)
    except Conflict:  # someone (the other intake path, staff) moved it first
        return await kernel.orders.get(order.id)


async def catch_up(kernel: Kernel, channel: str, order: Order, status: str) -> Order:
    """Bring a taken order's status in line with the marketplace's."""
    if order.status is OrderStatus.PLACED:
        order = await _advance(kernel, channel, order, OrderStatus.PAID, "paid on the marketplace")
    if status in amazon.SHIPPED and order.status is OrderStatus.PAID:
        order = await _advance(kernel, channel, order, OrderStatus.SHIPPED, "shipped on the marketplace")
    return order


def needs_items(order: amazon.Order, existing: Order | None) -> bool:
    """Whether taking this order needs its items (only a new order to take does)."""
    return existing is None and order.order_status in amazon.TAKEN and order.fulfillment_channel != "AFN"


async def sync(
    kernel: Kernel, channel: str, order: amazon.Order, items: list[amazon.OrderItem], existing: Order | None = None
) -> Outcome:
    """Apply one marketplace order. Raises a ``DomainError`` (unknown SKU, out of stock, a bad
    amount) with nothing changed when it cannot be taken."""
    ref = order.amazon_order_id
    status = order.order_status
    if existing is None:
        existing = await find(kernel, channel, ref)
    if status == "Canceled":
        if existing is None:
            return Outcome(result="skipped", amazon_order_id=ref, reason=amazon.NOT_YET["Canceled"])
        if existing.status in UNFULFILLED:
            cancelled = await _advance(kernel, channel, existing, OrderStatus.CANCELLED, "cancelled on the marketplace")
            return _outcome("cancelled", ref, cancelled)
        if existing.status is OrderStatus.CANCELLED:
            return _outcome("cancelled", ref, existing)
        return _outcome("exists", ref, existing, reason=f"cancelled on the marketplace, but {existing.status.value}")
    if status not in amazon.TAKEN:
        return Outcome(result="skipped", amazon_order_id=ref, reason=f"status {status}: {amazon.NOT_YET[status]}")
    if order.fulfillment_channel == "AFN" and existing is None:
        return Outcome(
            result="skipped", amazon_order_id=ref, reason="fulfilled by Amazon (AFN): not sold from our stock"
        )
    created = False
    if existing is None:
        existing, created = await _ingest(kernel, channel, order, items)
        if created:
            log.info("took marketplace order %s as %s", ref, existing.number)
    taken = await catch_up(kernel, channel, existing, status)
    return _outcome("created" if created else "exists", ref, taken)


async def _ingest(
    kernel: Kernel, channel: str, order: amazon.Order, items: list[amazon.OrderItem]
) -> tuple[Order, bool]:
    """``OrderService.ingest``, with errors naming the marketplace's field (``OrderItems[1]``)."""
    external = amazon.external_order(channel, order, items)

    def item_field(sku: str) -> str:
        index = next((i for i, item in enumerate(items) if item.seller_sku == sku), None)
        return "OrderItems.SellerSKU" if index is None else f"OrderItems[{index}].SellerSKU"

    try:
        return await kernel.orders.ingest(external, actor=actor(channel))
    except OutOfStock as exc:
        exc.field = item_field(exc.sku)
        raise
    except NotFound as exc:
        m = _LINE.fullmatch(exc.field or "")
        if m is None or int(m.group(1)) >= len(external.lines):
            raise
        sku = external.lines[int(m.group(1))].sku
        raise amazon.UnknownSku(f"SKU {sku!r} is not in the catalog", field=item_field(sku)) from None


_LINE = re.compile(r"lines\[(\d+)\]\.sku")


def _outcome(result: str, ref: str, order: Order, *, reason: str | None = None) -> Outcome:
    return Outcome(
        result=result,
        amazon_order_id=ref,
        order_id=order.id,
        number=order.number,
        status=order.status.value,
        reason=reason,
    )
