"""Pay at pickup: the order is authorized for its total at checkout (no money moves) and captured
when it is collected in store (``capture = "on_fulfilment"``: the ``order_status_changed`` hook).
A cancelled order voids it. Refunds are paid back at the till and recorded here."""

from __future__ import annotations

from omniretail.domain.order import Fulfilment
from omniretail.domain.payment import CaptureMode
from omniretail.payment import (
    AuthorizeRequest,
    PaymentContext,
    PaymentProviderSpec,
    PaymentRef,
    ProviderResult,
)

NAME = "pickup"


class PayAtPickup:
    def __init__(self, context: PaymentContext) -> None:
        self.name = context.name

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> ProviderResult:
        if request.fulfilment is not Fulfilment.PICKUP:
            return ProviderResult.declined("pay at pickup is for pickup orders")
        return ProviderResult.approved(provider_ref=f"in-store:{request.payment_id}")

    async def capture(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult:
        return ProviderResult.approved(provider_ref=payment.provider_ref)

    async def void(self, payment: PaymentRef, *, idempotency_key: str) -> ProviderResult:
        return ProviderResult.approved(provider_ref=payment.provider_ref)

    async def refund(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult:
        return ProviderResult.approved(provider_ref=payment.provider_ref)


SPEC = PaymentProviderSpec(
    name=NAME,
    title="Pay at pickup",
    description="authorized at checkout, paid in store when the order is collected",
    settings=None,
    create=PayAtPickup,
    capture=CaptureMode.ON_FULFILMENT,
    fulfilments=frozenset({Fulfilment.PICKUP}),
)
