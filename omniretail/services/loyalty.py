"""The loyalty wallet: stored value and points per customer, usable on every channel.

The balance moves only through ``WalletRepository.change``, one conditional UPDATE that refuses
to go below zero, together with an append-only ledger row whose ``reference`` is unique: the same
write asked twice (a retried payment, a redelivered event) changes nothing the second time and
returns the first entry. Points are earned once per order (reference ``earn:<order id>``), and
the lifetime spend they count sets the customer's tier.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from omniretail.domain.errors import InvalidValue
from omniretail.domain.events import PointsEarned, TierChanged, WalletCredited, WalletDebited
from omniretail.domain.ids import new_id
from omniretail.domain.money import minor_exponent
from omniretail.domain.order import Order
from omniretail.domain.payment import DuplicateReference, InsufficientFunds, LedgerEntry, LedgerKind, Wallet
from omniretail.services.clock import Clock
from omniretail.services.protocols import Transaction, UnitOfWork

#: Largest single wallet movement (minor units): a typo guard, not a business limit.
MAX_AMOUNT = 100_000_000


class TierRule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    min_spend: int


class LoyaltyService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        *,
        currency: str,
        points_per_unit: int = 0,
        tiers: Sequence[TierRule] = (),
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.currency = currency
        self.points_per_unit = points_per_unit
        self.tiers = tuple(sorted(tiers, key=lambda x: x.min_spend))

    # -- reads ---------------------------------------------------------------------------------

    async def wallet(self, customer_id: str) -> Wallet:
        async with self.uow.read() as tx:
            found = await tx.wallets.get(customer_id)
        return found or Wallet(customer_id=customer_id, currency=self.currency)

    async def ledger(self, customer_id: str, *, before: int | None = None, limit: int = 20) -> list[LedgerEntry]:
        """Newest first."""
        async with self.uow.read() as tx:
            return await tx.wallets.ledger(customer_id, before=before, limit=limit)

    async def entry(self, reference: str) -> LedgerEntry | None:
        async with self.uow.read() as tx:
            return await tx.wallets.entry(reference)

    # -- money -----------------------------------------------------------------------------------

    async def credit(
        self,
        customer_id: str,
        amount: int,
        *,
        kind: LedgerKind,
        reference: str,
        channel: str,
        actor: str,
        note: str = "",
        order_id: str | None = None,
    ) -> LedgerEntry:
        """Add stored value (top-up, refund, positive adjustment). Idempotent on ``reference``."""
        if not 0 < amount <= MAX_AMOUNT:
            raise InvalidValue(f"amount must be 1..{MAX_AMOUNT} minor units", field="amount")
        return await self._write(
            customer_id, kind, amount, 0, 0, reference, channel=channel, actor=actor, note=note, order_id=order_id
        )

    async def debit(
        self,
        customer_id: str,
        amount: int,
        *,
        kind: LedgerKind = LedgerKind.PAY,
        reference: str,
        channel: str,
        actor: str,
        note: str = "",
        order_id: str | None = None,
    ) -> LedgerEntry:
        """Take stored value; ``InsufficientFunds`` (changing nothing) if the balance is short.
        Idempotent on ``reference``: a repeat returns the first entry and debits nothing."""
        if not 0 < amount <= MAX_AMOUNT:
            raise InvalidValue(f"amount must be 1..{MAX_AMOUNT} minor units", field="amount")
        return await self._write(
            customer_id, kind, -amount, 0, 0, reference, channel=channel, actor=actor, note=note, order_id=order_id
        )

    async def earn_for_order(self, order: Order, *, channel: str = "system") -> LedgerEntry | None:
        """Points (and tier spend) for an order, once: a repeat changes nothing. None when the
        order has no customer, is in another currency, or the programme is off."""
        return await self.earn(
            order.customer_id,
            order_id=order.id,
            number=order.number,
            total=order.total,
            currency=order.currency,
            channel=channel,
        )

    async def earn(
        self,
        customer_id: str | None,
        *,
        order_id: str,
        number: str,
        total: int,
        currency: str,
        channel: str = "system",
    ) -> LedgerEntry | None:
        """:meth:`earn_for_order` from the order's figures alone (an ``order.placed`` event
        carries them all), without loading the order."""
        if customer_id is None or currency != self.currency:
            return None
        if self.points_per_unit == 0 and not self.tiers:
            return None
        points = total // 10 ** minor_exponent(currency) * self.points_per_unit
        return await self._write(
            customer_id,
            LedgerKind.EARN,
            0,
            points,
            total,
            f"earn:{order_id}",
            channel=channel,
            actor="system",
            note=f"order {number}",
            order_id=order_id,
        )

    async def _write(
        self,
        customer_id: str,
        kind: LedgerKind,
        amount: int,
        points: int,
        spend: int,
        reference: str,
        *,
        channel: str,
        actor: str,
        note: str,
        order_id: str | None,
    ) -> LedgerEntry:
        if not reference or len(reference) > 255:
            raise InvalidValue("a ledger reference is 1..255 characters", field="reference")
        now = self.clock()
        try:
            credit = amount >= 0 and points >= 0
            async with self.uow.write() as tx:
                # A repeated debit must answer with its first entry even if the balance no longer
                # covers it, so it looks first. A repeated credit is caught by the ledger's unique
                # reference below, which rolls the whole change back (the common case saves a read).
                if not credit and (existing := await tx.wallets.entry(reference)) is not None:
                    return existing
                standing = await tx.customers.standing(customer_id)
                if standing is not None and standing[0]:
                    customer_id = standing[0]
                    standing = await tx.customers.standing(customer_id)
                after: tuple[int, int, int] | None
                if credit:
                    after = await tx.wallets.credit(
                        customer_id, self.currency, amount=amount, points=points, spend=spend, now=now
                    )
                else:
                    await tx.wallets.ensure(customer_id, self.currency, now)
                    after = await tx.wallets.change(customer_id, amount=amount, points=points, spend=spend, now=now)
                if after is None:
                    raise InsufficientFunds(
                        f"the wallet balance does not cover {-amount} (minor units)", field="amount"
                    )
                balance, total_points, lifetime_spend = after
                entry = LedgerEntry(
                    seq=0,
                    customer_id=customer_id,
                    kind=kind,
                    amount=amount,
                    points=points,
                    balance_after=balance,
                    points_after=total_points,
                    reference=reference,
                    order_id=order_id,
                    channel=channel,
                    actor=actor,
                    note=note,
                    created_at=now,
                )
                # A concurrent write with the same reference loses here and rolls back its change.
                entry = msgspec.structs.replace(entry, seq=await tx.wallets.append(entry))
                await self._record(tx, entry)
                if spend and standing is not None:
                    await self._retier(tx, customer_id, standing[1], lifetime_spend, channel=channel)
                return entry
        except DuplicateReference:
            async with self.uow.read() as tx:
                first = await tx.wallets.entry(reference)
            assert first is not None
            return first

    async def _record(self, tx: Transaction, entry: LedgerEntry) -> None:
        now = entry.created_at
        if entry.amount > 0:
            await tx.events.record(
                WalletCredited(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=entry.channel,
                    actor=entry.actor,
                    customer_id=entry.customer_id,
                    kind=entry.kind.value,
                    amount=entry.amount,
                    balance=entry.balance_after,
                    currency=self.currency,
                    reference=entry.reference,
                    order_id=entry.order_id,
                )
            )
        elif entry.amount < 0:
            await tx.events.record(
                WalletDebited(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=entry.channel,
                    actor=entry.actor,
                    customer_id=entry.customer_id,
                    kind=entry.kind.value,
                    amount=-entry.amount,
                    balance=entry.balance_after,
                    currency=self.currency,
                    reference=entry.reference,
                    order_id=entry.order_id,
                )
            )
        if entry.kind is LedgerKind.EARN and entry.order_id is not None:
            await tx.events.record(
                PointsEarned(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=entry.channel,
                    actor=entry.actor,
                    customer_id=entry.customer_id,
                    order_id=entry.order_id,
                    points=entry.points,
                    total_points=entry.points_after,
                )
            )

    def tier_for(self, lifetime_spend: int) -> str | None:
        reached = [tier.name for tier in self.tiers if tier.min_spend <= lifetime_spend]
        return reached[-1] if reached else None

    async def _retier(
        self, tx: Transaction, customer_id: str, current: str | None, lifetime_spend: int, *, channel: str
    ) -> None:
        """Move the customer up from ``current`` to the tier their spend reached. A tier staff set
        by hand that is not a programme tier is left alone; a programme tier is never lowered here."""
        target = self.tier_for(lifetime_spend)
        if target is None or current == target:
            return
        names = [tier.name for tier in self.tiers]
        if current is not None and (current not in names or names.index(current) > names.index(target)):
            return
        await tx.customers.set_tier(customer_id, target)
        await tx.events.record(
            TierChanged(
                id=new_id("evt"),
                occurred_at=self.clock(),
                channel=channel,
                actor="system",
                customer_id=customer_id,
                from_tier=current,
                to_tier=target,
                lifetime_spend=lifetime_spend,
            )
        )
