"""Meta and TikTok catalog rows, rendered once per publication (one pair per variant).

* Meta catalog (https://developers.facebook.com/docs/marketing-api/catalog/reference): required
  ``id`` (<= 100 chars), ``title``, ``description`` (plain text), ``availability`` written with
  spaces (``in stock``, ``out of stock``, ``preorder``, ``available for order``, ``discontinued``),
  ``condition`` (``new|refurbished|used``), ``price`` (``"9.99 USD"``), ``link``, ``image_link``
  and one of ``brand`` / ``gtin`` / ``mpn``; ``item_group_id`` groups variants.
* TikTok catalog (https://ads.tiktok.com/help/article/catalog-product-parameters): 9 required
  fields ``sku_id, title, description, availability, condition, price, link, image_link, brand``,
  with the same availability and condition vocabularies as Meta. ``item_group_id``, ``gtin`` and
  ``mpn`` are optional columns.

One publication covers both catalogs, so a product is rejected when either catalog would refuse
it; the reason names the catalog and the missing field.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.catalog import Product
from omniretail.domain.errors import InvalidValue
from omniretail.domain.inventory import Availability, availability_for
from omniretail_social.links import shoppable_link

#: Our availability words in Meta's (and TikTok's) vocabulary: written with spaces.
META_AVAILABILITY = {
    Availability.IN_STOCK: "in stock",
    Availability.LOW_STOCK: "in stock",
    Availability.OUT_OF_STOCK: "out of stock",
    Availability.PREORDER: "preorder",
    Availability.BACKORDER: "available for order",
    Availability.DISPLAY_ONLY: "out of stock",  # cannot be bought online
    Availability.DISCONTINUED: "discontinued",
}

#: Columns of the Meta catalog CSV, in order.
META_FIELDS = (
    "id",
    "title",
    "description",
    "availability",
    "condition",
    "price",
    "link",
    "image_link",
    "brand",
    "gtin",
    "mpn",
    "item_group_id",
)

#: Columns of the TikTok catalog CSV: ``sku_id`` first, then the other required fields, then
#: the optional ones we know.
TIKTOK_FIELDS = (
    "sku_id",
    "title",
    "description",
    "availability",
    "condition",
    "price",
    "link",
    "image_link",
    "brand",
    "item_group_id",
    "gtin",
    "mpn",
)

#: Lengths both catalogs accept.
TITLE_MAX = 150
DESCRIPTION_MAX = 5000


class MetaItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    title: str
    description: str
    availability: str
    condition: str
    price: str
    link: str
    image_link: str
    brand: str | None = None
    gtin: str | None = None
    mpn: str | None = None
    item_group_id: str | None = None


class TikTokItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    sku_id: str
    title: str
    description: str
    availability: str
    condition: str
    price: str
    link: str
    image_link: str
    brand: str
    item_group_id: str | None = None
    gtin: str | None = None
    mpn: str | None = None


class SocialListing(msgspec.Struct, frozen=True, kw_only=True):
    """One variant's rows for both catalogs."""

    meta: MetaItem
    tiktok: TikTokItem


def render(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> list[SocialListing]:
    kernel = channel.kernel
    currency = kernel.config.store.currency
    low = kernel.config.inventory.low_stock_threshold
    description = product.description.strip()
    if not description:
        raise InvalidValue("Meta and TikTok require a description", field="description")
    brand = (product.brand or "").strip() or None
    group = product.id if len(product.variants) > 1 else None
    rows = []
    for variant in product.variants:
        image = variant.media[0].url if variant.media else product.image
        if not image:
            raise InvalidValue(f"Meta and TikTok require an image_link for {variant.sku!r}", field="media")
        price = variant.price_for(currency)
        if price is None:
            raise InvalidValue(f"{variant.sku!r} has no price in {currency}", field="prices")
        if not (brand or variant.gtin or variant.mpn):
            raise InvalidValue(f"Meta requires a brand, gtin or mpn for {variant.sku!r}", field="brand")
        if brand is None:
            raise InvalidValue("TikTok requires a brand", field="brand")
        title = (product.title if not variant.title else f"{product.title} - {variant.title}")[:TITLE_MAX]
        text = description[:DESCRIPTION_MAX]
        availability = META_AVAILABILITY[availability_for(stock.get(variant.sku, 0), low)]
        condition = product.condition.value
        amount = price.feed_string()
        link = shoppable_link(channel, variant.sku)
        rows.append(
            SocialListing(
                meta=MetaItem(
                    id=variant.sku,
                    title=title,
                    description=text,
                    availability=availability,
                    condition=condition,
                    price=amount,
                    link=link,
                    image_link=image,
                    brand=brand,
                    gtin=variant.gtin,
                    mpn=variant.mpn,
                    item_group_id=group,
                ),
                tiktok=TikTokItem(
                    sku_id=variant.sku,
                    title=title,
                    description=text,
                    availability=availability,
                    condition=condition,
                    price=amount,
                    link=link,
                    image_link=image,
                    brand=brand,
                    item_group_id=group,
                    gtin=variant.gtin,
                    mpn=variant.mpn,
                ),
            )
        )
    return rows
