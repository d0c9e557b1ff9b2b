"""Decisions: sales and orders per channel, journeys that crossed channels, handoff conversion.

Read straight from the order book and the event log; the chart is a small self-contained SVG.
"""

from __future__ import annotations

from collections import Counter
from html import escape

import msgspec
from sqlalchemy import func, select

from omniretail.domain.events import decode_event
from omniretail.domain.money import Money
from omniretail.kernel import Kernel
from omniretail.storage import tables as t


class ChannelSales(msgspec.Struct, frozen=True):
    channel: str
    currency: str
    orders: int
    revenue: int
    units_returned: int


class Journey(msgspec.Struct, frozen=True):
    started_on: str
    finished_on: str
    orders: int


class Handoffs(msgspec.Struct, frozen=True):
    created: int
    claimed: int
    #: Claimed handoffs whose cart became an order.
    converted: int

    @property
    def conversion(self) -> float:
        return self.converted / self.created if self.created else 0.0


class Report(msgspec.Struct, frozen=True):
    sales: list[ChannelSales]
    journeys: list[Journey]
    #: Orders whose cart passed through more than one channel.
    cross_channel_orders: int
    orders: int
    handoffs: Handoffs


async def build_report(kernel: Kernel) -> Report:
    o, ev, h = t.orders, t.events, t.cart_handoffs
    async with kernel.db.read() as conn:
        rows = (
            await conn.execute(
                select(o.c.channel, o.c.currency, func.count(), func.coalesce(func.sum(o.c.total), 0))
                .where(o.c.status != "cancelled")
                .group_by(o.c.channel, o.c.currency)
                .order_by(o.c.channel)
            )
        ).all()
        returned: Counter[str] = Counter()
        for payload, typ in await conn.execute(
            select(ev.c.payload, ev.c.type).where(ev.c.type == "order.line_returned")
        ):
            event = decode_event(payload, typ)
            returned[event.channel] += int(getattr(event, "quantity", 0))
        journeys: Counter[tuple[str, str]] = Counter()
        crossed = placed = 0
        for payload, typ in await conn.execute(select(ev.c.payload, ev.c.type).where(ev.c.type == "order.placed")):
            event = decode_event(payload, typ)
            path = tuple(getattr(event, "journey", ()) or (event.channel,))
            placed += 1
            if len(set(path) | {event.channel}) > 1:
                crossed += 1
                journeys[(path[0], event.channel)] += 1
        created = int(await conn.scalar(select(func.count()).select_from(h)) or 0)
        claimed = int(await conn.scalar(select(func.count()).select_from(h).where(h.c.claimed_at.is_not(None))) or 0)
        converted = int(
            await conn.scalar(
                select(func.count(func.distinct(h.c.cart_id)))
                .select_from(h.join(o, o.c.cart_id == h.c.cart_id))
                .where(h.c.claimed_at.is_not(None))
            )
            or 0
        )
    sales = [
        ChannelSales(channel=c, currency=cur, orders=int(n), revenue=int(total), units_returned=returned[c])
        for c, cur, n, total in rows
    ]
    for channel, units in returned.items():
        if not any(s.channel == channel for s in sales):
            sales.append(
                ChannelSales(
                    channel=channel, currency=kernel.config.store.currency, orders=0, revenue=0, units_returned=units
                )
            )
    return Report(
        sales=sorted(sales, key=lambda s: (s.channel, s.currency)),
        journeys=[Journey(a, b, n) for (a, b), n in journeys.most_common()],
        cross_channel_orders=crossed,
        orders=placed,
        handoffs=Handoffs(created=created, claimed=claimed, converted=converted),
    )


def chart_svg(report: Report, *, title: str = "Revenue and orders per channel") -> str:
    """A bar chart of revenue per channel (one currency: the largest), orders on each bar."""
    if not report.sales:
        bars: list[ChannelSales] = []
    else:
        currency = Counter({s.currency: s.revenue for s in report.sales}).most_common(1)[0][0]
        bars = [s for s in report.sales if s.currency == currency]
    width, bar_h, gap, left, top = 640, 28, 12, 130, 48
    height = top + len(bars) * (bar_h + gap) + 30
    peak = max((s.revenue for s in bars), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        "<style>text{font-family:sans-serif;font-size:13px;fill:#222}.t{font-size:16px;font-weight:bold}</style>",
        f'<text class="t" x="16" y="28">{escape(title)}</text>',
    ]
    for i, s in enumerate(bars):
        y = top + i * (bar_h + gap)
        w = max(2, int((width - left - 150) * s.revenue / peak))
        label = f"{Money(amount=s.revenue, currency=s.currency).feed_string()} · {s.orders} order(s)"
        parts += [
            f'<text x="16" y="{y + bar_h * 0.7:.0f}">{escape(s.channel)}</text>',
            f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="#3b7dd8" rx="3"/>',
            f'<text x="{left + w + 8}" y="{y + bar_h * 0.7:.0f}">{escape(label)}</text>',
        ]
    if not bars:
        parts.append(f'<text x="16" y="{top + 16}">no orders yet</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
