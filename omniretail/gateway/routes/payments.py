"""Back office for money: refunds without a return, wallet top-ups and adjustments, checkout
attempts. Every route needs a key with the ``admin`` scope. (Returns, which refund too, are
``POST /v1/admin/orders/{id}/returns``; the customer's own wallet is ``GET
/v1/customers/me/wallet``.)"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from omniretail.domain.errors import InvalidValue
from omniretail.domain.ids import new_id
from omniretail.domain.payment import LedgerKind
from omniretail.gateway.idempotency import parse_key
from omniretail.gateway.present import order_out
from omniretail.gateway.routes.common import KernelDep, caller, errors
from omniretail.gateway.routes.customers import wallet_page
from omniretail.gateway.schemas import CheckoutAttemptOut, OrderOut, RefundBody, WalletChange, WalletOut
from omniretail.gateway.security import ADMIN

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]


class PaymentAdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    opt = ADMIN

    @post(
        "/orders/{order_id:str}/refunds",
        operation_id="adminRefundOrder",
        status_code=HTTP_200_OK,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Give money back to the order's payments without a return (at most what is left captured)",
    )
    async def refund(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        order_id: FromPath[str],
        data: JSONBody[RefundBody],
    ) -> OrderOut:
        principal = caller(request)
        await kernel.payments.refund_order(
            order_id,
            data.amount,
            reason=data.reason or "refund",
            channel=principal.channel,
            actor=f"staff:{principal.key_id}",
        )
        return order_out(await kernel.orders.get(order_id))

    @get(
        "/checkout-attempts/{attempt_id:str}",
        operation_id="adminGetCheckoutAttempt",
        responses=errors(),
        summary="A checkout with payment and where it stands (reserving, authorizing, completed, ...)",
    )
    async def attempt(self, kernel: KernelDep, attempt_id: FromPath[str]) -> CheckoutAttemptOut:
        found = await kernel.checkout.attempt(attempt_id)
        return CheckoutAttemptOut(
            id=found.id,
            cart_id=found.cart_id,
            status=found.status.value,
            channel=found.channel,
            customer_id=found.customer_id,
            currency=found.currency,
            total=found.total,
            payment_id=found.payment_id,
            order_id=found.order_id,
            reason=found.reason,
            reservations=[line.reservation_id for line in found.lines],
            expires_at=found.expires_at,
            created_at=found.created_at,
            updated_at=found.updated_at,
        )

    @get(
        "/customers/{customer_id:str}/wallet",
        operation_id="adminGetCustomerWallet",
        responses=errors(),
        summary="A customer's wallet balance, points and tier, with the ledger (newest first)",
    )
    async def wallet(
        self,
        kernel: KernelDep,
        customer_id: FromPath[str],
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
    ) -> WalletOut:
        return await wallet_page(kernel, customer_id, limit, cursor)

    @post(
        "/customers/{customer_id:str}/wallet",
        operation_id="adminChangeCustomerWallet",
        status_code=HTTP_200_OK,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Top up or adjust a customer's wallet (a ledger entry; never below zero)",
    )
    async def change_wallet(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        customer_id: FromPath[str],
        data: JSONBody[WalletChange],
    ) -> WalletOut:
        principal = caller(request)
        customer = await kernel.customers.get(customer_id)
        if data.amount == 0:
            raise InvalidValue("amount must not be 0", field="amount")
        if data.kind == "top_up" and data.amount < 0:
            raise InvalidValue("a top-up adds stored value: use an adjustment to take it away", field="amount")
        key = request.headers.get("idempotency-key")
        # With an Idempotency-Key the ledger entry is idempotent on it too, beyond the stored reply.
        reference = f"admin:{principal.key_id}:{parse_key(key) if key else new_id('adm')}"
        kind = LedgerKind.TOP_UP if data.kind == "top_up" else LedgerKind.ADJUSTMENT
        change = kernel.loyalty.credit if data.amount > 0 else kernel.loyalty.debit
        await change(
            customer.id,
            abs(data.amount),
            kind=kind,
            reference=reference,
            channel=principal.channel,
            actor=f"staff:{principal.key_id}",
            note=data.note,
        )
        return await wallet_page(kernel, customer.id, 20, None)
