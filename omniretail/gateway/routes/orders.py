"""Orders for storefronts: one order, its events, guest lookup. Someone else's order is 404."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter

from omniretail.domain.customer import IdentityKind, normalize_identity
from omniretail.domain.errors import InvalidValue, NotFound
from omniretail.domain.order import Order
from omniretail.gateway.keys import Principal
from omniretail.gateway.present import event_out, order_out
from omniretail.gateway.routes.common import KernelDep, caller, errors
from omniretail.gateway.schemas import EventOut, OrderOut
from omniretail.gateway.security import STOREFRONT
from omniretail.kernel import Kernel


async def visible_order(kernel: Kernel, order_id: str, principal: Principal) -> Order:
    try:
        order = await kernel.orders.get(order_id)
    except NotFound:
        order = None
    if order is None or (
        not principal.is_admin and (order.customer_id is None or order.customer_id != principal.customer_id)
    ):
        raise NotFound(f"no order {order_id!r}", field="order_id")
    return order


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]
    opt = STOREFRONT

    @get(
        "/lookup",
        operation_id="lookupOrder",
        responses=errors(),
        summary="Find a guest order by its number and the e-mail or phone it was placed with",
    )
    async def lookup(
        self,
        kernel: KernelDep,
        number: Annotated[str, QueryParameter(min_length=4, max_length=20)],
        email: Annotated[str | None, QueryParameter(max_length=200)] = None,
        phone: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> OrderOut:
        if not email and not phone:
            raise InvalidValue("give the e-mail or phone used for the order", field="query.email")
        order = await kernel.orders.by_number(number)
        match = False
        if order is not None:
            try:
                if email and order.email:
                    match = normalize_identity(IdentityKind.EMAIL, email) == normalize_identity(
                        IdentityKind.EMAIL, order.email
                    )
                if phone and order.phone and not match:
                    match = normalize_identity(IdentityKind.PHONE, phone) == normalize_identity(
                        IdentityKind.PHONE, order.phone
                    )
            except InvalidValue:
                match = False
        if order is None or not match:
            raise NotFound("no order with that number and contact", field="query.number")
        return order_out(order)

    @get("/{order_id:str}", operation_id="getOrder", responses=errors(), summary="One of the customer's orders")
    async def get_order(self, request: Request[Any, Any, Any], kernel: KernelDep, order_id: FromPath[str]) -> OrderOut:
        return order_out(await visible_order(kernel, order_id, caller(request)))

    @get(
        "/{order_id:str}/events",
        operation_id="listOrderEvents",
        responses=errors(),
        summary="Every step of the order with its channel and actor",
    )
    async def events(
        self, request: Request[Any, Any, Any], kernel: KernelDep, order_id: FromPath[str]
    ) -> list[EventOut]:
        order = await visible_order(kernel, order_id, caller(request))
        return [event_out(seq, e) for seq, e in await kernel.orders.events(order.id)]
