"""The Alexa interaction model, generated from the catalog.

Each active SKU is one value of the custom slot type ``PRODUCT``: its ``id`` is the SKU (entity
resolution hands it back), its ``name`` the product's spoken name and its synonyms the catalog's
voice synonyms plus the variant title. In a product with several variants the first variant is
the one the bare name means ("a latte"); the others are named with their title first
("large latte"). ``render_listing`` publishes these values per product, so the model can be built
from the published listings as well as live from the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from omniretail.domain.catalog import Product, Variant

PRODUCT_TYPE = "PRODUCT"
CHECKOUT_CONFIRMATION = "Confirm.Intent.CheckoutIntent"

SlotValue = dict[str, Any]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def spoken_name(product: Product) -> str:
    voice = product.channel_content.voice
    return _clean(voice.spoken_name if voice is not None and voice.spoken_name else product.title)


def _variant_word(product: Product, variant: Variant) -> str:
    if variant.title.strip():
        return _clean(variant.title).lower()
    if variant.attributes:
        return _clean(" ".join(variant.attributes.values())).lower()
    return variant.sku.lower().replace("-", " ").replace("_", " ").replace(".", " ")


def _unique(value: str, candidates: Iterable[str]) -> list[str]:
    seen = {value.lower()}
    out = []
    for candidate in candidates:
        text = _clean(candidate)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out


def slot_values(product: Product) -> list[SlotValue]:
    """The ``PRODUCT`` slot values of one product: one per variant, ``id`` = SKU."""
    base = spoken_name(product)
    voice = product.channel_content.voice
    synonyms = [_clean(s) for s in (voice.synonyms if voice is not None else ()) if _clean(s)]
    if product.title.strip() and _clean(product.title).lower() != base.lower():
        synonyms.append(_clean(product.title))
    values: list[SlotValue] = []
    for index, variant in enumerate(product.variants):
        titled = variant.title.strip() != ""
        word = _variant_word(product, variant)
        if index == 0:
            name = base
            extra = [*synonyms]
            if titled or len(product.variants) > 1:
                extra += [f"{word} {base}", f"{base} {word}", *(f"{word} {s}" for s in synonyms)]
        else:
            name = f"{word} {base}"
            extra = [f"{base} {word}", *(f"{word} {s}" for s in synonyms)]
        values.append({"id": variant.sku, "name": {"value": name, "synonyms": _unique(name, extra)}})
    return values


def spoken_names(products: Iterable[Product]) -> dict[str, str]:
    """SKU → the name Alexa says for it (the slot value's name)."""
    return {v["id"]: v["name"]["value"] for p in products for v in slot_values(p)}


def _intent(name: str, samples: Sequence[str] = (), slots: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    intent: dict[str, Any] = {"name": name, "samples": list(samples)}
    if slots:
        intent["slots"] = [{"name": n, "type": t, "samples": []} for n, t in slots]
    return intent


INTENTS: list[dict[str, Any]] = [
    _intent(
        "SearchProductIntent",
        [
            "search for {query}",
            "find {query}",
            "look for {query}",
            "do you have {query}",
            "I'm looking for {query}",
            "what do you sell",
            "what do you have",
            "what's on the menu",
        ],
        [("query", "AMAZON.SearchQuery")],
    ),
    _intent(
        "ProductInfoIntent",
        [
            "how much is {product}",
            "how much is a {product}",
            "how much does {product} cost",
            "what does a {product} cost",
            "price of {product}",
            "what is the price of {product}",
            "tell me about {product}",
            "what is {product}",
            "is {product} in stock",
        ],
        [("product", PRODUCT_TYPE)],
    ),
    _intent(
        "AddToCartIntent",
        [
            "add {product}",
            "add a {product}",
            "add {quantity} {product}",
            "add {product} to my cart",
            "add {quantity} {product} to my cart",
            "I want {quantity} {product}",
            "I'd like a {product}",
            "I'd like {quantity} {product}",
            "get me a {product}",
            "get me {quantity} {product}",
            "order {quantity} {product}",
            "a {product}",
            "{quantity} {product}",
        ],
        [("product", PRODUCT_TYPE), ("quantity", "AMAZON.NUMBER")],
    ),
    _intent(
        "ReorderIntent",
        ["reorder", "order again", "repeat my last order", "the usual", "same as last time", "order my usual"],
    ),
    _intent(
        "CheckoutIntent",
        ["check out", "checkout", "place my order", "place the order", "complete my order", "that's all", "I'm done"],
    ),
    _intent(
        "OrderStatusIntent",
        [
            "where is my order",
            "order status",
            "what's the status of my order",
            "is my order ready",
            "where is order {orderNumber}",
            "status of order {orderNumber}",
            "track order {orderNumber}",
        ],
        [("orderNumber", "AMAZON.SearchQuery")],
    ),
    *(
        _intent(f"AMAZON.{name}")
        for name in (
            "YesIntent",
            "NoIntent",
            "HelpIntent",
            "CancelIntent",
            "StopIntent",
            "FallbackIntent",
            "NavigateHomeIntent",
        )
    ),
]


def interaction_model(invocation_name: str, values: Sequence[SlotValue]) -> dict[str, Any]:
    """The skill's interaction model (``ask smapi set-interaction-model`` / the console's JSON
    editor) with ``values`` as the ``PRODUCT`` slot type."""
    return {
        "interactionModel": {
            "languageModel": {
                "invocationName": _clean(invocation_name).lower(),
                "intents": INTENTS,
                "types": [{"name": PRODUCT_TYPE, "values": list(values)}],
            },
            "dialog": {
                # The skill answers every turn itself: it reads the order back (items, total,
                # pickup) before Alexa asks the confirmation question.
                "delegationStrategy": "SKILL_RESPONSE",
                "intents": [
                    {
                        "name": "CheckoutIntent",
                        "confirmationRequired": True,
                        "prompts": {"confirmation": CHECKOUT_CONFIRMATION},
                        "slots": [],
                    }
                ],
            },
            "prompts": [
                {
                    "id": CHECKOUT_CONFIRMATION,
                    "variations": [{"type": "PlainText", "value": "Shall I place your order?"}],
                }
            ],
        }
    }
