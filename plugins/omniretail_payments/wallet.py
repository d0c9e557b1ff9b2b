"""The loyalty wallet as a payment provider: stored value per customer (``kernel.loyalty``).

Authorizing debits the wallet at once (the ledger reference is ``wallet:<idempotency key>``, so a
repeated authorization debits nothing more); capturing has nothing left to do; a void or a refund
credits the wallet back under its own key. Only for an identified customer: a signed-in customer,
or one a channel identified (a loyalty card at the kiosk), never a guest named by an e-mail.
"""

from __future__ import annotations

from omniretail.domain.payment import CaptureMode, InsufficientFunds, LedgerKind
from omniretail.payment import (
    AuthorizeRequest,
    PaymentContext,
    PaymentProviderSpec,
    PaymentRef,
    ProviderResult,
)

NAME = "wallet"


class WalletProvider:
    def __init__(self, context: PaymentContext) -> None:
        self.kernel = context.kernel
        self.name = context.name

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> ProviderResult:
        loyalty = self.kernel.loyalty
        if request.customer_id is None:
            return ProviderResult.declined("the wallet needs an identified customer")
        if request.currency != loyalty.currency:
            return ProviderResult.declined(f"the wallet holds {loyalty.currency}, not {request.currency}")
        try:
            entry = await loyalty.debit(
                request.customer_id,
                request.amount,
                kind=LedgerKind.PAY,
                reference=f"wallet:{idempotency_key}",
                channel=request.channel,
                actor="customer",
                note=f"checkout of cart {request.cart_id}",
            )
        except InsufficientFunds:
            return ProviderResult.declined("insufficient wallet balance")
        return ProviderResult.approved(provider_ref=f"ledger:{entry.seq}")

    async def capture(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult:
        # The money left the wallet when the payment was authorized.
        return ProviderResult.approved(provider_ref=payment.provider_ref)

    async def void(self, payment: PaymentRef, *, idempotency_key: str) -> ProviderResult:
        loyalty = self.kernel.loyalty
        debit = await loyalty.entry(f"wallet:{payment.authorize_key}")
        if debit is None or debit.amount >= 0:
            return ProviderResult.approved()  # nothing was taken: nothing to give back
        entry = await loyalty.credit(
            debit.customer_id,
            -debit.amount,
            kind=LedgerKind.REFUND,
            reference=f"wallet:{idempotency_key}",
            channel="system",
            actor="system",
            note="authorization released",
            order_id=payment.order_id,
        )
        return ProviderResult.approved(provider_ref=f"ledger:{entry.seq}")

    async def refund(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult:
        if payment.customer_id is None:
            return ProviderResult.declined("the payment has no customer to refund")
        entry = await self.kernel.loyalty.credit(
            payment.customer_id,
            amount,
            kind=LedgerKind.REFUND,
            reference=f"wallet:{idempotency_key}",
            channel="system",
            actor="system",
            note="refund",
            order_id=payment.order_id,
        )
        return ProviderResult.approved(provider_ref=f"ledger:{entry.seq}")


SPEC = PaymentProviderSpec(
    name=NAME,
    title="Loyalty wallet",
    description="stored value per customer, on every channel once the customer is identified",
    settings=None,
    create=WalletProvider,
    capture=CaptureMode.IMMEDIATE,
    requires_customer=True,
)
