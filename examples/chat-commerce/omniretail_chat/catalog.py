"""The catalog in WhatsApp Business form: catalog items, the catalog feed and product list messages.

* ``render``: one ``CatalogItem`` per priced variant (a WhatsApp Business / Meta catalog item:
  ``retailer_id``, ``name``, ``price`` in minor units, ``currency``, ``availability``,
  ``image_url``). It is what ``render_listing`` returns, so the publication pipeline hashes it,
  records it and serves it; a product WhatsApp would refuse is rejected with the reason.
* ``feed``: the published items as a catalog batch (``{"catalog_id", "items": [...]}``), for the
  provider's catalog sync.
* ``product_list``: an interactive product list message (WhatsApp Cloud API
  ``interactive.type = "product_list"``), one section per category, within WhatsApp's limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Literal

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.catalog import Product
from omniretail.domain.errors import InvalidValue
from omniretail_chat.settings import Settings

#: WhatsApp's limits for a product list message.
MAX_SECTIONS = 10
MAX_ITEMS = 30
SECTION_TITLE_MAX = 24
NAME_MAX = 200
DESCRIPTION_MAX = 9999


class CatalogItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One variant as a WhatsApp Business catalog item."""

    retailer_id: str
    name: str
    description: str
    #: Minor units of ``currency`` (``450`` is 4.50 EUR).
    price: int
    currency: str
    availability: Literal["in stock", "out of stock"]
    image_url: str
    #: Groups the variants of one product.
    item_group_id: str
    #: The section of the product list message the item goes in.
    category: str = "Products"
    brand: str | None = None
    url: str | None = None


class Catalog(msgspec.Struct, frozen=True, kw_only=True):
    catalog_id: str
    items: list[CatalogItem]


def render(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> list[CatalogItem]:
    """The catalog items of one product; ``InvalidValue`` rejects it (the pipeline records why)."""
    settings: Settings = channel.settings
    currency = channel.kernel.config.store.currency
    items = []
    for variant in product.variants:
        price = variant.price_for(currency)
        if price is None:
            continue
        image = variant.media[0].url if variant.media else product.image
        if image is None:
            raise InvalidValue(f"{product.handle!r} has no image (WhatsApp catalog items need one)", field="media")
        name = product.title if not variant.title else f"{product.title} ({variant.title})"
        items.append(
            CatalogItem(
                retailer_id=variant.sku,
                name=name[:NAME_MAX],
                description=(product.description or product.title)[:DESCRIPTION_MAX],
                price=price.amount,
                currency=price.currency,
                availability="in stock" if stock.get(variant.sku, 0) > 0 else "out of stock",
                image_url=image,
                item_group_id=product.handle,
                category=(product.category or "products").replace("-", " ").capitalize(),
                brand=product.brand,
                url=settings.product_url.replace("{sku}", variant.sku) if settings.product_url else None,
            )
        )
    if not items:
        raise InvalidValue(f"no variant of {product.handle!r} has a price in {currency}", field="prices")
    return items


_items = msgspec.json.Decoder(list[CatalogItem])


async def published_items(listings: AsyncIterable[bytes]) -> list[CatalogItem]:
    """The catalog items of the published listings (``PublicationStore.listings``)."""
    return [item async for content in listings for item in _items.decode(content)]


def feed(settings: Settings, items: list[CatalogItem]) -> Catalog:
    return Catalog(catalog_id=settings.catalog_id, items=items)


# -- the product list message ---------------------------------------------------------------------


class ProductItem(msgspec.Struct, frozen=True):
    product_retailer_id: str


class Section(msgspec.Struct, frozen=True):
    title: str
    product_items: list[ProductItem]


class ProductListAction(msgspec.Struct, frozen=True):
    catalog_id: str
    sections: list[Section]


class TextObject(msgspec.Struct, frozen=True):
    text: str


class HeaderObject(msgspec.Struct, frozen=True):
    text: str
    type: str = "text"


class ProductList(msgspec.Struct, frozen=True, kw_only=True):
    """``interactive`` of a WhatsApp product list message."""

    type: str = "product_list"
    header: HeaderObject
    body: TextObject
    action: ProductListAction


def product_list(settings: Settings, items: list[CatalogItem], *, header: str, body: str) -> ProductList:
    """Items in stock, a section per category (at most 10 sections and 30 items in all)."""
    sections: dict[str, list[ProductItem]] = {}
    count = 0
    for item in items:
        if item.availability != "in stock" or count >= MAX_ITEMS:
            continue
        title = item.category[:SECTION_TITLE_MAX]
        if title not in sections and len(sections) >= MAX_SECTIONS:
            continue
        sections.setdefault(title, []).append(ProductItem(item.retailer_id))
        count += 1
    return ProductList(
        header=HeaderObject(header[:60]),
        body=TextObject(body),
        action=ProductListAction(
            catalog_id=settings.catalog_id,
            sections=[Section(title, products) for title, products in sections.items()],
        ),
    )
