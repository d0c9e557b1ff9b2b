"""Payments after the order: capture, void and refund, each a recorded provider operation.

An operation is planned in the transaction that decides it (the order written, cancelled or
returned): a ``payment_operations`` row with its own idempotency key, and for a refund the amount
counted as in flight by a conditional UPDATE (``refunded + refund_pending + amount <= captured``,
so concurrent refunds can never add up to more than was captured). After commit the provider is
asked; the answer moves the payment's counters once (the operation ends ``pending`` ->
``succeeded`` or ``failed`` by a conditional UPDATE). An operation whose answer was lost stays
pending and the recovery task asks again with the same key, so nothing is taken or given twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec

from omniretail.domain.errors import Conflict, InvalidValue, NotFound
from omniretail.domain.events import (
    OrderStatusChanged,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
)
from omniretail.domain.ids import new_id
from omniretail.domain.order import Order, OrderStatus
from omniretail.domain.payment import (
    CaptureMode,
    OperationKind,
    OperationStatus,
    Payment,
    PaymentOperation,
    PaymentStatus,
    RefundExceedsCaptured,
)
from omniretail.payment import PaymentProviderSpec, PaymentRef, PaymentUnavailable, ProviderResult, ProviderStatus
from omniretail.services.clock import Clock
from omniretail.services.protocols import Transaction, UnitOfWork

log = logging.getLogger("omniretail.payments")


class ConfiguredProvider(msgspec.Struct, frozen=True, kw_only=True):
    """A provider the configuration enables: its spec, the object ``create`` made, its capture mode."""

    spec: PaymentProviderSpec
    provider: Any
    capture: CaptureMode


def payment_ref(payment: Payment) -> PaymentRef:
    return PaymentRef(
        payment_id=payment.id,
        amount=payment.authorized or payment.amount,
        currency=payment.currency,
        provider_ref=payment.provider_ref,
        customer_id=payment.customer_id,
        order_id=payment.order_id,
        authorize_key=payment.authorize_key,
    )


class PaymentService:
    def __init__(self, uow: UnitOfWork, clock: Clock, *, recovery_seconds: float = 30.0) -> None:
        self.uow = uow
        self.clock = clock
        self.recovery_seconds = recovery_seconds
        #: Enabled providers by name (filled in by the kernel once the plugins built them).
        self.providers: dict[str, ConfiguredProvider] = {}

    def configured(self, name: str) -> ConfiguredProvider:
        found = self.providers.get(name)
        if found is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise InvalidValue(f"no payment provider {name!r} (configured: {known})", field="payment.provider")
        return found

    async def get(self, payment_id: str) -> Payment:
        async with self.uow.read() as tx:
            payment = await tx.payments.get(payment_id)
        if payment is None:
            raise NotFound(f"no payment {payment_id!r}", field="payment_id")
        return payment

    async def operations(self, order_id: str) -> list[PaymentOperation]:
        async with self.uow.read() as tx:
            payments = await tx.payments.for_order(order_id)
            return await tx.payments.operations([p.id for p in payments])

    # -- planning (inside the transaction that decides) -------------------------------------------

    def _operation(
        self, payment: Payment, kind: OperationKind, amount: int, key: str, *, reason: str, channel: str, actor: str
    ) -> PaymentOperation:
        now = self.clock()
        return PaymentOperation(
            id=new_id("pop"),
            payment_id=payment.id,
            kind=kind,
            amount=amount,
            idempotency_key=key,
            reason=reason,
            channel=channel,
            actor=actor,
            created_at=now,
            updated_at=now,
        )

    async def plan_capture_in(
        self, tx: Transaction, payment: Payment, *, channel: str = "system", actor: str = "system"
    ) -> str | None:
        """Capture what an authorized payment holds. Once per payment (key ``<id>.capture``)."""
        now = self.clock()
        if not await tx.payments.set_status(payment.id, [PaymentStatus.AUTHORIZED], PaymentStatus.CAPTURING, now):
            return None
        op = self._operation(
            payment,
            OperationKind.CAPTURE,
            payment.authorized,
            f"{payment.id}.capture",
            reason="capture",
            channel=channel,
            actor=actor,
        )
        if await tx.payments.insert_operation(op):
            return op.id
        # Captured (or refused) once already: a payment is captured once, never again.
        await tx.payments.set_status(payment.id, [PaymentStatus.CAPTURING], PaymentStatus.AUTHORIZED, now)
        return None

    async def plan_cancel_in(self, tx: Transaction, order: Order, *, channel: str, actor: str) -> list[str]:
        """A cancelled order: void what is only authorized, refund what was captured."""
        planned: list[str] = []
        now = self.clock()
        for payment in await tx.payments.for_order(order.id):
            if payment.status is PaymentStatus.CAPTURING:
                raise Conflict("a payment of this order is being captured; try again in a moment", field="status")
            if payment.status is PaymentStatus.AUTHORIZED:
                if await tx.payments.set_status(payment.id, [PaymentStatus.AUTHORIZED], PaymentStatus.VOIDING, now):
                    op = self._operation(
                        payment,
                        OperationKind.VOID,
                        payment.authorized,
                        f"{payment.id}.void",
                        reason="order cancelled",
                        channel=channel,
                        actor=actor,
                    )
                    if await tx.payments.insert_operation(op):
                        planned.append(op.id)
            elif payment.refundable > 0:
                planned += await self._plan_refunds(
                    tx, [payment], payment.refundable, reason="order cancelled", channel=channel, actor=actor
                )
        return planned

    async def plan_refund_in(
        self,
        tx: Transaction,
        order: Order,
        amount: int,
        *,
        reason: str,
        channel: str,
        actor: str,
        strict: bool = False,
    ) -> list[str]:
        """Refund ``amount`` over the order's payments, oldest first. ``strict``: all of it or
        ``RefundExceedsCaptured``; else as much as is left captured (a return of an unpaid order
        refunds nothing)."""
        payments = await tx.payments.for_order(order.id)
        if any(p.status is PaymentStatus.CAPTURING for p in payments):
            raise Conflict("a payment of this order is being captured; try again in a moment", field="amount")
        left = sum(max(p.refundable, 0) for p in payments)
        if strict and amount > left:
            raise RefundExceedsCaptured(
                f"{amount} is more than the {left} left to refund on this order (captured minus refunded)",
                field="amount",
            )
        return await self._plan_refunds(tx, payments, min(amount, left), reason=reason, channel=channel, actor=actor)

    async def _plan_refunds(
        self, tx: Transaction, payments: Sequence[Payment], amount: int, *, reason: str, channel: str, actor: str
    ) -> list[str]:
        planned: list[str] = []
        remaining = amount
        for payment in payments:
            part = min(remaining, payment.refundable)
            if part <= 0:
                continue
            # The conditional UPDATE is the guard: a concurrent refund that got there first wins.
            if not await tx.payments.reserve_refund(payment.id, part, self.clock()):
                raise RefundExceedsCaptured(
                    "another refund of this order was recorded meanwhile; the amount is no longer available",
                    field="amount",
                )
            op_id = new_id("pop")
            op = msgspec.structs.replace(
                self._operation(payment, OperationKind.REFUND, part, "", reason=reason, channel=channel, actor=actor),
                id=op_id,
                idempotency_key=f"{payment.id}.refund.{op_id}",
            )
            await tx.payments.insert_operation(op)
            planned.append(op.id)
            remaining -= part
        return planned

    # -- asking the provider -----------------------------------------------------------------------

    async def execute_all(self, operation_ids: Sequence[str]) -> None:
        for op_id in operation_ids:
            await self.execute(op_id)

    async def execute(self, operation_id: str) -> OperationStatus:
        """Ask the provider to do a pending operation and record the answer once. Never raises
        for the provider's sake: an unknown outcome stays pending for the recovery task."""
        async with self.uow.read() as tx:
            op = await tx.payments.operation(operation_id)
            payment = await tx.payments.get(op.payment_id) if op is not None else None
        if op is None or payment is None:
            raise NotFound(f"no payment operation {operation_id!r}", field="operation_id")
        if op.status is not OperationStatus.PENDING:
            return op.status
        configured = self.providers.get(payment.provider)
        if configured is None:
            await self._note(op, f"payment provider {payment.provider!r} is not configured")
            return op.status
        ref = payment_ref(payment)
        provider = configured.provider
        try:
            if op.kind is OperationKind.CAPTURE:
                result: ProviderResult = await provider.capture(ref, op.amount, idempotency_key=op.idempotency_key)
            elif op.kind is OperationKind.VOID:
                result = await provider.void(ref, idempotency_key=op.idempotency_key)
            else:
                result = await provider.refund(ref, op.amount, idempotency_key=op.idempotency_key)
        except PaymentUnavailable as exc:
            await self._note(op, f"provider unavailable: {exc}")
            return op.status
        except Exception as exc:
            log.exception("payment provider %s failed on %s %s", payment.provider, op.kind.value, op.id)
            await self._note(op, f"provider error: {exc!r}")
            return op.status
        if result.status is ProviderStatus.PENDING:
            await self._note(op, "pending at the provider")
            return op.status
        return await self._record(op, payment, result)

    async def _note(self, op: PaymentOperation, error: str) -> None:
        async with self.uow.write() as tx:
            await tx.payments.note_operation_error(op.id, error, self.clock())

    async def _record(self, op: PaymentOperation, payment: Payment, result: ProviderResult) -> OperationStatus:
        now = self.clock()
        ok = result.status is ProviderStatus.APPROVED
        status = OperationStatus.SUCCEEDED if ok else OperationStatus.FAILED
        error = None if ok else f"declined: {result.reason or 'no reason given'}"
        async with self.uow.write() as tx:
            if not await tx.payments.finish_operation(op.id, status, now, error=error):
                return OperationStatus.SUCCEEDED  # recorded by someone else (a webhook, a retry)
            order = await tx.orders.get(payment.order_id) if payment.order_id else None
            base: dict[str, Any] = {
                "id": new_id("evt"),
                "occurred_at": now,
                "channel": op.channel,
                "actor": op.actor,
                "customer_id": payment.customer_id,
            }
            if op.kind is OperationKind.CAPTURE:
                if ok and await tx.payments.add_captured(payment.id, op.amount, now):
                    if order is not None:
                        await tx.events.record(
                            PaymentCaptured(
                                **base,
                                order_id=order.id,
                                number=order.number,
                                payment_id=payment.id,
                                provider=payment.provider,
                                amount=op.amount,
                                currency=payment.currency,
                            )
                        )
                        await self._mark_paid(tx, order, channel=op.channel)
                elif not ok:
                    await tx.payments.set_status(
                        payment.id, [PaymentStatus.CAPTURING], PaymentStatus.AUTHORIZED, now, error=error
                    )
            elif op.kind is OperationKind.VOID:
                new = PaymentStatus.VOIDED if ok else PaymentStatus.AUTHORIZED
                if await tx.payments.set_status(payment.id, [PaymentStatus.VOIDING], new, now, error=error) and ok:
                    await tx.events.record(
                        PaymentVoided(
                            **base,
                            payment_id=payment.id,
                            provider=payment.provider,
                            amount=payment.authorized,
                            currency=payment.currency,
                            order_id=payment.order_id,
                            reason=op.reason,
                        )
                    )
            else:
                refunded = await tx.payments.settle_refund(payment.id, op.amount, succeeded=ok, now=now)
                if not ok:
                    await tx.payments.set_status(payment.id, [payment.status], payment.status, now, error=error)
                elif refunded is not None and order is not None:
                    await tx.events.record(
                        PaymentRefunded(
                            **base,
                            order_id=order.id,
                            number=order.number,
                            payment_id=payment.id,
                            provider=payment.provider,
                            amount=op.amount,
                            currency=payment.currency,
                            refunded_total=refunded,
                            operation_id=op.id,
                            reason=op.reason,
                        )
                    )
        return status

    async def _mark_paid(self, tx: Transaction, order: Order, *, channel: str) -> None:
        """A placed order whose payments now cover its total moves to ``paid``."""
        payments = await tx.payments.for_order(order.id)
        if sum(p.captured for p in payments) < order.total:
            return
        now = self.clock()
        if await tx.orders.set_status(order.id, OrderStatus.PLACED, OrderStatus.PAID, now):
            await tx.events.record(
                OrderStatusChanged(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=channel,
                    actor="system",
                    customer_id=order.customer_id,
                    order_id=order.id,
                    number=order.number,
                    from_status=OrderStatus.PLACED.value,
                    to_status=OrderStatus.PAID.value,
                    note="payment captured",
                )
            )

    # -- use cases ---------------------------------------------------------------------------------

    async def capture_order(self, order_id: str, *, channel: str = "system", actor: str = "system") -> list[Payment]:
        """Capture every authorized payment of an order (pay at pickup when it is collected, a
        card when the goods ship). Safe to call again: each payment is captured once."""
        async with self.uow.write() as tx:
            planned = [
                op_id
                for payment in await tx.payments.for_order(order_id)
                if payment.status is PaymentStatus.AUTHORIZED
                and (op_id := await self.plan_capture_in(tx, payment, channel=channel, actor=actor))
            ]
        await self.execute_all(planned)
        async with self.uow.read() as tx:
            return await tx.payments.for_order(order_id)

    async def refund_order(
        self, order_id: str, amount: int, *, reason: str, channel: str, actor: str = "staff"
    ) -> list[Payment]:
        """Give back ``amount`` (minor units) without a return (a goodwill gesture), oldest
        payment first. ``RefundExceedsCaptured`` if more than is left captured."""
        if amount < 1:
            raise InvalidValue("a refund is at least 1 minor unit", field="amount")
        async with self.uow.write() as tx:
            order = await tx.orders.get(order_id)
            if order is None:
                raise NotFound(f"no order {order_id!r}", field="order_id")
            planned = await self.plan_refund_in(
                tx, order, amount, reason=reason, channel=channel, actor=actor, strict=True
            )
        await self.execute_all(planned)
        async with self.uow.read() as tx:
            return await tx.payments.for_order(order_id)

    async def recover_operations(self, limit: int = 100) -> int:
        """Ask again about operations left pending longer than ``recovery_seconds``."""
        now = self.clock()
        async with self.uow.read() as tx:
            pending = await tx.payments.pending_operations(now - timedelta(seconds=self.recovery_seconds), limit)
        for op in pending:
            try:
                await self.execute(op.id)
            except Exception:
                log.exception("recovering payment operation %s failed", op.id)
        return len(pending)
