"""The kiosk's routes under ``/channels/<name>/`` (the kiosk key, or an admin key, unless public)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from html import escape
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect, Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from omniretail.channel import ChannelContext
from omniretail.domain.cart import Cart, CartStatus
from omniretail.domain.catalog import Product
from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.errors import CartClosed, DomainError, InvalidValue, NotFound, OutOfStock
from omniretail.domain.inventory import StockLocation, availability_for
from omniretail.domain.order import Fulfilment, Order, OrderStatus
from omniretail.gateway.idempotency import parse_key
from omniretail.gateway.keys import Principal
from omniretail.gateway.present import cart_out, decode_cursor, encode_cursor, order_out
from omniretail.gateway.problems import ApiError
from omniretail.gateway.routes.common import errors
from omniretail.gateway.schemas import MoneyOut, OrderOut
from omniretail.gateway.security import principal_of
from omniretail.services.orders import CheckoutRequest, PaymentChoice
from omniretail_kiosk import handoff
from omniretail_kiosk.schemas import (
    HandoffOut,
    IdentifyBody,
    IdentifyOut,
    KioskCatalogOut,
    KioskCustomerOut,
    KioskOrderBody,
    KioskOrderOut,
    KioskProductOut,
    KioskVariantOut,
    OrderLookupOut,
    QrOut,
    ReturnBody,
    StaffBody,
    StoreOut,
)
from omniretail_kiosk.store import TRANSFER_DELAY, local_inventory_tsv, store_stock

#: The channel a handed-off cart continues on (the shopper's phone is the web shop).
CONTINUE_CHANNEL = "webshop"
_DEFAULT_CART_PAGE = "/channels/webshop/cart/{cart_id}"


class CodeRefused(Exception):
    """A handoff code that opens nothing: the status, title and message of the page to show."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def message_page(title: str, message: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>\n"
    )


