"""Customers: sign-up, sign-in (a customer token), me, my orders, my timeline."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from omniretail.gateway.present import (
    customer_out,
    decode_cursor,
    encode_cursor,
    event_out,
    order_out,
    wallet_out,
)
from omniretail.gateway.problems import ApiError
from omniretail.gateway.routes.common import KernelDep, caller, errors
from omniretail.gateway.schemas import (
    CustomerOut,
    EventOut,
    OrderOut,
    Page,
    SessionOut,
    SignIn,
    SignUp,
    WalletOut,
)
from omniretail.gateway.security import CUSTOMER_HEADER, STOREFRONT, require_customer

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]


def int_cursor(cursor: str | None) -> int | None:
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, "bad-cursor", "cursor is not one this API gave out", field="query.cursor")
    return int(raw)


class CustomerController(Controller):
    path = "/v1/customers"
    tags = ["customers"]
    opt = STOREFRONT

    @post(
        "/",
        operation_id="signUp",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Create an account; answers with a customer token",
    )
    async def sign_up(self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[SignUp]) -> SessionOut:
        principal = caller(request)
        customer = await kernel.customers.sign_up(data.email, data.password, name=data.name, channel=principal.channel)
        token = await request.app.state.key_store.open_session(
            customer.id, principal.channel, now=kernel.clock(), hours=kernel.config.gateway.session_hours
        )
        return SessionOut(token=token, customer=customer_out(customer))

    @post(
        "/sessions",
        operation_id="signIn",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        summary="Sign in; send the token back as the Customer-Token header",
    )
    async def sign_in(self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[SignIn]) -> SessionOut:
        principal = caller(request)
        customer = await kernel.customers.authenticate(data.email, data.password)
        token = await request.app.state.key_store.open_session(
            customer.id, principal.channel, now=kernel.clock(), hours=kernel.config.gateway.session_hours
        )
        return SessionOut(token=token, customer=customer_out(customer))

    @delete(
        "/sessions/current",
        operation_id="signOut",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(),
        summary="End this customer session",
    )
    async def sign_out(self, request: Request[Any, Any, Any]) -> None:
        require_customer(request)
        await request.app.state.key_store.close_session(request.headers.get(CUSTOMER_HEADER, ""))

    @get("/me", operation_id="getMe", responses=errors(), summary="The signed-in customer")
    async def me(self, request: Request[Any, Any, Any], kernel: KernelDep) -> CustomerOut:
        return customer_out(await kernel.customers.get(require_customer(request)))

    @get(
        "/me/orders",
        operation_id="listMyOrders",
        responses=errors(),
        summary="The customer's orders, newest first",
    )
    async def my_orders(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
    ) -> Page[OrderOut]:
        customer = await kernel.customers.get(require_customer(request))
        orders = await kernel.orders.for_customer(customer.id, after=decode_cursor(cursor), limit=limit + 1)
        more = len(orders) > limit
        orders = orders[:limit]
        return Page(
            items=[order_out(o) for o in orders],
            next_cursor=encode_cursor(orders[-1].id) if more and orders else None,
        )

    @get(
        "/me/timeline",
        operation_id="getMyTimeline",
        responses=errors(),
        summary="Everything the customer did, on every channel, oldest first",
    )
    async def my_timeline(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        limit: Limit = 50,
        cursor: FromQuery[str | None] = None,
        type_: Annotated[list[str] | None, QueryParameter(name="type", description="event type or prefix")] = None,
        channel: FromQuery[list[str] | None] = None,
    ) -> Page[EventOut]:
        customer_id = require_customer(request)
        return await timeline_page(kernel, customer_id, limit, cursor, type_, channel)

    @get(
        "/me/wallet",
        operation_id="getMyWallet",
        responses=errors(),
        summary="The customer's wallet balance, loyalty points and tier, with the ledger (newest first)",
    )
    async def my_wallet(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        limit: Limit = 20,
        cursor: FromQuery[str | None] = None,
    ) -> WalletOut:
        return await wallet_page(kernel, require_customer(request), limit, cursor)


async def wallet_page(kernel: KernelDep, customer_id: str, limit: int, cursor: str | None) -> WalletOut:
    """The customer's wallet, points and tier, with a page of the ledger (newest first)."""
    customer = await kernel.customers.get(customer_id)
    wallet = await kernel.loyalty.wallet(customer.id)
    entries = await kernel.loyalty.ledger(customer.id, before=int_cursor(cursor), limit=limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    return wallet_out(wallet, customer.tier, entries, encode_cursor(entries[-1].seq) if more and entries else None)


async def timeline_page(
    kernel: KernelDep,
    customer_id: str,
    limit: int,
    cursor: str | None,
    types: list[str] | None,
    channels: list[str] | None,
) -> Page[EventOut]:
    events = await kernel.customers.timeline(
        customer_id, after=int_cursor(cursor), limit=limit + 1, types=types or (), channels=channels or ()
    )
    more = len(events) > limit
    events = events[:limit]
    return Page(
        items=[event_out(seq, e) for seq, e in events],
        next_cursor=encode_cursor(events[-1][0]) if more and events else None,
    )
