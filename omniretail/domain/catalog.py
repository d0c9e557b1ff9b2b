"""The catalog: products, their variants (one SKU each), prices, media and per-channel content."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from omniretail.domain.errors import InvalidValue
from omniretail.domain.money import Currency, Money

Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
Handle = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9\-]*$")]


class Condition(StrEnum):
    NEW = "new"
    REFURBISHED = "refurbished"
    USED = "used"


class ProductStatus(StrEnum):
    ACTIVE = "active"
    DRAFT = "draft"
    ARCHIVED = "archived"


class Media(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    alt: str = ""
    kind: str = "image"


class VoiceContent(msgspec.Struct, frozen=True, kw_only=True):
    """How a voice assistant says the product: short spoken name, synonyms, 1-2 sentences."""

    spoken_name: str = ""
    synonyms: tuple[str, ...] = ()
    description: str = ""


class SocialContent(msgspec.Struct, frozen=True, kw_only=True):
    caption: str = ""
    hashtags: tuple[str, ...] = ()


class ChannelContent(msgspec.Struct, frozen=True, kw_only=True):
    """Per-channel content kept once in the catalog; plugins render it, nobody retypes it."""

    voice: VoiceContent | None = None
    social: SocialContent | None = None
    #: Free-form per-channel overrides (e.g. a marketplace product type), keyed by channel name.
    extra: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """A price in minor units for a currency and, optionally, a customer tier (e.g. ``vip``)."""

    amount: Annotated[int, msgspec.Meta(ge=0)]
    currency: Currency
    tier: str | None = None

    @property
    def money(self) -> Money:
        return Money(amount=self.amount, currency=self.currency)


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    title: str = ""
    gtin: str | None = None
    mpn: str | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    prices: tuple[Price, ...] = ()
    media: tuple[Media, ...] = ()

    def __post_init__(self) -> None:
        if self.gtin is not None and not gtin_is_valid(self.gtin):
            raise InvalidValue(f"GTIN {self.gtin!r} of {self.sku!r} has a wrong check digit", field="gtin")
        seen: set[tuple[str, str | None]] = set()
        for price in self.prices:
            key = (price.currency, price.tier)
            if key in seen:
                raise InvalidValue(f"{self.sku!r} has two prices for {key}", field="prices")
            seen.add(key)

    def price_for(self, currency: str, tier: str | None = None) -> Money | None:
        """The tier's price in that currency, else the base price; None when not sold in it."""
        base = None
        for price in self.prices:
            if price.currency != currency:
                continue
            if tier is not None and price.tier == tier:
                return price.money
            if price.tier is None:
                base = price.money
        return base


class Product(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    handle: Handle
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    description: str = ""
    brand: str | None = None
    condition: Condition = Condition.NEW
    status: ProductStatus = ProductStatus.ACTIVE
    category: str | None = None
    media: tuple[Media, ...] = ()
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    channel_content: ChannelContent = msgspec.field(default_factory=ChannelContent)
    variants: tuple[Variant, ...] = ()
    #: Increases by one with each change; publications and ETags key on it.
    revision: int = 1

    def __post_init__(self) -> None:
        if not self.variants:
            raise InvalidValue(f"product {self.handle!r} has no variants", field="variants")
        skus = [v.sku for v in self.variants]
        if len(set(skus)) != len(skus):
            raise InvalidValue(f"product {self.handle!r} repeats a SKU", field="variants")

    def variant(self, sku: str) -> Variant | None:
        for variant in self.variants:
            if variant.sku == sku:
                return variant
        return None

    @property
    def image(self) -> str | None:
        return self.media[0].url if self.media else None


def gtin_is_valid(gtin: str) -> bool:
    """GS1 check digit for GTIN-8/12/13/14: from the right, the digits before the check digit
    weigh 3, 1, 3, 1... (It runs whenever a variant is decoded, so it is kept cheap.)"""
    if len(gtin) not in (8, 12, 13, 14) or not gtin.isascii() or not gtin.isdigit():
        return False
    total = 3 * sum(map(int, gtin[-2::-2])) + sum(map(int, gtin[-3::-2]))
    return (10 - total % 10) % 10 == int(gtin[-1])
