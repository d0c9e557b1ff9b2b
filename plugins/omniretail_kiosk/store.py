"""The kiosk's store: the start-up check, store-scoped stock, and the Google local inventory feed.

Local inventory feed spec: https://support.google.com/merchants/answer/3061342 (``id`` = the product
feed id, ``store_code`` = the Business Profile store code, ``availability`` in the local vocabulary
``in_stock | limited_availability | on_display_to_order | out_of_stock``, ``quantity``), with
``pickup_method`` (https://support.google.com/merchants/answer/14634021) and ``pickup_sla``
(https://support.google.com/merchants/answer/14635400).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import msgspec

from omniretail.channel import ChannelContext
from omniretail.config import ConfigError
from omniretail.domain.inventory import Availability, LocationKind, StockLocation, availability_for

if TYPE_CHECKING:
    from omniretail.kernel import Kernel

#: Extra time before a pickup order with a line from another location is ready. Mirrors the fixed
#: transfer allowance of ``OrderService.checkout`` (the order's ``ready_by`` is the authority).
TRANSFER_DELAY = timedelta(days=2)
#: A store whose preparation time is at most this many minutes offers same-day pickup.
SAME_DAY_MAX_MINUTES = 240
#: A handoff secret shorter than this is refused at start-up.
MIN_SECRET_LENGTH = 16
#: SKUs per stock query when the feed is built (bounded memory, few queries).
FEED_CHUNK = 500

#: Our availability words in Google's local inventory vocabulary.
LOCAL_AVAILABILITY = {
    Availability.IN_STOCK: "in_stock",
    Availability.LOW_STOCK: "limited_availability",
    Availability.OUT_OF_STOCK: "out_of_stock",
    Availability.DISPLAY_ONLY: "on_display_to_order",
    Availability.PREORDER: "out_of_stock",
    Availability.BACKORDER: "out_of_stock",
    Availability.DISCONTINUED: "out_of_stock",
}

#: Columns of the local inventory feed, in order.
FEED_FIELDS = ("id", "store_code", "availability", "quantity", "pickup_method", "pickup_sla")


def check_store(channel: ChannelContext) -> StockLocation:
    """The store this kiosk stands in; ``ConfigError`` naming the key if the settings are wrong."""
    config = channel.kernel.config
    settings = channel.settings
    key = f"channels.{channel.name}.store"
    if settings.store is None:
        raise ConfigError(key, "required: the [[locations]] id of the store this kiosk stands in")
    location = config.location(settings.store)
    if location is None:
        known = ", ".join(loc.id for loc in config.locations) or "none"
        raise ConfigError(key, f"no location {settings.store!r} in [[locations]] (known: {known})")
    if location.kind is not LocationKind.STORE:
        raise ConfigError(key, f"location {location.id!r} is a {location.kind.value}, not a store")
    if not location.pickup:
        raise ConfigError(key, f"store {location.id!r} does not allow pickup (set pickup = true on its [[locations]])")
    if location.id not in channel.locations:
        raise ConfigError(f"channels.{channel.name}.locations", f"must include the kiosk's own store {location.id!r}")
    secret = settings.handoff_secret
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"channels.{channel.name}.handoff_secret", f"must be at least {MIN_SECRET_LENGTH} characters long"
        )
    return location


def pickup_sla(minutes: int) -> str:
    """Google's ``pickup_sla`` for an order ready ``minutes`` after it is placed."""
    if minutes <= SAME_DAY_MAX_MINUTES:
        return "same_day"
    days = math.ceil(minutes / (24 * 60))
    if days <= 1:
        return "next_day"
    if days <= 6:
        return f"{days}-day"
    return "multi-week"


class LocalRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    store_code: str
    availability: str
    quantity: int
    pickup_method: str
    pickup_sla: str | None = None


def local_row(sku: str, store: StockLocation, units: int, low_stock: int) -> LocalRow:
    """One feed row. Pickup is offered (``buy``: ordered and paid online, collected in store)
    where the store allows pickup and has the units; anything else is ``not_supported``."""
    availability = LOCAL_AVAILABILITY[availability_for(units, low_stock)]
    if store.pickup and units > 0:
        method, sla = "buy", pickup_sla(store.preparation_minutes)
    else:
        method, sla = "not_supported", None
    return LocalRow(
        id=sku,
        store_code=store.store_code or "",
        availability=availability,
        quantity=max(units, 0),
        pickup_method=method,
        pickup_sla=sla,
    )


def feed_stores(kernel: Kernel) -> list[StockLocation]:
    """Every store with a Business Profile store code: the feed's ``store_code`` values."""
    return [loc for loc in kernel.config.locations if loc.kind is LocationKind.STORE and loc.store_code]


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


async def local_inventory_tsv(kernel: Kernel) -> AsyncIterator[bytes]:
    """The local inventory feed as TSV: every active SKU at every store with a store code.

    Stock comes live from the database, one query per ``FEED_CHUNK`` SKUs for all stores at once."""
    yield ("\t".join(FEED_FIELDS) + "\n").encode()
    stores = feed_stores(kernel)
    if not stores:
        return
    store_ids = [s.id for s in stores]
    low = kernel.config.inventory.low_stock_threshold
    snapshot = await kernel.catalog.snapshot()
    skus = [v.sku for p in snapshot.products for v in p.variants]
    for start in range(0, len(skus), FEED_CHUNK):
        chunk = skus[start : start + FEED_CHUNK]
        free = {(lv.sku, lv.location_id): lv.available for lv in await kernel.inventory.levels(chunk, store_ids)}
        lines = []
        for sku in chunk:
            for store in stores:
                row = local_row(sku, store, free.get((sku, store.id), 0), low)
                lines.append("\t".join(_cell(getattr(row, name)) for name in FEED_FIELDS))
        yield ("\n".join(lines) + "\n").encode()


class StoreStock(msgspec.Struct, frozen=True, kw_only=True):
    """A SKU's free units seen from the kiosk."""

    #: Free units at the kiosk's store.
    here: int
    #: Free units at the channel's other locations, together.
    elsewhere: int
    #: The most units one order line can get now (a line is taken from a single location).
    orderable: int


async def store_stock(
    kernel: Kernel, skus: Sequence[str], store_id: str, locations: Sequence[str]
) -> dict[str, StoreStock]:
    """Store-scoped stock of ``skus`` in one query over the channel's locations."""
    here = dict.fromkeys(skus, 0)
    elsewhere = dict.fromkeys(skus, 0)
    best = dict.fromkeys(skus, 0)
    for level in await kernel.inventory.levels(list(skus), list(locations)):
        if level.location_id == store_id:
            here[level.sku] += level.available
        else:
            elsewhere[level.sku] += level.available
        best[level.sku] = max(best[level.sku], level.available)
    return {sku: StoreStock(here=here[sku], elsewhere=elsewhere[sku], orderable=best[sku]) for sku in skus}
