"""HTML the web shop serves itself: product pages (schema.org JSON-LD + Open Graph) and the
plain pages of the checkout URL (its error page and a default cart page)."""

from __future__ import annotations

from html import escape
from typing import Any

import msgspec

from omniretail.domain.catalog import Product, Variant
from omniretail.domain.inventory import Availability
from omniretail.domain.money import Money
from omniretail.services.pricing import PricedCart

SCHEMA_AVAILABILITY = {
    Availability.IN_STOCK: "https://schema.org/InStock",
    Availability.LOW_STOCK: "https://schema.org/LimitedAvailability",
    Availability.OUT_OF_STOCK: "https://schema.org/OutOfStock",
    Availability.PREORDER: "https://schema.org/PreOrder",
    Availability.BACKORDER: "https://schema.org/BackOrder",
    Availability.DISPLAY_ONLY: "https://schema.org/InStoreOnly",
    Availability.DISCONTINUED: "https://schema.org/Discontinued",
}
OG_AVAILABILITY = {
    Availability.IN_STOCK: "in stock",
    Availability.LOW_STOCK: "in stock",
    Availability.OUT_OF_STOCK: "out of stock",
    Availability.PREORDER: "preorder",
    Availability.BACKORDER: "available for order",
    Availability.DISPLAY_ONLY: "out of stock",
    Availability.DISCONTINUED: "discontinued",
}
SCHEMA_CONDITION = {
    "new": "https://schema.org/NewCondition",
    "used": "https://schema.org/UsedCondition",
    "refurbished": "https://schema.org/RefurbishedCondition",
}


def json_ld(product: Product, variant: Variant, price: Money | None, availability: Availability, url: str) -> str:
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": product.title if not variant.title else f"{product.title} - {variant.title}",
        "description": product.description,
        "sku": variant.sku,
        "inProductGroupWithID": product.id,
        "image": [m.url for m in (variant.media or product.media)],
    }
    if variant.gtin:
        data[f"gtin{len(variant.gtin)}" if len(variant.gtin) in (8, 12, 13, 14) else "gtin"] = variant.gtin
    if variant.mpn:
        data["mpn"] = variant.mpn
    if product.brand:
        data["brand"] = {"@type": "Brand", "name": product.brand}
    if price is not None:
        data["offers"] = {
            "@type": "Offer",
            "url": url,
            "priceCurrency": price.currency,
            "price": price.decimal_string(),
            "availability": SCHEMA_AVAILABILITY[availability],
            "itemCondition": SCHEMA_CONDITION[product.condition.value],
        }
    # "</" must not end the script element early.
    return msgspec.json.encode(data).decode().replace("</", "<\\/")


def product_page(
    product: Product, variant: Variant, price: Money | None, availability: Availability, url: str, store_name: str
) -> str:
    name = product.title if not variant.title else f"{product.title} - {variant.title}"
    image = (variant.media or product.media)[0].url if (variant.media or product.media) else None
    meta = [
        ("og:type", "product"),
        ("og:title", name),
        ("og:description", product.description),
        ("og:url", url),
        ("og:site_name", store_name),
    ]
    if image:
        meta.append(("og:image", image))
    if price is not None:
        meta += [("product:price:amount", price.decimal_string()), ("product:price:currency", price.currency)]
    meta += [
        ("product:availability", OG_AVAILABILITY[availability]),
        ("product:condition", product.condition.value),
        ("product:retailer_item_id", variant.sku),
        ("product:item_group_id", product.id),
    ]
    if product.brand:
        meta.append(("product:brand", product.brand))
    tags = "\n".join(f'<meta property="{escape(k)}" content="{escape(v)}">' for k, v in meta)
    price_text = f"{escape(price.decimal_string())} {escape(price.currency)}" if price else "not for sale"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(name)} | {escape(store_name)}</title>
<meta name="description" content="{escape(product.description[:300])}">
<link rel="canonical" href="{escape(url)}">
{tags}
<script type="application/ld+json">{json_ld(product, variant, price, availability, url)}</script>
</head>
<body>
<main>
<h1>{escape(name)}</h1>
{f'<img src="{escape(image)}" alt="{escape(name)}">' if image else ""}
<p>{escape(product.description)}</p>
<p class="price">{price_text}</p>
<p class="availability">{escape(OG_AVAILABILITY[availability])}</p>
</main>
</body>
</html>
"""


def message_page(title: str, message: str, *, status_word: str = "Sorry") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>
<body><main><h1>{escape(status_word)}: {escape(title)}</h1><p>{escape(message)}</p></main></body></html>
"""


def cart_page(cart: PricedCart, store_name: str) -> str:
    rows = "".join(
        f"<tr><td>{escape(line.title)}</td><td>{line.quantity}</td>"
        f"<td>{escape(Money(amount=line.total, currency=cart.currency).decimal_string())}</td></tr>"
        for line in cart.lines
    )
    total = Money(amount=cart.total, currency=cart.currency).decimal_string()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your cart | {escape(store_name)}</title></head>
<body><main><h1>Your cart</h1>
<table><thead><tr><th>Item</th><th>Qty</th><th>Total</th></tr></thead><tbody>{rows}</tbody></table>
<p class="total">Total: {escape(total)} {escape(cart.currency)}</p>
<p class="cart-id">Cart {escape(cart.cart_id)}</p>
</main></body></html>
"""
