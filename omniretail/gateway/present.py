"""Domain objects to wire schemas."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from omniretail.domain.cart import Cart
from omniretail.domain.catalog import Product
from omniretail.domain.customer import Customer
from omniretail.domain.events import Event, event_payload
from omniretail.domain.inventory import availability_for
from omniretail.domain.order import Order
from omniretail.domain.payment import LedgerEntry, Payment, Wallet
from omniretail.gateway.problems import ApiError
from omniretail.gateway.schemas import (
    CartLineOut,
    CartOut,
    CustomerOut,
    EventOut,
    IdentityOut,
    LedgerEntryOut,
    MediaOut,
    MoneyOut,
    OfferOut,
    OrderLineOut,
    OrderOut,
    PaymentOut,
    ProductOut,
    VariantOut,
    WalletOut,
)
from omniretail.services.pricing import PricedCart

_EVENT_BASE = {"id", "occurred_at", "channel", "actor", "customer_id", "type"}


def product_out(
    product: Product, currency: str, tier: str | None, available: Mapping[str, int], low_stock: int = 3
) -> ProductOut:
    variants = []
    for v in product.variants:
        price = v.price_for(currency, tier)
        listed = v.price_for(currency)
        units = available.get(v.sku, 0)
        variants.append(
            VariantOut(
                sku=v.sku,
                title=v.title,
                gtin=v.gtin,
                mpn=v.mpn,
                attributes=v.attributes,
                price=MoneyOut(price.amount, currency) if price else None,
                list_price=MoneyOut(listed.amount, currency) if listed else None,
                availability=availability_for(units, low_stock).value,
                available=units,
            )
        )
    return ProductOut(
        id=product.id,
        handle=product.handle,
        title=product.title,
        description=product.description,
        brand=product.brand,
        condition=product.condition.value,
        category=product.category,
        media=[MediaOut(m.url, m.alt) for m in product.media],
        attributes=product.attributes,
        variants=variants,
        revision=product.revision,
    )


def cart_out(cart: Cart, priced: PricedCart) -> CartOut:
    return CartOut(
        id=cart.id,
        status=cart.status.value,
        currency=cart.currency,
        channel=cart.channel,
        channels=list(cart.channels),
        customer_id=cart.customer_id,
        coupon=cart.coupon,
        lines=[
            CartLineOut(
                sku=x.sku,
                product_id=x.product_id,
                title=x.title,
                quantity=x.quantity,
                unit_price=x.unit_price,
                list_price=x.list_price,
                discount=x.discount,
                total=x.total,
            )
            for x in priced.lines
        ],
        offers=[OfferOut(o.code, o.title, o.amount, o.sku) for o in priced.offers],
        subtotal=priced.subtotal,
        discount=priced.discount,
        total=priced.total,
        version=cart.version,
        unavailable=list(priced.unavailable),
    )


def order_out(order: Order) -> OrderOut:
    return OrderOut(
        id=order.id,
        number=order.number,
        status=order.status.value,
        channel=order.channel,
        external_ref=order.external_ref,
        customer_id=order.customer_id,
        fulfilment=order.fulfilment.value,
        pickup_location_id=order.pickup_location_id,
        ready_by=order.ready_by,
        currency=order.currency,
        subtotal=order.subtotal,
        discount=order.discount,
        total=order.total,
        lines=[
            OrderLineOut(
                line_no=x.line_no,
                sku=x.sku,
                title=x.title,
                quantity=x.quantity,
                unit_price=x.unit_price,
                total=x.total,
                location_id=x.location_id,
                quantity_returned=x.quantity_returned,
                quantity_refunded=x.quantity_refunded,
            )
            for x in order.lines
        ],
        return_state=order.return_state,
        attribution=order.attribution,
        created_at=order.created_at,
        updated_at=order.updated_at,
        payments=[payment_out(p) for p in order.payments],
    )


def payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        provider=payment.provider,
        status=payment.status.value,
        capture=payment.capture_mode.value,
        currency=payment.currency,
        amount=payment.amount,
        authorized=payment.authorized,
        captured=payment.captured,
        refunded=payment.refunded,
        refund_pending=payment.refund_pending,
        created_at=payment.created_at,
    )


def wallet_out(wallet: Wallet, tier: str | None, ledger: list[LedgerEntry], next_cursor: str | None) -> WalletOut:
    return WalletOut(
        customer_id=wallet.customer_id,
        currency=wallet.currency,
        balance=wallet.balance,
        points=wallet.points,
        tier=tier,
        lifetime_spend=wallet.lifetime_spend,
        ledger=[
            LedgerEntryOut(
                seq=e.seq,
                kind=e.kind.value,
                amount=e.amount,
                points=e.points,
                balance_after=e.balance_after,
                points_after=e.points_after,
                reference=e.reference,
                order_id=e.order_id,
                channel=e.channel,
                note=e.note,
                created_at=e.created_at,
            )
            for e in ledger
        ],
        next_cursor=next_cursor,
    )


def event_out(seq: int, event: Event) -> EventOut:
    data = {k: v for k, v in event_payload(event).items() if k not in _EVENT_BASE}
    return EventOut(
        seq=seq,
        id=event.id,
        type=event.type,
        occurred_at=event.occurred_at,
        channel=event.channel,
        actor=event.actor,
        data=data,
    )


def customer_out(customer: Customer) -> CustomerOut:
    return CustomerOut(
        id=customer.id,
        name=customer.name,
        tier=customer.tier,
        identities=[IdentityOut(i.kind.value, i.value) for i in customer.identities],
        created_at=customer.created_at,
    )


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad-cursor", "cursor is not one this API gave out", field="query.cursor") from None
    if not raw or len(raw) > 100 or not raw.isprintable():
        raise ApiError(400, "bad-cursor", "cursor is not one this API gave out", field="query.cursor")
    return raw
