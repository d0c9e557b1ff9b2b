"""Inventory per location: levels, availability, adjustments and reservations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from omniretail.domain.errors import InvalidValue, NotFound, OutOfStock
from omniretail.domain.events import StockAdjusted
from omniretail.domain.ids import new_id
from omniretail.domain.inventory import Reservation, StockLevel
from omniretail.services.clock import Clock
from omniretail.services.protocols import UnitOfWork


class InventoryService:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, location_ids: Sequence[str], *, reservation_minutes: int = 15
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.location_ids = tuple(location_ids)
        self.reservation_minutes = reservation_minutes

    def _check_location(self, location_id: str) -> None:
        if location_id not in self.location_ids:
            raise NotFound(f"no stock location {location_id!r}", field="location_id")

    async def levels(self, skus: Sequence[str], location_ids: Sequence[str] | None = None) -> list[StockLevel]:
        """Levels with live reservations only: an expired hold no longer counts."""
        async with self.uow.read() as tx:
            return await tx.stock.levels(skus, location_ids, now=self.clock())

    async def available(self, skus: Sequence[str], location_ids: Sequence[str] | None = None) -> dict[str, int]:
        totals = dict.fromkeys(skus, 0)
        for level in await self.levels(skus, location_ids):
            totals[level.sku] += level.available
        return totals

    async def moved_since(self, location_ids: Sequence[str], mark_us: int, expired_after: datetime) -> set[str]:
        """SKUs whose free units at these locations may have moved since a wall-clock mark
        (microseconds) and since ``expired_after`` for lapsed holds (incremental publishing)."""
        async with self.uow.read() as tx:
            return await tx.stock.moved_since(location_ids, mark_us, expired_after, self.clock())

    async def available_everywhere(self, location_ids: Sequence[str]) -> dict[str, int]:
        """Free units of every stocked SKU at these locations (for feeds and publication)."""
        async with self.uow.read() as tx:
            return await tx.stock.available_by_sku(location_ids, self.clock())

    async def adjust(
        self,
        sku: str,
        location_id: str,
        delta: int,
        *,
        reason: str = "",
        actor: str = "admin",
        channel: str = "admin",
    ) -> StockLevel:
        """Receive (+) or write off (-) units. Refused if it would drop below what is reserved."""
        self._check_location(location_id)
        if delta == 0:
            raise InvalidValue("delta must not be 0", field="delta")
        async with self.uow.write() as tx:
            await tx.stock.sweep_expired(self.clock(), sku, location_id)
            level = await tx.stock.adjust(sku, location_id, delta)
            if level is None:
                raise OutOfStock(sku, -delta, location_id)
            await tx.events.record(
                StockAdjusted(
                    id=new_id("evt"),
                    occurred_at=self.clock(),
                    channel=channel,
                    actor=actor,
                    sku=sku,
                    location_id=location_id,
                    delta=delta,
                    on_hand=level.on_hand,
                    reason=reason,
                )
            )
        return level

    async def set_on_hand(
        self, sku: str, location_id: str, on_hand: int, *, reason: str = "count", actor: str = "admin"
    ) -> StockLevel:
        """Stock count: set on-hand to a counted number (as an adjustment by the difference)."""
        if on_hand < 0:
            raise InvalidValue("on_hand must be >= 0", field="on_hand")
        current = {lv.location_id: lv for lv in await self.levels([sku], [location_id])}
        delta = on_hand - (current[location_id].on_hand if location_id in current else 0)
        if delta == 0:
            return current.get(location_id) or StockLevel(sku=sku, location_id=location_id, on_hand=0, reserved=0)
        return await self.adjust(sku, location_id, delta, reason=reason, actor=actor)

    async def reserve(
        self, sku: str, location_id: str, quantity: int, *, reference: str, minutes: int | None = None
    ) -> Reservation:
        """Hold units until expiry. Raises OutOfStock (changing nothing) if they are not free."""
        self._check_location(location_id)
        if quantity < 1:
            raise InvalidValue("quantity must be >= 1", field="quantity")
        now = self.clock()
        reservation = Reservation(
            id=new_id("res"),
            sku=sku,
            location_id=location_id,
            quantity=quantity,
            expires_at=now + timedelta(minutes=minutes or self.reservation_minutes),
            reference=reference,
        )
        async with self.uow.write() as tx:
            await tx.stock.sweep_expired(now, sku, location_id)
            if not await tx.stock.reserve(reservation):
                raise OutOfStock(sku, quantity, location_id)
        return reservation

    async def release(self, reservation_id: str) -> bool:
        async with self.uow.write() as tx:
            return await tx.stock.release(reservation_id)

    async def commit(self, reservation_id: str) -> bool:
        """Turn a live reservation into a sale; False if it expired or ended already."""
        async with self.uow.write() as tx:
            return await tx.stock.commit_reservation(reservation_id, self.clock())

    async def sweep(self) -> int:
        async with self.uow.write() as tx:
            return await tx.stock.sweep_expired(self.clock())
