"""Checkout with payment: reserve stock -> authorize -> write the order -> capture.

A payment provider is a remote party that may answer late or not at all, so a paid checkout
cannot be one transaction. It is a ``checkout_attempts`` row per try, moved by conditional
UPDATEs, with compensation:

1. **reserving** (one transaction): the cart is priced by the server, every line's units are
   held by a reservation (``reference`` = the attempt id, expiring after
   ``inventory.reservation_minutes``), the attempt and its ``authorizing`` payment are written.
2. **authorizing**: the provider is asked outside any transaction, with the idempotency key
   ``<payment id>.authorize``.
3. The answer settles the attempt, by whoever holds its lease (the request, a retry with the same
   Idempotency-Key, a provider webhook, or the recovery task; the lease token makes every final
   transition happen once):

   * approved -> **completed**, one transaction: the cart is priced again and must still total
     what was authorized, the holds become sales, the order is written, the cart closed, the
     payment marked authorized and, for ``capture = "immediate"``, a capture planned and then
     asked for. If the holds lapsed and the units are gone, or the cart changed, it is undone;
   * declined -> **declined**: the holds are released, no order (402 ``payment-declined``);
   * no answer (timeout) or pending -> stays **authorizing**: 409 ``payment-pending``, not stored
     by the idempotency middleware, so a retry with the same key asks the provider again (which
     answers with the first result: never a second charge). Past the holds' expiry, the attempt
     is undone: the payment voided (key ``<payment id>.void``), the holds released ->
     **abandoned**.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import msgspec

from omniretail.domain.errors import Conflict, DomainError, InvalidValue, NotFound, OutOfStock
from omniretail.domain.events import PaymentAuthorized, PaymentDeclinedEvent, PaymentVoided
from omniretail.domain.ids import new_id
from omniretail.domain.inventory import Reservation
from omniretail.domain.order import Order
from omniretail.domain.payment import (
    AttemptLine,
    AttemptStatus,
    CaptureMode,
    CheckoutAbandoned,
    CheckoutAttempt,
    CheckoutInProgress,
    Payment,
    PaymentDeclined,
    PaymentPending,
    PaymentStatus,
)
from omniretail.payment import AuthorizeRequest, PaymentUnavailable, ProviderResult, ProviderStatus
from omniretail.services.clock import Clock
from omniretail.services.orders import CheckoutRequest, OrderService
from omniretail.services.payments import PaymentService, payment_ref
from omniretail.services.pricing import price_cart
from omniretail.services.protocols import UnitOfWork

log = logging.getLogger("omniretail.checkout")

#: How long whoever settles an attempt holds it (longer than any provider call should take).
LEASE_SECONDS = 120.0
_request_codec = msgspec.json.Decoder(CheckoutRequest)


class _Undo(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Lost(Exception):
    """Someone else settled the attempt first."""


class PaidCheckout:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        orders: OrderService,
        payments: PaymentService,
        *,
        channel_payments: dict[str, tuple[str, ...]],
        reservation_minutes: int = 15,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.orders = orders
        self.payments = payments
        self.channel_payments = channel_payments
        self.reservation_minutes = reservation_minutes

    # -- reads ---------------------------------------------------------------------------------

    async def attempt(self, attempt_id: str) -> CheckoutAttempt:
        async with self.uow.read() as tx:
            found = await tx.attempts.get(attempt_id)
        if found is None:
            raise NotFound(f"no checkout attempt {attempt_id!r}", field="attempt_id")
        return found

    async def attempt_for(self, cart_id: str, idempotency_key: str) -> CheckoutAttempt | None:
        async with self.uow.read() as tx:
            return await tx.attempts.by_key(cart_id, idempotency_key)

    # -- the flow --------------------------------------------------------------------------------

    async def checkout(self, request: CheckoutRequest) -> Order:
        """A paid checkout, or the outcome of the attempt this Idempotency-Key started."""
        choice = request.payment
        assert choice is not None
        configured = self.payments.configured(choice.provider)
        offered = self.channel_payments.get(request.channel, tuple(self.payments.providers))
        if choice.provider not in offered:
            raise InvalidValue(
                f"{choice.provider!r} is not offered on channel {request.channel!r} (offered: "
                f"{', '.join(offered) or 'none'})",
                field="payment.provider",
            )
        spec = configured.spec
        if spec.fulfilments and request.fulfilment not in spec.fulfilments:
            raise InvalidValue(
                f"{spec.title} pays only for {', '.join(sorted(f.value for f in spec.fulfilments))} orders",
                field="payment.provider",
            )
        key = request.idempotency_key or new_id("key")
        request = msgspec.structs.replace(request, idempotency_key=key)
        existing = await self.attempt_for(request.cart_id, key)
        if existing is not None:
            first = _request_codec.decode(existing.request).payment
            if first is not None and first.provider != choice.provider:
                raise InvalidValue(
                    f"this Idempotency-Key started a checkout paying with {first.provider!r}; "
                    "use a new key to pay another way",
                    field="payment.provider",
                )
            return await self._resume(existing)
        plan = self.orders.plan(request)
        now = self.clock()
        token = new_id("lease")
        async with self.uow.write() as tx:
            cart, customer_id, priced = await self.orders.price_in(tx, request, plan)
            if spec.requires_customer and not (request.customer_id or cart.customer_id):
                raise InvalidValue(
                    f"{spec.title} is for identified customers: sign in (or be identified) first",
                    field="payment.provider",
                )
            if priced.total <= 0:
                raise InvalidValue("nothing to pay: check out without a payment", field="payment")
            attempt = CheckoutAttempt(
                id=new_id("chk"),
                cart_id=cart.id,
                idempotency_key=key,
                channel=request.channel,
                status=AttemptStatus.RESERVING,
                customer_id=customer_id,
                currency=cart.currency,
                total=priced.total,
                cart_version=cart.version,
                payment_id=new_id("pay"),
                lines=(),
                request=msgspec.json.encode(request),
                expires_at=now + timedelta(minutes=self.reservation_minutes),
                created_at=now,
                updated_at=now,
            )
            if not await tx.attempts.insert(attempt):
                raise CheckoutInProgress(
                    "another checkout of this cart is in progress; retry with its Idempotency-Key or wait",
                    field="cart_id",
                )
            held: list[AttemptLine] = []
            # Holds are taken in SKU order so concurrent checkouts lock stock rows in one order.
            for no, line in sorted(enumerate(priced.lines, start=1), key=lambda x: x[1].sku):
                for location_id in self.orders.candidates(plan, request):
                    await tx.stock.sweep_expired(now, line.sku, location_id)
                    hold = Reservation(
                        id=new_id("res"),
                        sku=line.sku,
                        location_id=location_id,
                        quantity=line.quantity,
                        expires_at=attempt.expires_at,
                        reference=attempt.id,
                    )
                    if await tx.stock.reserve(hold):
                        held.append(
                            AttemptLine(
                                line_no=no,
                                sku=line.sku,
                                quantity=line.quantity,
                                location_id=location_id,
                                reservation_id=hold.id,
                            )
                        )
                        break
                else:
                    raise OutOfStock(line.sku, line.quantity)
            held.sort(key=lambda x: x.line_no)
            await tx.attempts.set_lines(attempt.id, held, AttemptStatus.AUTHORIZING)
            attempt = msgspec.structs.replace(attempt, lines=tuple(held), status=AttemptStatus.AUTHORIZING)
            await tx.payments.insert(
                Payment(
                    id=attempt.payment_id,
                    provider=choice.provider,
                    status=PaymentStatus.AUTHORIZING,
                    capture_mode=configured.capture,
                    currency=attempt.currency,
                    amount=attempt.total,
                    attempt_id=attempt.id,
                    customer_id=customer_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            await tx.attempts.lease(attempt.id, token, now, LEASE_SECONDS)
        return await self._authorize(attempt, token)

    async def _resume(self, attempt: CheckoutAttempt) -> Order:
        """The same Idempotency-Key again: the outcome, or settle what is still in between."""
        if attempt.status is AttemptStatus.COMPLETED:
            assert attempt.order_id is not None
            return await self.orders.get(attempt.order_id)
        if attempt.status is AttemptStatus.DECLINED:
            raise PaymentDeclined(attempt.reason or "the payment was declined", field="payment")
        if attempt.status is AttemptStatus.ABANDONED:
            raise CheckoutAbandoned(
                f"this checkout was undone ({attempt.reason}); check out again with a new Idempotency-Key",
                field="cart_id",
            )
        token = new_id("lease")
        async with self.uow.write() as tx:
            leased = await tx.attempts.lease(attempt.id, token, self.clock(), LEASE_SECONDS)
        if not leased:
            raise PaymentPending("this checkout is being settled by another request; retry shortly", field="payment")
        return await self._authorize(attempt, token)

    async def _authorize(self, attempt: CheckoutAttempt, token: str) -> Order:
        """Ask the provider (again: same key, same answer) and settle with what it says."""
        request = _request_codec.decode(attempt.request)
        assert request.payment is not None
        result: ProviderResult | None = None
        if attempt.status is AttemptStatus.AUTHORIZING:
            configured = self.payments.providers.get(request.payment.provider)
            ask = AuthorizeRequest(
                payment_id=attempt.payment_id,
                amount=attempt.total,
                currency=attempt.currency,
                channel=attempt.channel,
                cart_id=attempt.cart_id,
                fulfilment=request.fulfilment,
                customer_id=attempt.customer_id,
                token=request.payment.token,
            )
            try:
                if configured is None:
                    raise PaymentUnavailable(f"payment provider {request.payment.provider!r} is not configured now")
                result = await configured.provider.authorize(ask, idempotency_key=f"{attempt.payment_id}.authorize")
            except PaymentUnavailable as exc:
                log.warning("authorization of %s: outcome unknown (%s)", attempt.payment_id, exc)
            except Exception:
                log.exception("payment provider %s failed to authorize %s", request.payment.provider, attempt.id)
        return await self.settle(attempt, token, result)

    async def settle(self, attempt: CheckoutAttempt, token: str, result: ProviderResult | None) -> Order:
        """Finish or undo a leased attempt given the provider's answer (None: unknown)."""
        try:
            if result is None or result.status is ProviderStatus.PENDING:
                if attempt.status is AttemptStatus.RESERVING or self.clock() >= attempt.expires_at:
                    return await self._abandon(attempt, token, "no answer from the payment provider in time")
                async with self.uow.write() as tx:
                    await tx.attempts.unlease(attempt.id, token, self.clock())
                raise PaymentPending(
                    "the payment provider has not answered yet; retry with the same Idempotency-Key",
                    field="payment",
                )
            if result.status is ProviderStatus.DECLINED:
                return await self._decline(attempt, token, result.reason or "declined by the payment provider")
            return await self._complete(attempt, token, result)
        except _Lost:
            return await self._resume(await self.attempt(attempt.id))

    async def _decline(self, attempt: CheckoutAttempt, token: str, reason: str) -> Order:
        now = self.clock()
        async with self.uow.write() as tx:
            if not await tx.attempts.finish(attempt.id, token, AttemptStatus.DECLINED, now, reason=reason):
                raise _Lost
            for line in attempt.lines:
                await tx.stock.release(line.reservation_id)
            await tx.payments.set_status(
                attempt.payment_id, [PaymentStatus.AUTHORIZING], PaymentStatus.DECLINED, now, error=reason
            )
            payment = await tx.payments.get(attempt.payment_id)
            assert payment is not None
            await tx.events.record(
                PaymentDeclinedEvent(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=attempt.channel,
                    actor="system",
                    customer_id=attempt.customer_id,
                    cart_id=attempt.cart_id,
                    payment_id=payment.id,
                    provider=payment.provider,
                    amount=payment.amount,
                    currency=payment.currency,
                    reason=reason,
                )
            )
        raise PaymentDeclined(f"the payment was declined: {reason}", field="payment")

    async def _abandon(self, attempt: CheckoutAttempt, token: str, reason: str) -> Order:
        """Void whatever the provider may hold, then release the holds. If the void cannot be
        confirmed, nothing is released by us (the holds lapse on their own) and it is retried."""
        payment = await self.payments.get(attempt.payment_id)
        configured = self.payments.providers.get(payment.provider)
        void_error = None
        if configured is not None:
            try:
                result = await configured.provider.void(payment_ref(payment), idempotency_key=f"{payment.id}.void")
            except Exception as exc:
                log.warning("void of %s failed: %r", payment.id, exc)
                async with self.uow.write() as tx:
                    await tx.attempts.unlease(attempt.id, token, self.clock())
                raise PaymentPending(
                    "the payment could not be confirmed nor released yet; retry with the same Idempotency-Key",
                    field="payment",
                ) from None
            if result.status is ProviderStatus.PENDING:
                async with self.uow.write() as tx:
                    await tx.attempts.unlease(attempt.id, token, self.clock())
                raise PaymentPending("the payment is being released; retry shortly", field="payment")
            if result.status is ProviderStatus.DECLINED:
                void_error = f"void refused by the provider: {result.reason}"
        now = self.clock()
        async with self.uow.write() as tx:
            if not await tx.attempts.finish(attempt.id, token, AttemptStatus.ABANDONED, now, reason=reason):
                raise _Lost
            for line in attempt.lines:
                await tx.stock.release(line.reservation_id)
            await tx.payments.set_status(
                payment.id,
                [PaymentStatus.AUTHORIZING, PaymentStatus.AUTHORIZED],
                PaymentStatus.VOIDED,
                now,
                error=void_error or reason,
            )
            await tx.events.record(
                PaymentVoided(
                    id=new_id("evt"),
                    occurred_at=now,
                    channel=attempt.channel,
                    actor="system",
                    customer_id=attempt.customer_id,
                    payment_id=payment.id,
                    provider=payment.provider,
                    amount=payment.amount,
                    currency=payment.currency,
                    cart_id=attempt.cart_id,
                    reason=reason,
                )
            )
        raise CheckoutAbandoned(
            f"this checkout was undone ({reason}); check out again with a new Idempotency-Key", field="cart_id"
        )

    async def _complete(self, attempt: CheckoutAttempt, token: str, result: ProviderResult) -> Order:
        request = _request_codec.decode(attempt.request)
        plan = self.orders.plan(request)
        now = self.clock()
        capture_op: str | None = None
        try:
            async with self.uow.write() as tx:
                cart = await tx.carts.get(attempt.cart_id)
                if cart is None or cart.version != attempt.cart_version:
                    raise _Undo("the cart changed during checkout")
                customer = await tx.customers.get(attempt.customer_id) if attempt.customer_id else None
                products = await tx.products.get_by_skus([x.sku for x in cart.lines])
                try:
                    priced = price_cart(cart, products, customer, self.orders.offers)
                except DomainError as exc:
                    raise _Undo(f"the cart can no longer be bought: {exc}") from None
                if priced.total != attempt.total or cart.currency != attempt.currency:
                    raise _Undo("prices changed during checkout")
                located: dict[int, str] = {}
                for line in attempt.lines:
                    taken = await tx.stock.commit_reservation(line.reservation_id, now)
                    if not taken:
                        # The hold lapsed; the units may still be free.
                        await tx.stock.sweep_expired(now, line.sku, line.location_id)
                        taken = await tx.stock.take(line.sku, line.location_id, line.quantity)
                    if not taken:
                        raise _Undo(f"{line.sku!r} sold out while the payment was pending")
                    located[line.line_no] = line.location_id
                assert attempt.customer_id is not None
                order = self.orders.build(request, plan, cart, attempt.customer_id, priced, located, now)
                if not await tx.attempts.finish(attempt.id, token, AttemptStatus.COMPLETED, now, order_id=order.id):
                    raise _Lost
                try:
                    await self.orders.place_in(tx, order, cart, request)
                except Conflict as exc:
                    raise _Undo(exc.message) from None
                if not await tx.payments.set_authorized(
                    attempt.payment_id,
                    order_id=order.id,
                    amount=attempt.total,
                    provider_ref=result.provider_ref,
                    now=now,
                ):
                    raise _Undo("the payment is no longer authorizing")
                payment = await tx.payments.get(attempt.payment_id)
                assert payment is not None
                await tx.events.record(
                    PaymentAuthorized(
                        id=new_id("evt"),
                        occurred_at=now,
                        channel=attempt.channel,
                        actor=request.actor,
                        customer_id=order.customer_id,
                        order_id=order.id,
                        number=order.number,
                        payment_id=payment.id,
                        provider=payment.provider,
                        amount=payment.authorized,
                        currency=payment.currency,
                    )
                )
                if payment.capture_mode is CaptureMode.IMMEDIATE:
                    capture_op = await self.payments.plan_capture_in(tx, payment, channel=attempt.channel)
        except _Undo as undo:
            return await self._abandon(attempt, token, undo.reason)
        if capture_op is not None:
            await self.payments.execute(capture_op)
        return await self.orders.get(order.id)

    # -- from outside the request ----------------------------------------------------------------

    async def settle_payment(self, payment_id: str, result: ProviderResult) -> CheckoutAttempt | None:
        """A provider told us (a webhook) how an authorization ended. Settles its attempt if it
        is still in between; an attempt that ended already is returned unchanged (a late or
        repeated webhook changes nothing). ``PaymentPending`` if another request is settling it
        right now: the provider should deliver again a little later."""
        async with self.uow.read() as tx:
            attempt = await tx.attempts.by_payment(payment_id)
        if attempt is None or not attempt.live:
            return attempt
        token = new_id("lease")
        async with self.uow.write() as tx:
            if not await tx.attempts.lease(attempt.id, token, self.clock(), LEASE_SECONDS):
                raise PaymentPending("this checkout is being settled by another request", field="payment")
        with contextlib.suppress(DomainError):  # declined, pending or undone: recorded on the attempt
            await self.settle(attempt, token, result)
        return await self.attempt(attempt.id)

    async def recover(self, limit: int = 50) -> int:
        """Settle attempts left in between (a crash, a lost answer) for longer than the
        payments' ``recovery_seconds``: ask the provider again with the same key, then finish
        or undo. Returns how many were looked at."""
        now = self.clock()
        before = now - timedelta(seconds=self.payments.recovery_seconds)
        async with self.uow.read() as tx:
            stale = await tx.attempts.stale(before, now, limit)
        for attempt in stale:
            token = new_id("lease")
            async with self.uow.write() as tx:
                if not await tx.attempts.lease(attempt.id, token, self.clock(), LEASE_SECONDS):
                    continue
            try:
                await self._authorize(attempt, token)
            except DomainError:
                pass  # settled one way or the other, or still pending: the attempt records it
            except Exception:
                log.exception("recovering checkout attempt %s failed", attempt.id)
        return len(stale)
