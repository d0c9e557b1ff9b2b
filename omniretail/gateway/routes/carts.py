"""Carts and checkout. A cart belongs to the channel that made it until it moves: any channel
may continue it (the cart records every channel it passed through). A cart attached to a
customer is visible to that customer only; anyone else gets 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from omniretail.domain.cart import Cart
from omniretail.domain.errors import CartClosed, NotFound
from omniretail.gateway.idempotency import parse_key
from omniretail.gateway.keys import Principal
from omniretail.gateway.present import cart_out, order_out
from omniretail.gateway.routes.common import KernelDep, caller, channel_locations, errors
from omniretail.gateway.schemas import (
    CartCreate,
    CartOut,
    CheckoutBody,
    CouponSet,
    HandoffBody,
    HandoffOut,
    LineAdd,
    LineSet,
    OrderOut,
)
from omniretail.gateway.security import STOREFRONT, require_customer
from omniretail.kernel import Kernel
from omniretail.services.orders import CheckoutRequest, PaymentChoice


def can_see(principal: Principal) -> Callable[[Cart], bool]:
    """A customer's cart is theirs alone (and the back office's); a guest cart is whoever's
    holds its id."""

    def visible(cart: Cart) -> bool:
        return not cart.customer_id or cart.customer_id == principal.customer_id or principal.is_admin

    return visible


async def visible_cart(kernel: Kernel, cart_id: str, principal: Principal) -> Cart:
    cart = await kernel.carts.get(cart_id)
    if not can_see(principal)(cart):
        raise NotFound(f"no cart {cart_id!r}", field="cart_id")
    return cart


async def render(kernel: Kernel, cart: Cart) -> CartOut:
    customer = await kernel.customers.get(cart.customer_id) if cart.customer_id else None
    return cart_out(cart, await kernel.carts.price(cart, customer))


class CartController(Controller):
    path = "/v1/carts"
    tags = ["carts"]
    opt = STOREFRONT

    @post(
        "/",
        operation_id="createCart",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Create a cart on the caller's channel",
    )
    async def create(
        self, request: Request[Any, Any, Any], kernel: KernelDep, data: JSONBody[CartCreate | None] = None
    ) -> CartOut:
        principal = caller(request)
        body = data or CartCreate()
        cart = await kernel.carts.create(
            channel=principal.channel,
            customer_id=principal.customer_id,
            currency=body.currency,
            attribution=body.attribution,
        )
        return await render(kernel, cart)

    @get(
        "/{cart_id:str}",
        operation_id="getCart",
        responses=errors(),
        summary="A cart, priced now by the server",
    )
    async def get_cart(self, request: Request[Any, Any, Any], kernel: KernelDep, cart_id: FromPath[str]) -> CartOut:
        return await render(kernel, await visible_cart(kernel, cart_id, caller(request)))

    @post(
        "/{cart_id:str}/lines",
        operation_id="addCartLine",
        status_code=HTTP_200_OK,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Add units of a SKU (adds to an existing line)",
    )
    async def add_line(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        cart_id: FromPath[str],
        data: JSONBody[LineAdd],
    ) -> CartOut:
        principal = caller(request)
        cart = await kernel.carts.set_quantity(
            cart_id, data.sku, data.quantity, channel=principal.channel, add=True, visible=can_see(principal)
        )
        return await render(kernel, cart)

    @put(
        "/{cart_id:str}/lines/{sku:str}",
        operation_id="setCartLine",
        responses=errors(),
        summary="Set a line's quantity (0 removes it)",
    )
    async def set_line(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        cart_id: FromPath[str],
        sku: FromPath[str],
        data: JSONBody[LineSet],
    ) -> CartOut:
        principal = caller(request)
        cart = await kernel.carts.set_quantity(
            cart_id, sku, data.quantity, channel=principal.channel, visible=can_see(principal)
        )
        return await render(kernel, cart)

    @delete(
        "/{cart_id:str}/lines/{sku:str}",
        operation_id="removeCartLine",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Remove a line",
    )
    async def remove_line(
        self, request: Request[Any, Any, Any], kernel: KernelDep, cart_id: FromPath[str], sku: FromPath[str]
    ) -> CartOut:
        principal = caller(request)
        await visible_cart(kernel, cart_id, principal)
        cart = await kernel.carts.set_quantity(cart_id, sku, 0, channel=principal.channel)
        return await render(kernel, cart)

    @put(
        "/{cart_id:str}/coupon",
        operation_id="setCartCoupon",
        responses=errors(),
        summary="Set or clear the coupon code (offers are evaluated by the server)",
    )
    async def set_coupon(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        cart_id: FromPath[str],
        data: JSONBody[CouponSet],
    ) -> CartOut:
        principal = caller(request)
        await visible_cart(kernel, cart_id, principal)
        return await render(kernel, await kernel.carts.set_coupon(cart_id, data.code, channel=principal.channel))

    @post(
        "/{cart_id:str}/customer",
        operation_id="attachCartCustomer",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Give a guest cart to the signed-in customer (merges into their open cart)",
    )
    async def attach(self, request: Request[Any, Any, Any], kernel: KernelDep, cart_id: FromPath[str]) -> CartOut:
        principal = caller(request)
        customer_id = require_customer(request)
        await visible_cart(kernel, cart_id, principal)
        cart = await kernel.carts.attach_customer(cart_id, customer_id, channel=principal.channel)
        return await render(kernel, cart)

    @post(
        "/{cart_id:str}/handoff",
        operation_id="handOffCart",
        status_code=HTTP_201_CREATED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="A short code and QR code that continue this cart on another channel",
    )
    async def hand_off(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        cart_id: FromPath[str],
        data: JSONBody[HandoffBody | None] = None,
    ) -> HandoffOut:
        import segno

        principal = caller(request)
        await visible_cart(kernel, cart_id, principal)
        code, expires = await kernel.carts.hand_off(
            cart_id, channel=principal.channel, minutes=(data or HandoffBody()).minutes
        )
        url = kernel.config.store.handoff_url.replace("{code}", code)
        qr = segno.make(url, error="m")
        return HandoffOut(
            code=code, expires_at=expires, url=url, qr_svg=qr.svg_inline(scale=4), qr_png=qr.png_data_uri(scale=4)
        )

    @post(
        "/handoffs/{code:str}/claim",
        operation_id="claimCartHandoff",
        status_code=HTTP_200_OK,
        responses=errors(410),
        summary="Continue a handed-off cart on the caller's channel (once)",
    )
    async def claim(self, request: Request[Any, Any, Any], kernel: KernelDep, code: FromPath[str]) -> CartOut:
        principal = caller(request)
        cart = await kernel.carts.claim(code, channel=principal.channel, customer_id=principal.customer_id)
        return await render(kernel, cart)

    @post(
        "/{cart_id:str}/checkout",
        operation_id="checkoutCart",
        status_code=HTTP_201_CREATED,
        responses=errors(400, 402),
        opt={"idempotency": "required", "idempotency_resumable": True},
        summary="Turn the cart into an order, paid or not (Idempotency-Key required)",
        description=(
            "With `payment`, stock is held, the provider authorizes the total the server computes, "
            "the order is written and the payment captured. A decline answers 402 `payment-declined` "
            "(no order, stock released). When the provider's answer is not known yet the answer is "
            "409 `payment-pending` with Retry-After, which is not stored: retry with the SAME "
            "Idempotency-Key and the checkout is finished or undone, never charged twice."
        ),
    )
    async def checkout(
        self,
        request: Request[Any, Any, Any],
        kernel: KernelDep,
        cart_id: FromPath[str],
        data: JSONBody[CheckoutBody],
    ) -> OrderOut:
        principal = caller(request)
        key = request.headers.get("idempotency-key")
        if data.payment is not None:
            # A paid checkout may resume an earlier attempt before it reads the cart: check here.
            await visible_cart(kernel, cart_id, principal)
        try:
            order = await kernel.orders.checkout(
                CheckoutRequest(
                    cart_id=cart_id,
                    caller_must_own=not principal.is_admin,
                    channel=principal.channel,
                    fulfilment=data.fulfilment,
                    pickup_location_id=data.pickup_location_id,
                    email=data.email,
                    phone=data.phone,
                    customer_id=principal.customer_id,
                    locations=channel_locations(kernel, principal),
                    payment=PaymentChoice(provider=data.payment.provider, token=data.payment.token)
                    if data.payment
                    else None,
                    idempotency_key=parse_key(key) if key else None,
                )
            )
        except CartClosed:
            # A retry taking over a key whose first attempt died after committing: finish it.
            if request.scope.get("state", {}).get("idempotency_takeover"):
                await visible_cart(kernel, cart_id, principal)
                existing = await kernel.orders.by_cart(cart_id)
                if existing is not None:
                    return order_out(existing)
            raise
        return order_out(order)
