"""Which social posts and campaigns sold: orders and revenue per ``utm_campaign`` and
``utm_content`` (the post id), for orders whose attribution says ``utm_medium=social``.

A bounded scan of the most recent orders (``SCAN_LIMIT``), newest first; cancelled orders are
left out. Enough for a dashboard tile; a reporting store would aggregate as orders are placed.
"""

from __future__ import annotations

import msgspec

from omniretail.domain.order import OrderStatus
from omniretail.kernel import Kernel
from omniretail_social.links import MEDIUM

#: Most orders read for one report.
SCAN_LIMIT = 5000
PAGE = 200


class AttributionRow(msgspec.Struct, frozen=True, kw_only=True):
    utm_campaign: str | None
    #: The post (media) id the shopper came from, when the link named one.
    utm_content: str | None
    orders: int
    #: Sum of the orders' totals, in minor units of ``currency``.
    revenue: int
    currency: str


class AttributionReport(msgspec.Struct, frozen=True, kw_only=True):
    rows: list[AttributionRow]
    #: Social orders counted (cancelled ones left out).
    orders: int
    #: Orders read.
    scanned: int
    #: False when the scan stopped at ``SCAN_LIMIT`` before the oldest order.
    complete: bool


async def attribution_report(kernel: Kernel) -> AttributionReport:
    totals: dict[tuple[str | None, str | None, str], list[int]] = {}
    scanned = 0
    counted = 0
    after: str | None = None
    complete = False
    while scanned < SCAN_LIMIT:
        wanted = min(PAGE, SCAN_LIMIT - scanned)
        page = await kernel.orders.page(after=after, limit=wanted)
        scanned += len(page)
        for order in page:
            source = order.attribution
            if source.get("utm_medium") != MEDIUM or order.status == OrderStatus.CANCELLED:
                continue
            counted += 1
            key = (source.get("utm_campaign"), source.get("utm_content"), order.currency)
            entry = totals.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += order.total
        if len(page) < wanted:
            complete = True
            break
        after = page[-1].id
    rows = [
        AttributionRow(utm_campaign=campaign, utm_content=content, orders=n, revenue=revenue, currency=currency)
        for (campaign, content, currency), (n, revenue) in totals.items()
    ]
    rows.sort(key=lambda r: (-r.revenue, -r.orders, r.utm_campaign or "", r.utm_content or ""))
    return AttributionReport(rows=rows, orders=counted, scanned=scanned, complete=complete)
