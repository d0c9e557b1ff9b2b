"""Amazon ``JSON_LISTINGS_FEED`` (v2) listings, rendered once per publication, and the feed.

Feed format: https://developer-docs.amazon.com/sp-api/docs/listings-feed-type-values (header
``{sellerId, version: "2.0", issueLocale}``, messages ``{messageId, sku, operationType,
productType, attributes}``). The attributes follow the Product Type Definitions: each attribute is
a list of objects carrying ``marketplace_id`` (and ``language_tag`` for text).

Each variant is one listing (Amazon lists SKUs); the catalog's GTIN is the external product id
(``externally_assigned_product_identifier``) that matches the SKU to an existing ASIN. Variation
families (parent SKUs with ``variation_theme``) are not emitted: each variant stands alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal

import msgspec

from omniretail.channel import ChannelContext
from omniretail.domain.catalog import Condition, Product
from omniretail.domain.errors import InvalidValue, NotFound
from omniretail.domain.money import minor_exponent
from omniretail.kernel import Kernel
from omniretail.storage.publications import PublicationStore
from omniretail_marketplace.settings import Settings

#: Fulfilment channel code of merchant-fulfilled quantity (Amazon's own centres use AMAZON_*).
FULFILLMENT_CHANNEL = "DEFAULT"
#: Most product types cap these attributes at these lengths.
MAX_ITEM_NAME = 200
MAX_DESCRIPTION = 2000
#: At most this many messages in one feed (the feed schema's ``maxItems``).
MAX_MESSAGES = 25_000

#: Our condition in Amazon's ``condition_type`` vocabulary.
CONDITION_TYPE = {
    Condition.NEW: "new_new",
    Condition.REFURBISHED: "refurbished_refurbished",
    Condition.USED: "used_good",
}

#: GTIN length to Amazon's external product id type (GTIN-8 is an EAN-8).
GTIN_TYPE = {8: "ean", 12: "upc", 13: "ean", 14: "gtin"}


class Text(msgspec.Struct, frozen=True, kw_only=True):
    value: str
    language_tag: str
    marketplace_id: str


class Value(msgspec.Struct, frozen=True, kw_only=True):
    value: str
    marketplace_id: str


class ProductIdentifier(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    value: str
    marketplace_id: str


class PriceScheduleEntry(msgspec.Struct, frozen=True, kw_only=True):
    #: A decimal amount (``4.50``): stored as a string, written to the feed as a JSON number.
    value_with_tax: Decimal


class OurPrice(msgspec.Struct, frozen=True, kw_only=True):
    schedule: tuple[PriceScheduleEntry, ...]


class PurchasableOffer(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    our_price: tuple[OurPrice, ...]
    marketplace_id: str
    audience: str = "ALL"


class FulfillmentAvailability(msgspec.Struct, frozen=True, kw_only=True):
    fulfillment_channel_code: str
    quantity: int


class ImageLocator(msgspec.Struct, frozen=True, kw_only=True):
    media_location: str
    marketplace_id: str


class Attributes(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    item_name: tuple[Text, ...]
    brand: tuple[Text, ...]
    externally_assigned_product_identifier: tuple[ProductIdentifier, ...]
    purchasable_offer: tuple[PurchasableOffer, ...]
    fulfillment_availability: tuple[FulfillmentAvailability, ...]
    condition_type: tuple[Value, ...]
    product_description: tuple[Text, ...] = ()
    main_product_image_locator: tuple[ImageLocator, ...] = ()


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """One variant's feed message, without its ``messageId`` (numbered when the feed is built)."""

    sku: str
    operationType: str
    productType: str
    attributes: Attributes


class UpdateMessage(msgspec.Struct, frozen=True, kw_only=True):
    messageId: int
    sku: str
    operationType: str
    productType: str
    attributes: Attributes


class DeleteMessage(msgspec.Struct, frozen=True, kw_only=True):
    messageId: int
    sku: str
    operationType: str = "DELETE"


class FeedHeader(msgspec.Struct, frozen=True, kw_only=True):
    sellerId: str
    version: str
    issueLocale: str


def decimal_amount(amount: int, currency: str) -> Decimal:
    """Minor units as an exact decimal: 450 EUR -> Decimal('4.50'), 450 JPY -> Decimal('450')."""
    return Decimal(amount).scaleb(-minor_exponent(currency))


def product_type(product: Product, default: str) -> str:
    extra = product.channel_content.extra.get("marketplace", {})
    chosen = (extra.get("product_type") or default).strip()
    if not chosen:
        raise InvalidValue("no Amazon product type", field="channel_content.extra.marketplace.product_type")
    return chosen