def _page(status: int, title: str, message: str) -> Response[str]:
    return Response(
        message_page(title, message),
        status_code=status,
        media_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def store_out(store: StockLocation) -> StoreOut:
    return StoreOut(
        id=store.id,
        name=store.name,
        address=store.address,
        store_code=store.store_code,
        pickup=store.pickup,
        preparation_minutes=store.preparation_minutes,
        transfer_preparation_minutes=store.preparation_minutes + int(TRANSFER_DELAY.total_seconds() // 60),
    )


def build(channel: ChannelContext, store: StockLocation) -> list[Callable[..., Any]]:
    """The route handlers of one kiosk channel standing in ``store``."""
    kernel = channel.kernel
    settings = channel.settings
    name = channel.name
    base_url = kernel.config.store.base_url.rstrip("/")
    currency = kernel.config.store.currency
    low_stock = kernel.config.inventory.low_stock_threshold
    others = tuple(loc for loc in channel.locations if loc != store.id)

    async def kiosk_cart(cart_id: str, principal: Principal) -> Cart:
        """A cart this kiosk may act on: a guest cart, the caller's own, or a customer's cart that
        was given to them at this kiosk. Anything else is 404, like a cart that does not exist."""
        cart = await kernel.carts.get(cart_id)
        if (
            cart.customer_id is None
            or principal.is_admin
            or cart.customer_id == principal.customer_id
            or name in cart.channels
        ):
            return cart
        raise NotFound(f"no cart {cart_id!r}", field="cart_id")

    async def store_order(ref: str) -> Order:
        """A pickup order at this store, by id or by number; 404 for any other order."""
        order: Order | None
        if ref.startswith("ord_"):
            try:
                order = await kernel.orders.get(ref)
            except NotFound:
                order = None
        else:
            order = await kernel.orders.by_number(ref) if 4 <= len(ref) <= 20 else None
        if order is None or order.pickup_location_id != store.id:
            raise NotFound(f"no pickup order {ref!r} at {store.name}", field="order_id")
        return order

    # -- browse --------------------------------------------------------------------------------

    @get(
        "/catalog",
        operation_id="kioskCatalog",
        responses=errors(),
        summary="Products with units at this store, units orderable from elsewhere, and pickup times",
    )
    async def catalog(
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        q: Annotated[str | None, QueryParameter(max_length=100, description="words in the title")] = None,
    ) -> KioskCatalogOut:
        snapshot = await kernel.catalog.snapshot()
        start = snapshot.index_after(decode_cursor(cursor))
        needle = (q or "").strip().casefold()
        page: list[Product] = []
        more = False
        for product in snapshot.products[start:]:
            if needle and needle not in product.title.casefold():
                continue
            if len(page) == limit:
                more = True
                break
            page.append(product)
        stock = await store_stock(kernel, [v.sku for p in page for v in p.variants], store.id, channel.locations)
        here = store_out(store)
        items = []
        for product in page:
            variants = []
            for v in product.variants:
                s = stock[v.sku]
                price = v.price_for(currency)
                ready = (
                    here.preparation_minutes
                    if s.here > 0
                    else here.transfer_preparation_minutes
                    if s.elsewhere > 0
                    else None
                )
                variants.append(
                    KioskVariantOut(
                        sku=v.sku,
                        title=v.title,
                        gtin=v.gtin,
                        price=MoneyOut(price.amount, currency) if price else None,
                        availability=availability_for(s.here, low_stock).value,
                        in_store=s.here,
                        elsewhere=s.elsewhere,
                        orderable=s.orderable,
                        endless_aisle=s.here <= 0 < s.elsewhere,
                        pickup_ready_minutes=ready,
                    )
                )
            items.append(
                KioskProductOut(
                    id=product.id,
                    handle=product.handle,
                    title=product.title,
                    description=product.description,
                    brand=product.brand,
                    image=product.image,
                    variants=variants,
                )
            )
        return KioskCatalogOut(
            store=here,
            items=items,
            next_cursor=encode_cursor(page[-1].id) if more and page else None,
        )

    @get(
        "/feeds/local-inventory.tsv",
        opt={"token_query": True},
        operation_id="kioskLocalInventoryTsv",
        responses=errors(),
        media_type="text/tab-separated-values",
        summary="Google local inventory feed, TSV: every active SKU at every store with a store code (live)",
    )
    async def local_inventory() -> Stream:
        return Stream(
            local_inventory_tsv(kernel),
            media_type="text/tab-separated-values; charset=utf-8",
            headers={"Cache-Control": "private, max-age=60"},
        )

    # -- click and collect, endless aisle ----------------------------------------------------

    async def cart_from_lines(body: KioskOrderBody, principal: Principal, candidates: tuple[str, ...]) -> Cart:
        """A kiosk cart holding ``body.lines``, made only once every line is known to be sellable
        and in stock somewhere it may come from (so a refused order leaves nothing behind)."""
        snapshot = await kernel.catalog.snapshot()
        wanted: dict[str, int] = {}
        for i, line in enumerate(body.lines):
            found = snapshot.by_sku.get(line.sku)
            if found is None or found[1].price_for(currency) is None:
                raise InvalidValue(f"SKU {line.sku!r} is not for sale", field=f"lines[{i}].sku")
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
            if wanted[line.sku] > 999:
                raise InvalidValue(f"at most 999 units of {line.sku!r}", field=f"lines[{i}].quantity")
        best = dict.fromkeys(wanted, 0)
        for level in await kernel.inventory.levels(list(wanted), list(candidates)):
            best[level.sku] = max(best[level.sku], level.available)
        for sku, quantity in wanted.items():
            if best[sku] < quantity:
                raise OutOfStock(sku, quantity)
        cart = await kernel.carts.create(channel=name, customer_id=principal.customer_id)
        for sku, quantity in wanted.items():
            cart = await kernel.carts.set_quantity(cart.id, sku, quantity, channel=name)
        return cart

    @post(
        "/orders",
        operation_id="kioskPlaceOrder",
        status_code=HTTP_201_CREATED,
        responses=errors(400),
        opt={"idempotency": "required", "idempotency_resumable": True},
        summary="Order at the kiosk: pickup at this store (click and collect) or shipped (endless aisle)",
    )
    async def place_order(request: Request[Any, Any, Any], data: JSONBody[KioskOrderBody]) -> KioskOrderOut:
        principal = principal_of(request)
        if (data.cart_id is None) == (not data.lines):
            raise InvalidValue("give either cart_id or lines", field="cart_id")
        if data.fulfilment == "pickup":
            fulfilment, pickup_id = Fulfilment.PICKUP, store.id
            sources: tuple[str, ...] = channel.locations
            candidates = (store.id, *others) if data.allow_transfer else (store.id,)
        else:
            if not others:
                raise InvalidValue("this kiosk has no other location to ship from", field="fulfilment")
            fulfilment, pickup_id, sources, candidates = Fulfilment.SHIP, None, others, others
        if data.cart_id is not None:
            cart = await kiosk_cart(data.cart_id, principal)
        else:
            if principal.customer_id is None and not (data.email or data.phone):
                raise InvalidValue("a guest order needs an email or phone", field="email")
            cart = await cart_from_lines(data, principal, candidates)
        try:
            order = await kernel.orders.checkout(
                CheckoutRequest(
                    cart_id=cart.id,
                    channel=name,
                    fulfilment=fulfilment,
                    pickup_location_id=pickup_id,
                    email=data.email,
                    phone=data.phone,
                    customer_id=principal.customer_id,
                    locations=sources,
                    allow_transfer=data.allow_transfer,
                    payment=PaymentChoice(provider=data.payment.provider, token=data.payment.token)
                    if data.payment
                    else None,
                    idempotency_key=parse_key(key) if (key := request.headers.get("idempotency-key")) else None,
                )
            )
        except CartClosed:
            # A retry taking over a key whose first attempt died after committing: finish it.
            existing = None
            if request.scope.get("state", {}).get("idempotency_takeover"):
                existing = await kernel.orders.by_cart(cart.id)
            if existing is None:
                raise
            order = existing
        return KioskOrderOut(
            order=order_out(order),
            ready_by=order.ready_by,
            pickup_store=store_out(store) if order.fulfilment is Fulfilment.PICKUP else None,
            from_elsewhere=[x.sku for x in order.lines if x.location_id != store.id],
        )

    @get(
        "/orders/{order_ref:str}",
        operation_id="kioskGetOrder",
        responses=errors(),
        summary="A pickup order at this store, by id or number (for the pickup desk)",
    )
    async def get_order(order_ref: FromPath[str]) -> OrderOut:
        return order_out(await store_order(order_ref))

    async def staff_transition(
        request: Request[Any, Any, Any], ref: str, target: OrderStatus, body: StaffBody | None
    ) -> OrderOut:
        principal = principal_of(request)
        order = await store_order(ref)
        changed = await kernel.orders.transition(
            order.id,
            target,
            channel=name,
            actor=f"staff:{principal.key_id}",
            note=body.note if body else "",
        )
        return order_out(changed)

    @post(
        "/orders/{order_ref:str}/ready",
        operation_id="kioskOrderReady",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Staff: the pickup order is ready for pickup",
    )
    async def ready(
        request: Request[Any, Any, Any], order_ref: FromPath[str], data: JSONBody[StaffBody | None] = None
    ) -> OrderOut:
        return await staff_transition(request, order_ref, OrderStatus.READY_FOR_PICKUP, data)

    @post(
        "/orders/{order_ref:str}/collected",
        operation_id="kioskOrderCollected",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="Staff: the shopper collected the order",
    )
    async def collected(
        request: Request[Any, Any, Any], order_ref: FromPath[str], data: JSONBody[StaffBody | None] = None
    ) -> OrderOut:
        return await staff_transition(request, order_ref, OrderStatus.COLLECTED, data)

    @get(
        "/lookup",
        operation_id="kioskLookupOrders",
        responses=errors(),
        summary="Orders by number or by loyalty card, whatever channel they came from",
    )
    async def lookup(
        number: Annotated[str | None, QueryParameter(min_length=4, max_length=20)] = None,
        loyalty_card: Annotated[str | None, QueryParameter(min_length=1, max_length=40)] = None,
    ) -> OrderLookupOut:
        if (number is None) == (loyalty_card is None):
            raise InvalidValue("give either number or loyalty_card", field="query.number")
        if number is not None:
            order = await kernel.orders.by_number(number)
            if order is None:
                raise NotFound(f"no order {number!r}", field="query.number")
            return OrderLookupOut(orders=[order_out(order)])
        customer = await kernel.customers.find(Identity(kind=IdentityKind.LOYALTY_CARD, value=loyalty_card or ""))
        if customer is None:
            raise NotFound("no customer with that loyalty card", field="query.loyalty_card")
        return OrderLookupOut(orders=[order_out(o) for o in await kernel.orders.for_customer(customer.id, limit=20)])

    @post(
        "/returns",
        operation_id="kioskReturn",
        status_code=HTTP_200_OK,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Take back an item bought on any channel; the units go back to this store",
    )
    async def take_back(request: Request[Any, Any, Any], data: JSONBody[ReturnBody]) -> OrderOut:
        principal = principal_of(request)
        order = await kernel.orders.by_number(data.order_number)
        if order is None:
            raise NotFound(f"no order {data.order_number!r}", field="order_number")
        lines = [x for x in order.lines if x.sku == data.sku and x.returnable > 0]
        if not lines:
            raise InvalidValue(f"order {order.number} has nothing of {data.sku!r} left to return", field="sku")
        returned = await kernel.orders.return_line(
            order.id,
            lines[0].line_no,
            data.quantity,
            location_id=store.id,
            channel=name,
            actor=f"staff:{principal.key_id}",
        )
        return order_out(returned)

    # -- identify ------------------------------------------------------------------------------

    @post(
        "/identify",
        operation_id="kioskIdentify",
        status_code=HTTP_200_OK,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Identify the shopper by loyalty card (the one customer record); optionally give them a cart",
    )
    async def identify(request: Request[Any, Any, Any], data: JSONBody[IdentifyBody]) -> IdentifyOut:
        principal = principal_of(request)
        card = Identity(kind=IdentityKind.LOYALTY_CARD, value=data.loyalty_card).normalized()
        cart = await kiosk_cart(data.cart_id, principal) if data.cart_id else None
        known = await kernel.customers.find(card)
        if cart is not None:  # checked before anything is written
            cart.require_open()
            owner = principal.customer_id or (known.id if known else None)
            if cart.customer_id is not None and cart.customer_id != owner:
                raise NotFound(f"no cart {cart.id!r}", field="cart_id")
        if principal.customer_id is not None:
            # A signed-in shopper scanning their card: link it to their record.
            customer = await kernel.customers.link(principal.customer_id, card, channel=name)
        else:
            customer = await kernel.customers.resolve([card], channel=name, name=data.name, actor="customer")
        priced_cart = None
        if cart is not None:
            given = await kernel.carts.attach_customer(cart.id, customer.id, channel=name)
            priced_cart = cart_out(given, await kernel.carts.price(given, customer))
        return IdentifyOut(
            customer=KioskCustomerOut(
                id=customer.id,
                name=customer.name,
                tier=customer.tier,
                loyalty_card=card.value,
            ),
            created=known is None and principal.customer_id is None,
            cart=priced_cart,
        )

    # -- QR handoff ----------------------------------------------------------------------------

    def handoff_url(code: str) -> str:
        return f"{base_url}/channels/{name}/handoff/{code}"

    def qr(url: str, code: str | None) -> QrOut:
        return QrOut(
            url=url,
            svg=handoff.qr_svg(url),
            png_base64=base64.b64encode(handoff.qr_png(url)).decode(),
            svg_url=f"{handoff_url(code)}/qr.svg" if code else None,
            png_url=f"{handoff_url(code)}/qr.png" if code else None,
        )

    @post(
        "/carts/{cart_id:str}/handoff",
        operation_id="kioskCartHandoff",
        status_code=HTTP_200_OK,
        responses=errors(),
        summary="A QR code that continues this cart on the shopper's phone",
    )
    async def start_handoff(request: Request[Any, Any, Any], cart_id: FromPath[str]) -> HandoffOut:
        cart = await kiosk_cart(cart_id, principal_of(request))
        cart.require_open()
        if not cart.lines:
            raise InvalidValue("the cart is empty: nothing to hand off", field="cart_id")
        checkout = None
        if CONTINUE_CHANNEL in kernel.channels:
            checkout = handoff.checkout_url(base_url, cart.lines, cart.coupon, name)
        code = expires_at = None
        if settings.handoff_secret is not None:
            expires_at = kernel.clock() + timedelta(minutes=settings.handoff_minutes)
            code = handoff.sign(settings.handoff_secret, name, cart.id, expires_at)
        signed = handoff_url(code) if code else None
        target = signed or checkout
        if target is None:
            raise ApiError(
                409,
                "handoff-unavailable",
                "this cart cannot be handed off: set channels.kiosk.handoff_secret, or enable the web shop "
                "(whose checkout URL takes at most 50 lines)",
                field="cart_id",
            )
        return HandoffOut(
            cart_id=cart.id,
            handoff_url=signed,
            expires_at=expires_at.replace(microsecond=0) if expires_at else None,
            checkout_url=checkout,
            qr=qr(target, code),
        )

    def continue_url(cart_id: str) -> str:
        template = settings.continue_url
        if template is None:
            webshop = kernel.channels.get(CONTINUE_CHANNEL)
            template = getattr(getattr(webshop, "settings", None), "storefront_cart_url", None)
        if template is None:
            template = base_url + _DEFAULT_CART_PAGE
        return str(template).replace("{cart_id}", cart_id)

    def cart_of_code(code: str) -> str:
        """The cart id of a genuine, unexpired code; ``CodeRefused`` saying why not otherwise."""
        if settings.handoff_secret is None:
            raise CodeRefused(404, "Not found", "This kiosk does not hand off carts by code.")
        try:
            cart_id, _expires_at = handoff.verify(settings.handoff_secret, name, code, kernel.clock())
        except handoff.ExpiredCode:
            raise CodeRefused(410, "This code has expired", "Ask the kiosk for a new code and scan it again.") from None
        except handoff.BadCode:
            raise CodeRefused(400, "This code is not valid", "Scan the code on the kiosk screen again.") from None
        return cart_id

    @get(
        "/handoff/{code:str}",
        opt={"public": True},
        operation_id="kioskHandoffOpen",
        media_type="text/html",
        responses={
            code: ResponseSpec(data_container=str, media_type="text/html", description="An HTML page saying why")
            for code in (400, 404, 409, 410)
        },
        summary="Open a signed handoff code: the same cart continues on the web shop (303 to the cart page)",
    )
    async def open_handoff(code: FromPath[str]) -> Response[str] | Redirect:
        try:
            cart = await kernel.carts.get(cart_of_code(code))
            if cart.status is not CartStatus.OPEN:
                return _page(409, "This cart is closed", "It was checked out already; start a new one.")
            await kernel.carts.touch(cart.id, channel=CONTINUE_CHANNEL)
        except CodeRefused as refused:
            return _page(refused.status, refused.title, refused.message)
        except NotFound:
            return _page(404, "Not found", "This cart does not exist.")
        except DomainError as exc:
            return _page(409, "This cart cannot be continued", exc.message)
        return Redirect(continue_url(cart.id), status_code=303, headers={"Cache-Control": "no-store"})

    def code_target(code: str) -> str:
        try:
            cart_of_code(code)
        except CodeRefused as refused:
            raise ApiError(refused.status, "handoff-code", refused.message, field="path.code") from None
        return handoff_url(code)

    @get(
        "/handoff/{code:str}/qr.svg",
        opt={"public": True},
        operation_id="kioskHandoffQrSvg",
        media_type="image/svg+xml",
        summary="The QR code of a signed handoff code, as SVG",
    )
    async def qr_svg(code: FromPath[str]) -> Response[str]:
        svg = handoff.qr_svg(code_target(code))
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    @get(
        "/handoff/{code:str}/qr.png",
        opt={"public": True},
        operation_id="kioskHandoffQrPng",
        media_type="image/png",
        summary="The QR code of a signed handoff code, as PNG",
    )
    async def qr_png(code: FromPath[str]) -> Response[bytes]:
        png = handoff.qr_png(code_target(code))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    return [
        catalog,
        local_inventory,
        place_order,
        get_order,
        ready,
        collected,
        lookup,
        take_back,
        identify,
        start_handoff,
        open_handoff,
        qr_svg,
        qr_png,
    ]
