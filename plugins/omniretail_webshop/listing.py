"""Google Merchant Center product data, rendered once per publication.

Spec: https://support.google.com/merchants/answer/7052112 (required: id, title, description, link,
image_link, availability, price as ``"15.00 USD"``; brand, gtin/mpn, condition; item_group_id
for variants).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.catalog import Product
from omniretail.domain.errors import InvalidValue
from omniretail.domain.inventory import Availability, availability_for

#: Our availability words in Google's vocabulary.
GOOGLE_AVAILABILITY = {
    Availability.IN_STOCK: "in_stock",
    Availability.LOW_STOCK: "in_stock",
    Availability.OUT_OF_STOCK: "out_of_stock",
    Availability.PREORDER: "preorder",
    Availability.BACKORDER: "backorder",
    Availability.DISCONTINUED: "out_of_stock",
}

#: The columns of the TSV feed and the elements of the RSS feed, in order.
FIELDS = (
    "id",
    "item_group_id",
    "title",
    "description",
    "link",
    "image_link",
    "availability",
    "price",
    "condition",
    "brand",
    "gtin",
    "mpn",
    "identifier_exists",
)


class GoogleItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    title: str
    description: str
    link: str
    image_link: str
    availability: str
    price: str
    condition: str
    item_group_id: str | None = None
    brand: str | None = None
    gtin: str | None = None
    mpn: str | None = None
    identifier_exists: str | None = None


def product_url(template: str, product: Product, sku: str) -> str:
    return template.replace("{handle}", product.handle).replace("{sku}", sku).replace("{product_id}", product.id)


def render(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> list[GoogleItem]:
    """One item per variant (Google lists SKUs), grouped by the product id."""
    currency = channel.kernel.config.store.currency
    low = channel.kernel.config.inventory.low_stock_threshold
    if not product.description.strip():
        raise InvalidValue("Google requires a description", field="description")
    items = []
    for variant in product.variants:
        image = variant.media[0].url if variant.media else product.image
        if image is None:
            raise InvalidValue(f"Google requires an image_link for {variant.sku!r}", field="media")
        price = variant.price_for(currency)
        if price is None:
            raise InvalidValue(f"{variant.sku!r} has no price in {currency}", field="prices")
        title = product.title if not variant.title else f"{product.title} - {variant.title}"
        has_id = bool(variant.gtin or variant.mpn)
        items.append(
            GoogleItem(
                id=variant.sku,
                item_group_id=product.id if len(product.variants) > 1 else None,
                title=title[:150],
                description=product.description[:5000],
                link=product_url(channel.settings.product_url, product, variant.sku),
                image_link=image,
                availability=GOOGLE_AVAILABILITY[availability_for(stock.get(variant.sku, 0), low)],
                price=price.feed_string(),
                condition=product.condition.value,
                brand=product.brand,
                gtin=variant.gtin,
                mpn=variant.mpn,
                identifier_exists=None if has_id and product.brand else "no",
            )
        )
    return items