def render(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> list[Listing]:
    """One ``UPDATE`` message per variant. A product without a brand, or a variant without a GTIN
    or without a price in the marketplace currency, is rejected with the field named."""
    settings: Settings = channel.settings
    store = channel.kernel.config.store
    currency: str = settings.currency or store.currency
    language: str = settings.language_tag or store.locale
    marketplace: str = settings.marketplace_id
    brand = (product.brand or "").strip()
    if not brand:
        raise InvalidValue("Amazon requires a brand", field="brand")
    ptype = product_type(product, settings.product_type)
    listings = []
    for variant in product.variants:
        if not variant.gtin:
            raise InvalidValue(
                f"Amazon requires a GTIN (EAN/UPC) for {variant.sku!r}", field=f"variants[{variant.sku}].gtin"
            )
        price = variant.price_for(currency)
        if price is None:
            raise InvalidValue(f"{variant.sku!r} has no price in {currency}", field=f"variants[{variant.sku}].prices")
        title = product.title if not variant.title else f"{product.title} - {variant.title}"
        image = variant.media[0].url if variant.media else product.image
        attributes = Attributes(
            item_name=(Text(value=title[:MAX_ITEM_NAME], language_tag=language, marketplace_id=marketplace),),
            brand=(Text(value=brand, language_tag=language, marketplace_id=marketplace),),
            externally_assigned_product_identifier=(
                ProductIdentifier(type=GTIN_TYPE[len(variant.gtin)], value=variant.gtin, marketplace_id=marketplace),
            ),
            purchasable_offer=(
                PurchasableOffer(
                    currency=currency,
                    our_price=(
                        OurPrice(schedule=(PriceScheduleEntry(value_with_tax=decimal_amount(price.amount, currency)),)),
                    ),
                    marketplace_id=marketplace,
                ),
            ),
            fulfillment_availability=(
                FulfillmentAvailability(
                    fulfillment_channel_code=FULFILLMENT_CHANNEL, quantity=max(stock.get(variant.sku, 0), 0)
                ),
            ),
            condition_type=(Value(value=CONDITION_TYPE[product.condition], marketplace_id=marketplace),),
            product_description=(
                (
                    Text(
                        value=product.description.strip()[:MAX_DESCRIPTION],
                        language_tag=language,
                        marketplace_id=marketplace,
                    ),
                )
                if product.description.strip()
                else ()
            ),
            main_product_image_locator=(
                (ImageLocator(media_location=image, marketplace_id=marketplace),) if image else ()
            ),
        )
        listings.append(Listing(sku=variant.sku, operationType="UPDATE", productType=ptype, attributes=attributes))
    return listings


# -- the feed ------------------------------------------------------------------------------------

_listings = msgspec.json.Decoder(list[Listing])
#: Prices are written as JSON numbers (``4.50``), exactly as the decimal.
_feed_encoder = msgspec.json.Encoder(decimal_format="number")


async def _withdrawn_skus(kernel: Kernel, store: PublicationStore, channel: str) -> AsyncIterator[str]:
    """SKUs of products withdrawn from the channel (archived or removed from the catalog)."""
    after: str | None = None
    while True:
        records = await store.records(channel, status="withdrawn", after=after, limit=500)
        for record in records:
            try:
                product = await kernel.catalog.get(record.product_id)
            except NotFound:  # deleted outright: its SKUs are no longer known
                continue
            for variant in product.variants:
                yield variant.sku
        if len(records) < 500:
            return
        after = records[-1].product_id


async def feed(kernel: Kernel, channel: str, settings: Settings) -> AsyncIterator[bytes]:
    """The whole feed: ``UPDATE`` for every published SKU, then ``DELETE`` for the SKUs of
    withdrawn products (unless the SKU is listed again). Streamed in chunks."""
    store = PublicationStore(kernel.db)
    header = FeedHeader(sellerId=settings.seller_id, version="2.0", issueLocale=settings.issue_locale)
    yield b'{"header":' + _feed_encoder.encode(header) + b',"messages":['
    listed: set[str] = set()
    message_id = 0

    def chunk(messages: Iterable[UpdateMessage | DeleteMessage]) -> bytes:
        parts = [_feed_encoder.encode(m) for m in messages]
        return b",".join(parts)

    async for content in store.listings(channel):
        batch: list[UpdateMessage | DeleteMessage] = []
        for listing in _listings.decode(content):
            message_id += 1
            listed.add(listing.sku)
            batch.append(
                UpdateMessage(
                    messageId=message_id,
                    sku=listing.sku,
                    operationType=listing.operationType,
                    productType=listing.productType,
                    attributes=listing.attributes,
                )
            )
        if batch:
            yield (b"," if message_id > len(batch) else b"") + chunk(batch)
    async for sku in _withdrawn_skus(kernel, store, channel):
        if sku in listed:
            continue
        listed.add(sku)
        message_id += 1
        yield (b"," if message_id > 1 else b"") + _feed_encoder.encode(DeleteMessage(messageId=message_id, sku=sku))
    yield b"]}\n"
