"""Stock locations, stock levels and reservations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

LocationId = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]


class LocationKind(StrEnum):
    WAREHOUSE = "warehouse"
    STORE = "store"


class StockLocation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A warehouse or a store. Stores may allow pickup, with a preparation time."""

    id: LocationId
    name: str
    kind: LocationKind = LocationKind.WAREHOUSE
    pickup: bool = False
    preparation_minutes: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Google Business Profile store code, for local inventory feeds.
    store_code: str | None = None
    address: str = ""


class StockLevel(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a SKU at a location. ``available`` = on hand minus active reservations."""

    sku: str
    location_id: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return max(self.on_hand - self.reserved, 0)


class ReservationStatus(StrEnum):
    ACTIVE = "active"
    RELEASED = "released"
    COMMITTED = "committed"
    EXPIRED = "expired"


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """A hold on stock for a cart or a checkout in progress; ignored once past ``expires_at``."""

    id: str
    sku: str
    location_id: str
    quantity: int
    expires_at: datetime
    status: ReservationStatus = ReservationStatus.ACTIVE
    reference: str = ""

    def is_live(self, now: datetime) -> bool:
        return self.status is ReservationStatus.ACTIVE and self.expires_at > now


class Availability(StrEnum):
    """One availability vocabulary, mapped by each channel plugin to its own words."""

    IN_STOCK = "in_stock"
    LOW_STOCK = "low_stock"
    OUT_OF_STOCK = "out_of_stock"
    PREORDER = "preorder"
    BACKORDER = "backorder"
    DISPLAY_ONLY = "display_only"
    DISCONTINUED = "discontinued"


def availability_for(available: int, low_stock_threshold: int = 3) -> Availability:
    if available <= 0:
        return Availability.OUT_OF_STOCK
    if available <= low_stock_threshold:
        return Availability.LOW_STOCK
    return Availability.IN_STOCK
