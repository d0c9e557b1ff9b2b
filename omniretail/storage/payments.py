"""SQLAlchemy Core repositories for payments, checkout attempts and the loyalty wallet.

Every change to money is one conditional statement whose row count says whether it happened:
a capture only within what was authorized, a refund only within what was captured, a wallet
debit only ``WHERE balance >= :amount``. Ledger rows and provider operations are unique on a
reference or key, so writing one twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

from omniretail.domain.payment import (
    LIVE_ATTEMPTS,
    AttemptLine,
    AttemptStatus,
    CaptureMode,
    CheckoutAttempt,
    DuplicateReference,
    LedgerEntry,
    LedgerKind,
    OperationKind,
    OperationStatus,
    Payment,
    PaymentOperation,
    PaymentStatus,
    Wallet,
)
from omniretail.storage import tables as t
from omniretail.storage.database import DbConnection, built_once, dialect_insert, insert_or_ignore

_lines_codec = msgspec.json.Decoder(tuple[AttemptLine, ...])
_json = msgspec.json.Encoder()
_LIVE = [s.value for s in LIVE_ATTEMPTS]

# Hot statements (every order's loyalty earn), built once.
_w = t.wallets
_CHANGE_WALLET = (
    update(_w)
    .where(
        _w.c.customer_id == bindparam("w_customer_id"),
        _w.c.balance >= bindparam("w_min_balance"),
        _w.c.points >= bindparam("w_min_points"),
    )
    .values(
        balance=_w.c.balance + bindparam("w_amount"),
        points=_w.c.points + bindparam("w_points"),
        lifetime_spend=_w.c.lifetime_spend + bindparam("w_spend"),
        updated_at=bindparam("w_now"),
    )
    .returning(_w.c.balance, _w.c.points, _w.c.lifetime_spend)
)
_LEDGER_BY_REFERENCE = select(t.wallet_ledger).where(t.wallet_ledger.c.reference == bindparam("l_reference"))


def _credit_wallet(conn: DbConnection) -> Any:
    """``INSERT ... ON CONFLICT (customer_id) DO UPDATE`` adding to the wallet."""
    ins = dialect_insert(conn, _w)
    return ins.on_conflict_do_update(
        index_elements=[_w.c.customer_id],
        set_={
            "balance": _w.c.balance + ins.excluded.balance,
            "points": _w.c.points + ins.excluded.points,
            "lifetime_spend": _w.c.lifetime_spend + ins.excluded.lifetime_spend,
            "updated_at": ins.excluded.updated_at,
        },
    ).returning(_w.c.balance, _w.c.points, _w.c.lifetime_spend)


def _append_ledger(conn: DbConnection) -> Any:
    return insert_or_ignore(conn, t.wallet_ledger).returning(t.wallet_ledger.c.seq)


def _payment(r: Any) -> Payment:
    return Payment(
        id=r.id,
        provider=r.provider,
        status=PaymentStatus(r.status),
        capture_mode=CaptureMode(r.capture_mode),
        currency=r.currency,
        amount=r.amount,
        authorized=r.authorized,
        captured=r.captured,
        refunded=r.refunded,
        refund_pending=r.refund_pending,
        order_id=r.order_id,
        attempt_id=r.attempt_id,
        customer_id=r.customer_id,
        provider_ref=r.provider_ref,
        last_error=r.last_error,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _operation(r: Any) -> PaymentOperation:
    return PaymentOperation(
        id=r.id,
        payment_id=r.payment_id,
        kind=OperationKind(r.kind),
        amount=r.amount,
        status=OperationStatus(r.status),
        idempotency_key=r.idempotency_key,
        reason=r.reason,
        attempts=r.attempts,
        last_error=r.last_error,
        channel=r.channel,
        actor=r.actor,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


async def load_payments(conn: DbConnection, order_ids: Sequence[str]) -> dict[str, list[Payment]]:
    """Payments of these orders, oldest first (for ``Order.payments``)."""
    found: dict[str, list[Payment]] = {}
    if not order_ids:
        return found
    p = t.payments
    rows = await conn.execute(select(p).where(p.c.order_id.in_(list(order_ids))).order_by(p.c.created_at, p.c.id))
    for r in rows:
        found.setdefault(r.order_id, []).append(_payment(r))
    return found


class SqlPayments:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def insert(self, payment: Payment) -> None:
        await self.conn.execute(
            t.payments.insert().values(
                id=payment.id,
                order_id=payment.order_id,
                attempt_id=payment.attempt_id,
                customer_id=payment.customer_id,
                provider=payment.provider,
                provider_ref=payment.provider_ref,
                status=payment.status.value,
                capture_mode=payment.capture_mode.value,
                currency=payment.currency,
                amount=payment.amount,
                authorized=payment.authorized,
                captured=payment.captured,
                refunded=payment.refunded,
                refund_pending=payment.refund_pending,
                created_at=payment.created_at,
                updated_at=payment.updated_at,
            )
        )

    async def get(self, payment_id: str) -> Payment | None:
        row = (await self.conn.execute(select(t.payments).where(t.payments.c.id == payment_id))).first()
        return _payment(row) if row is not None else None

    async def for_order(self, order_id: str) -> list[Payment]:
        return (await load_payments(self.conn, [order_id])).get(order_id, [])

    async def set_authorized(
        self, payment_id: str, *, order_id: str, amount: int, provider_ref: str | None, now: datetime
    ) -> bool:
        p = t.payments
        result = await self.conn.execute(
            update(p)
            .where(p.c.id == payment_id, p.c.status == PaymentStatus.AUTHORIZING.value, p.c.amount >= amount)
            .values(
                status=PaymentStatus.AUTHORIZED.value,
                order_id=order_id,
                authorized=amount,
                provider_ref=provider_ref,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    async def set_status(
        self,
        payment_id: str,
        expected: Sequence[PaymentStatus],
        new: PaymentStatus,
        now: datetime,
        *,
        error: str | None = None,
    ) -> bool:
        p = t.payments
        values: dict[str, Any] = {"status": new.value, "updated_at": now}
        if error is not None:
            values["last_error"] = error[:2000]
        result = await self.conn.execute(
            update(p).where(p.c.id == payment_id, p.c.status.in_([s.value for s in expected])).values(**values)
        )
        return result.rowcount == 1

    async def add_captured(self, payment_id: str, amount: int, now: datetime) -> bool:
        """``captured += amount`` while capturing and within what was authorized."""
        p = t.payments
        result = await self.conn.execute(
            update(p)
            .where(
                p.c.id == payment_id,
                p.c.status == PaymentStatus.CAPTURING.value,
                p.c.captured + amount <= p.c.authorized,
            )
            .values(captured=p.c.captured + amount, status=PaymentStatus.CAPTURED.value, updated_at=now)
        )
        return result.rowcount == 1

    async def reserve_refund(self, payment_id: str, amount: int, now: datetime) -> bool:
        """Count a refund in flight: only while refunded + in flight + amount <= captured."""
        p = t.payments
        result = await self.conn.execute(
            update(p)
            .where(p.c.id == payment_id, p.c.refunded + p.c.refund_pending + amount <= p.c.captured)
            .values(refund_pending=p.c.refund_pending + amount, updated_at=now)
        )
        return result.rowcount == 1

    async def settle_refund(self, payment_id: str, amount: int, *, succeeded: bool, now: datetime) -> int | None:
        """A refund in flight ended: counted as refunded, or given back. Returns the new refunded
        total, None if that much was not in flight."""
        p = t.payments
        values: dict[str, Any] = {"refund_pending": p.c.refund_pending - amount, "updated_at": now}
        if succeeded:
            values["refunded"] = p.c.refunded + amount
        result = await self.conn.execute(
            update(p).where(p.c.id == payment_id, p.c.refund_pending >= amount).values(**values).returning(p.c.refunded)
        )
        refunded = result.scalar()
        return int(refunded) if refunded is not None else None

    # -- operations ----------------------------------------------------------------------------

    async def insert_operation(self, op: PaymentOperation) -> bool:
        """False if an operation with this idempotency key exists (nothing written)."""
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(
                    t.payment_operations.insert().values(
                        id=op.id,
                        payment_id=op.payment_id,
                        kind=op.kind.value,
                        amount=op.amount,
                        status=op.status.value,
                        idempotency_key=op.idempotency_key,
                        reason=op.reason,
                        attempts=op.attempts,
                        channel=op.channel,
                        actor=op.actor,
                        created_at=op.created_at,
                        updated_at=op.updated_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def operation(self, operation_id: str) -> PaymentOperation | None:
        o = t.payment_operations
        row = (await self.conn.execute(select(o).where(o.c.id == operation_id))).first()
        return _operation(row) if row is not None else None

    async def operations(self, payment_ids: Sequence[str]) -> list[PaymentOperation]:
        o = t.payment_operations
        rows = await self.conn.execute(
            select(o).where(o.c.payment_id.in_(list(payment_ids))).order_by(o.c.created_at, o.c.id)
        )
        return [_operation(r) for r in rows]

    async def finish_operation(
        self, operation_id: str, status: OperationStatus, now: datetime, *, error: str | None = None
    ) -> bool:
        """Conditional: only a pending operation ends, and only once."""
        o = t.payment_operations
        result = await self.conn.execute(
            update(o)
            .where(o.c.id == operation_id, o.c.status == OperationStatus.PENDING.value)
            .values(status=status.value, updated_at=now, last_error=error[:2000] if error else None)
        )
        return result.rowcount == 1

    async def note_operation_error(self, operation_id: str, error: str, now: datetime) -> None:
        o = t.payment_operations
        await self.conn.execute(
            update(o)
            .where(o.c.id == operation_id, o.c.status == OperationStatus.PENDING.value)
            .values(attempts=o.c.attempts + 1, last_error=error[:2000], updated_at=now)
        )

    async def pending_operations(self, before: datetime, limit: int) -> list[PaymentOperation]:
        o = t.payment_operations
        rows = await self.conn.execute(
            select(o)
            .where(o.c.status == OperationStatus.PENDING.value, o.c.updated_at <= before)
            .order_by(o.c.updated_at, o.c.id)
            .limit(limit)
        )
        return [_operation(r) for r in rows]


def _attempt(r: Any) -> CheckoutAttempt:
    return CheckoutAttempt(
        id=r.id,
        cart_id=r.cart_id,
        idempotency_key=r.idempotency_key,
        channel=r.channel,
        status=AttemptStatus(r.status),
        customer_id=r.customer_id,
        currency=r.currency,
        total=r.total,
        cart_version=r.cart_version,
        payment_id=r.payment_id,
        lines=_lines_codec.decode(r.lines),
        request=r.request,
        order_id=r.order_id,
        reason=r.reason,
        expires_at=r.expires_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


class SqlCheckoutAttempts:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def insert(self, attempt: CheckoutAttempt) -> bool:
        """False if the cart has a live attempt already, or this key was used for this cart."""
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(
                    t.checkout_attempts.insert().values(
                        id=attempt.id,
                        cart_id=attempt.cart_id,
                        active_cart_id=attempt.cart_id if attempt.live else None,
                        idempotency_key=attempt.idempotency_key,
                        channel=attempt.channel,
                        status=attempt.status.value,
                        customer_id=attempt.customer_id,
                        currency=attempt.currency,
                        total=attempt.total,
                        cart_version=attempt.cart_version,
                        payment_id=attempt.payment_id,
                        lines=_json.encode(attempt.lines).decode(),
                        request=attempt.request,
                        order_id=attempt.order_id,
                        reason=attempt.reason,
                        expires_at=attempt.expires_at,
                        created_at=attempt.created_at,
                        updated_at=attempt.updated_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def _one(self, *cond: Any) -> CheckoutAttempt | None:
        row = (await self.conn.execute(select(t.checkout_attempts).where(*cond))).first()
        return _attempt(row) if row is not None else None

    async def get(self, attempt_id: str) -> CheckoutAttempt | None:
        return await self._one(t.checkout_attempts.c.id == attempt_id)

    async def by_key(self, cart_id: str, idempotency_key: str) -> CheckoutAttempt | None:
        a = t.checkout_attempts
        return await self._one(a.c.cart_id == cart_id, a.c.idempotency_key == idempotency_key)

    async def live_for_cart(self, cart_id: str) -> CheckoutAttempt | None:
        return await self._one(t.checkout_attempts.c.active_cart_id == cart_id)

    async def by_payment(self, payment_id: str) -> CheckoutAttempt | None:
        return await self._one(t.checkout_attempts.c.payment_id == payment_id)

    async def set_lines(self, attempt_id: str, lines: Sequence[AttemptLine], status: AttemptStatus) -> None:
        a = t.checkout_attempts
        await self.conn.execute(
            update(a).where(a.c.id == attempt_id).values(lines=_json.encode(tuple(lines)).decode(), status=status.value)
        )

    async def lease(self, attempt_id: str, token: str, now: datetime, seconds: float) -> bool:
        """Take the attempt for ``seconds`` if it is live and nobody holds it."""
        a = t.checkout_attempts
        result = await self.conn.execute(
            update(a)
            .where(
                a.c.id == attempt_id,
                a.c.status.in_(_LIVE),
                or_(a.c.locked_until.is_(None), a.c.locked_until < now, a.c.lock_token == token),
            )
            .values(locked_until=now + timedelta(seconds=seconds), lock_token=token)
        )
        return result.rowcount == 1

    async def unlease(self, attempt_id: str, token: str, now: datetime) -> None:
        a = t.checkout_attempts
        await self.conn.execute(
            update(a)
            .where(a.c.id == attempt_id, a.c.lock_token == token)
            .values(locked_until=None, lock_token=None, updated_at=now)
        )

    async def finish(
        self,
        attempt_id: str,
        token: str,
        status: AttemptStatus,
        now: datetime,
        *,
        order_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """End a live attempt, only while ``token`` holds its lease (once, whatever the races)."""
        a = t.checkout_attempts
        result = await self.conn.execute(
            update(a)
            .where(
                a.c.id == attempt_id,
                a.c.status.in_(_LIVE),
                # Whoever took the lease over replaced the token: a late holder changes nothing.
                a.c.lock_token == token,
            )
            .values(
                status=status.value,
                active_cart_id=None,
                order_id=order_id,
                reason=reason,
                locked_until=None,
                lock_token=None,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    async def stale(self, before: datetime, now: datetime, limit: int) -> list[CheckoutAttempt]:
        """Live attempts untouched since ``before`` that nobody holds."""
        a = t.checkout_attempts
        rows = await self.conn.execute(
            select(a)
            .where(
                a.c.status.in_(_LIVE),
                a.c.updated_at <= before,
                or_(a.c.locked_until.is_(None), a.c.locked_until < now),
            )
            .order_by(a.c.updated_at, a.c.id)
            .limit(limit)
        )
        return [_attempt(r) for r in rows]


def _entry(r: Any) -> LedgerEntry:
    return LedgerEntry(
        seq=r.seq,
        customer_id=r.customer_id,
        kind=LedgerKind(r.kind),
        amount=r.amount,
        points=r.points,
        balance_after=r.balance_after,
        points_after=r.points_after,
        reference=r.reference,
        order_id=r.order_id,
        channel=r.channel,
        actor=r.actor,
        note=r.note,
        created_at=r.created_at,
    )


class SqlWallets:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def get(self, customer_id: str) -> Wallet | None:
        w = t.wallets
        row = (await self.conn.execute(select(w).where(w.c.customer_id == customer_id))).first()
        if row is None:
            return None
        return Wallet(
            customer_id=row.customer_id,
            currency=row.currency,
            balance=row.balance,
            points=row.points,
            lifetime_spend=row.lifetime_spend,
        )

    async def ensure(self, customer_id: str, currency: str, now: datetime) -> None:
        """Create the customer's empty wallet unless it exists (safe under concurrency)."""
        await self.conn.execute(
            insert_or_ignore(self.conn, t.wallets),
            {
                "customer_id": customer_id,
                "currency": currency,
                "balance": 0,
                "points": 0,
                "lifetime_spend": 0,
                "updated_at": now,
            },
        )

    async def change(
        self, customer_id: str, *, amount: int, points: int = 0, spend: int = 0, now: datetime
    ) -> tuple[int, int, int] | None:
        """Add signed ``amount`` and ``points``: one conditional UPDATE that refuses (None) to take
        the balance or the points below zero. Returns (balance, points, lifetime spend) after."""
        row = (
            await self.conn.execute(
                _CHANGE_WALLET,
                {
                    "w_customer_id": customer_id,
                    "w_amount": amount,
                    "w_points": points,
                    "w_spend": spend,
                    "w_now": now,
                    # Balance and points are never negative, so a credit's floor of 0 always holds.
                    "w_min_balance": max(0, -amount),
                    "w_min_points": max(0, -points),
                },
            )
        ).first()
        return (int(row[0]), int(row[1]), int(row[2])) if row is not None else None

    async def credit(
        self, customer_id: str, currency: str, *, amount: int, points: int, spend: int, now: datetime
    ) -> tuple[int, int, int]:
        if amount < 0 or points < 0 or spend < 0:
            raise ValueError("credit() adds; use change() to take away")
        row = (
            await self.conn.execute(
                built_once(self.conn, "credit_wallet", _credit_wallet),
                {
                    "customer_id": customer_id,
                    "currency": currency,
                    "balance": amount,
                    "points": points,
                    "lifetime_spend": spend,
                    "updated_at": now,
                },
            )
        ).one()
        return int(row[0]), int(row[1]), int(row[2])

    async def append(self, entry: LedgerEntry) -> int:
        """Append a ledger row; ``DuplicateReference`` if the reference is taken (the insert is
        ``ON CONFLICT DO NOTHING``: no savepoint, and the caller's transaction rolls back)."""
        seq = await self.conn.scalar(
            built_once(self.conn, "append_ledger", _append_ledger),
            {
                "customer_id": entry.customer_id,
                "kind": entry.kind.value,
                "amount": entry.amount,
                "points": entry.points,
                "balance_after": entry.balance_after,
                "points_after": entry.points_after,
                "reference": entry.reference,
                "order_id": entry.order_id,
                "channel": entry.channel,
                "actor": entry.actor,
                "note": entry.note,
                "created_at": entry.created_at,
            },
        )
        if seq is None:
            raise DuplicateReference(entry.reference)
        return int(seq)

    async def entry(self, reference: str) -> LedgerEntry | None:
        row = (await self.conn.execute(_LEDGER_BY_REFERENCE, {"l_reference": reference})).first()
        return _entry(row) if row is not None else None

    async def ledger(self, customer_id: str, *, before: int | None, limit: int) -> list[LedgerEntry]:
        """Newest first; ``before`` is a ``seq`` cursor."""
        lg = t.wallet_ledger
        stmt = select(lg).where(lg.c.customer_id == customer_id)
        if before is not None:
            stmt = stmt.where(lg.c.seq < before)
        rows = await self.conn.execute(stmt.order_by(lg.c.seq.desc()).limit(limit))
        return [_entry(r) for r in rows]
