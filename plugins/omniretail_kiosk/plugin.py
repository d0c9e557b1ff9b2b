"""In-store kiosk channel plugin.

* Start-up check: ``store`` names a ``[[locations]]`` store that allows pickup (``ConfigError``
  naming ``channels.kiosk.store`` otherwise), checked when the gateway's routes are built, when a
  worker's tasks are registered and at ``kernel_started``, whichever comes first.
* ``render_listing``: the kiosk's listing per variant (published and recorded like any channel's).
* Routes under ``/channels/kiosk/``: store-scoped catalog, the Google local inventory feed, click
  and collect and endless-aisle orders, staff ready/collected actions, loyalty-card identification
  and the QR handoff of a cart to the shopper's phone (see ``routes.py``).
* Task ``kiosk.release_uncollected``: cancels pickup orders left uncollected, returning their stock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, PeriodicTask, RegisterChannel
from omniretail.config import Secret
from omniretail.domain.catalog import Product
from omniretail.domain.errors import Conflict, InvalidValue
from omniretail.domain.inventory import availability_for
from omniretail.domain.order import OrderStatus
from omniretail_kiosk.store import LOCAL_AVAILABILITY, check_store

if TYPE_CHECKING:
    from omniretail.kernel import Kernel

CHANNEL = "kiosk"
#: How often the uncollected-order sweep runs, in seconds.
RELEASE_EVERY_SECONDS = 300.0
_PAGE = 200


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The store location this kiosk stands in (a [[locations]] id).
    store: str | None = None
    #: Hours after which an uncollected pickup order is cancelled and its stock released.
    release_uncollected_after_hours: Annotated[int, msgspec.Meta(ge=1)] = 72
    #: Signs the short-lived cart handoff codes (HMAC-SHA256), as env:NAME; at least 16 characters.
    handoff_secret: Secret | None = None
    #: Minutes a signed handoff code stays valid.
    handoff_minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 15
    #: Page a handed-off cart continues on, ``{cart_id}`` filled in (default: the web shop's cart page).
    continue_url: str | None = None


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name=CHANNEL,
            title="In-store kiosk",
            description=(
                "store-scoped availability, Google local inventory feed, click and collect, endless aisle, QR handoff"
            ),
            settings=Settings,
            capabilities=frozenset(
                {
                    Capability.BROWSE,
                    Capability.CART,
                    Capability.CHECKOUT,
                    Capability.PICKUP,
                    Capability.TRACK,
                    Capability.HANDOFF,
                    Capability.RETURN,
                    Capability.PAY,
                }
            ),
            formats=(
                "Google local inventory feed (TSV)",
                "QR code (SVG, PNG)",
                "checkout URL ?products=SKU:QTY",
            ),
        )
    )


def _ours(kernel: Kernel) -> list[ChannelContext]:
    return [ctx for ctx in kernel.channels.values() if isinstance(ctx.settings, Settings)]


@hookimpl
def kernel_started(kernel: Kernel) -> None:
    for ctx in _ours(kernel):
        check_store(ctx)


class KioskListing(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    sku: str
    title: str
    #: ``"4.50 EUR"``.
    price: str
    #: Free units at the kiosk channel's locations (this store and the endless aisle).
    available: int
    #: Google local vocabulary: in_stock, limited_availability or out_of_stock.
    availability: str
    gtin: str | None = None


@hookimpl
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    """One row per priced variant. ``stock`` covers every location the kiosk sells from; the
    live per-store view is ``GET /channels/kiosk/catalog`` and the local inventory feed."""
    currency = channel.kernel.config.store.currency
    low = channel.kernel.config.inventory.low_stock_threshold
    rows = []
    for variant in product.variants:
        price = variant.price_for(currency)
        if price is None:
            continue
        units = max(stock.get(variant.sku, 0), 0)
        rows.append(
            KioskListing(
                sku=variant.sku,
                title=product.title if not variant.title else f"{product.title} - {variant.title}",
                price=price.feed_string(),
                available=units,
                availability=LOCAL_AVAILABILITY[availability_for(units, low)],
                gtin=variant.gtin,
            )
        )
    if not rows:
        raise InvalidValue(f"no variant of {product.handle!r} has a price in {currency}", field="prices")
    return rows


@hookimpl
def register_routes(register: Callable[[Any], None], channel: ChannelContext) -> None:
    from omniretail_kiosk.routes import build

    for handler in build(channel, check_store(channel)):
        register(handler)


async def release_uncollected(channel: ChannelContext) -> int:
    """Cancel pickup orders at this kiosk's store that have been ready for pickup longer than
    ``release_uncollected_after_hours`` (measured from the ready transition: an order's
    ``updated_at`` is the time of its last status change). Cancelling returns their stock."""
    kernel = channel.kernel
    store = check_store(channel)
    hours = channel.settings.release_uncollected_after_hours
    cutoff = kernel.clock() - timedelta(hours=hours)
    stale = []
    after = None
    while True:
        page = await kernel.orders.page(after=after, limit=_PAGE, status=OrderStatus.READY_FOR_PICKUP.value)
        stale += [o for o in page if o.pickup_location_id == store.id and o.updated_at <= cutoff]
        if len(page) < _PAGE:
            break
        after = page[-1].id
    released = 0
    for order in stale:
        try:
            await kernel.orders.transition(
                order.id,
                OrderStatus.CANCELLED,
                channel=channel.name,
                actor=f"system:{channel.name}",
                note=f"not collected within {hours} hours of being ready",
            )
        except Conflict:  # collected, cancelled or being changed meanwhile: not ours to cancel now
            continue
        released += 1
    return released


@hookimpl
def register_tasks(register: Callable[[PeriodicTask], None], channel: ChannelContext) -> None:
    check_store(channel)

    async def run(state: dict[str, Any]) -> dict[str, Any]:
        released = await release_uncollected(channel)
        return {"released_last_run": released, "released_total": int(state.get("released_total", 0)) + released}

    register(PeriodicTask(name=f"{channel.name}.release_uncollected", every_seconds=RELEASE_EVERY_SECONDS, run=run))
