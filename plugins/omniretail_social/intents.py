"""Buy intents in comments and direct messages: ``buy 2 latte``, ``#buy croissant``,
``buy LATTE-REG``, ``I'd like to buy a large latte x2``.

A buy intent is the word ``buy`` (or the hashtag ``#buy``), an optional quantity (``2``, ``2x``,
``x2``, ``a``, ``two``) and words naming a product: its SKU, handle, title, voice spoken name or a
voice synonym (``product.channel_content.voice``), case- and accent-insensitive, singular or
plural. The longest name found wins; a SKU names its variant, anything else names the product,
whose variant is picked by a variant title in the text (``large``) or else the first one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import IntEnum

from omniretail.domain.catalog import Product, Variant
from omniretail.services.catalog import CatalogSnapshot

#: Quantities a comment or message may ask for.
MAX_QUANTITY = 99
#: Text beyond this is not read (a buy intent is short).
MAX_TEXT = 500
#: Longest product name, in words, that is looked for.
MAX_WORDS = 10

_BUY = re.compile(r"(?<![\w#])#?buy\b", re.IGNORECASE)
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "dozen": 12,
}  # fmt: skip
_LEADING_QTY = re.compile(r"^\s*(\d{1,4})(?:\s*(?:x\b|\u00d7))?(?=\s|$)", re.IGNORECASE)
_TRAILING_QTY = re.compile(r"(?<!\w)(?:x|\u00d7)\s*(\d{1,4})\b|(?<!\w)(\d{1,4})\s*(?:x\b|\u00d7|pcs\b)", re.IGNORECASE)


def normalize(text: str) -> str:
    """Lower case, accents dropped, anything but letters and digits a single space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", plain).split())


@dataclass(frozen=True, slots=True)
class BuyIntent:
    #: What follows ``buy``, quantity removed.
    query: str
    #: None when the text asks for an impossible quantity (0, or more than ``MAX_QUANTITY``).
    quantity: int | None


_STATUS = re.compile(
    r"\b(?:status|where(?:'s| is)|track|tracking)\b.*?\b([0-9A-Za-z]{4}-?[0-9A-Za-z]{4})\b", re.IGNORECASE | re.DOTALL
)


def parse_status(text: str) -> str | None:
    """The order number in a status question ("where is my order 7K3M-9QXD?"), or None."""
    m = _STATUS.search(text[:MAX_TEXT])
    if m is None:
        return None
    raw = m.group(1).upper().replace("-", "")
    return f"{raw[:4]}-{raw[4:]}"


def parse(text: str) -> BuyIntent | None:
    """The buy intent in a comment or message, or None when there is none."""
    text = text[:MAX_TEXT]
    m = _BUY.search(text)
    if m is None:
        return None
    rest = text[m.end() :]
    quantity: int | None = 1
    lead = _LEADING_QTY.match(rest)
    if lead:
        quantity = int(lead.group(1))
        rest = rest[lead.end() :]
    else:
        trail = _TRAILING_QTY.search(rest)
        if trail:
            quantity = int(next(g for g in trail.groups() if g))
            rest = rest[: trail.start()] + " " + rest[trail.end() :]
        else:
            first, _, remainder = rest.strip().partition(" ")
            if first.casefold() in _NUMBER_WORDS:
                quantity = _NUMBER_WORDS[first.casefold()]
                rest = remainder
    if quantity is not None and not 1 <= quantity <= MAX_QUANTITY:
        quantity = None
    return BuyIntent(query=normalize(rest), quantity=quantity)


class _Rank(IntEnum):
    SYNONYM = 1
    NAME = 2
    SKU = 3


@dataclass(frozen=True, slots=True)
class Found:
    """What a query named: exactly one variant, or several candidates, or nothing."""

    product: Product | None = None
    variant: Variant | None = None
    #: Titles of the products an ambiguous name could mean.
    candidates: tuple[str, ...] = ()


class CatalogIndex:
    """Names of every sellable product of one catalog snapshot, for lookups by phrase."""

    def __init__(self, snapshot: CatalogSnapshot, currency: str) -> None:
        self.revision = snapshot.revision
        #: phrase -> {(product id, sku or ""): rank}
        self._names: dict[str, dict[tuple[str, str], _Rank]] = {}
        self._products: dict[str, Product] = {}
        self._sellable: dict[str, tuple[Variant, ...]] = {}
        for product in snapshot.products:
            sellable = [v for v in product.variants if v.price_for(currency) is not None]
            if not sellable:
                continue
            self._products[product.id] = product
            self._sellable[product.id] = tuple(sellable)
            for variant in sellable:
                self._add(variant.sku, product.id, variant.sku, _Rank.SKU)
            for name in (product.handle, product.title):
                self._add(name, product.id, "", _Rank.NAME)
            voice = product.channel_content.voice
            if voice is not None:
                self._add(voice.spoken_name, product.id, "", _Rank.NAME)
                for synonym in voice.synonyms:
                    self._add(synonym, product.id, "", _Rank.SYNONYM)

    def _add(self, name: str, product_id: str, sku: str, rank: _Rank) -> None:
        phrase = normalize(name)
        if not phrase or len(phrase.split()) > MAX_WORDS:
            return
        entries = self._names.setdefault(phrase, {})
        key = (product_id, sku)
        entries[key] = max(rank, entries.get(key, rank))

    def _lookup(self, words: list[str]) -> dict[tuple[str, str], _Rank] | None:
        phrase = " ".join(words)
        found = self._names.get(phrase)
        if found is None and len(words[-1]) > 3:  # plurals: lattes, croissants, boxes
            for suffix in ("es", "s"):
                if words[-1].endswith(suffix):
                    found = self._names.get(phrase[: -len(suffix)])
                    if found is not None:
                        break
        return found

    def find(self, query: str) -> Found:
        words = query.split()
        best_len = 0
        best: dict[tuple[str, str], _Rank] = {}
        for size in range(min(MAX_WORDS, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                found = self._lookup(words[start : start + size])
                if found:
                    best_len = size
                    for key, rank in found.items():
                        best[key] = max(rank, best.get(key, rank))
            if best_len:
                break
        if not best:
            return Found()
        top = max(best.values())
        keys = [key for key, rank in best.items() if rank == top]
        product_ids = {pid for pid, _sku in keys}
        if len(product_ids) > 1:
            titles = sorted(self._products[pid].title for pid in product_ids)
            return Found(candidates=tuple(titles))
        product = self._products[product_ids.pop()]
        skus = [sku for _pid, sku in keys if sku]
        named = product.variant(skus[0]) if skus else None
        variant = named or self._variant_named(self._sellable[product.id], f" {query} ")
        return Found(product=product, variant=variant)

    @staticmethod
    def _variant_named(variants: tuple[Variant, ...], padded_query: str) -> Variant:
        for variant in variants:
            name = normalize(variant.title)
            if name and f" {name} " in padded_query:
                return variant
        return variants[0]
