"""Words and SSML: escaping, prices read aloud, lists, plurals, order numbers.

Every piece of text that comes from the catalog or the customer goes through ``esc`` before it
is put into SSML, so a product called "Fish & Chips <large>" still makes well-formed SSML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from xml.sax.saxutils import escape

from babel.lists import format_list
from babel.numbers import format_currency, get_currency_precision

_ENTITIES = {'"': "&quot;", "'": "&apos;"}


def esc(text: str) -> str:
    """Text made safe for SSML (and any XML): ``&``, ``<``, ``>`` and quotes escaped."""
    return escape(text, _ENTITIES)


def speak(ssml: str) -> str:
    """Wrap SSML (already escaped) in ``<speak>``."""
    return f"<speak>{ssml}</speak>"


def money(amount: int, currency: str, locale: str) -> str:
    """Minor units as a price to read aloud: ``760, "EUR", "en_US"`` is ``€7.60``."""
    digits = get_currency_precision(currency)
    return format_currency(Decimal(amount).scaleb(-digits), currency, locale=locale)


def join(items: Sequence[str], locale: str) -> str:
    """``a, b and c`` in the locale's words."""
    if not items:
        return ""
    return format_list(list(items), locale=locale)


_ES = ("ss", "x", "z", "ch", "sh")


def plural(name: str, locale: str) -> str:
    """A simple English plural (``latte`` → ``lattes``); other languages keep the name."""
    if not locale.lower().startswith("en") or not name:
        return name
    lower = name.lower()
    if lower.endswith(_ES):
        return name + "es"
    if lower.endswith("s"):  # "house blend beans" is plural already
        return name
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


def count(quantity: int, name: str, locale: str) -> str:
    """``2 lattes``, ``1 croissant``."""
    return f"{quantity} {name if quantity == 1 else plural(name, locale)}"


def minutes(value: int) -> str:
    if value <= 0:
        return "now"
    return f"in {value} minute" if value == 1 else f"in {value} minutes"


def order_number(number: str) -> str:
    """An order number spelt out, character by character (SSML)."""
    parts = [p for p in number.split("-") if p]
    return '<break time="200ms"/>'.join(f'<say-as interpret-as="spell-out">{esc(p)}</say-as>' for p in parts)


_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_LOOKALIKE = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})


def heard_order_number(heard: str) -> str | None:
    """The order number in what Alexa heard (``"7 k. 3 m nine q x d"`` → ``7K3M-9QXD``), or None.

    Digit words become digits, everything but letters and digits is dropped, and letters that
    order numbers never use are read as the digit they look like (I and L as 1, O as 0).
    """
    chars: list[str] = []
    for word in re.split(r"[\s,]+", heard.strip().lower()):
        word = word.strip(".-")
        if word in _DIGIT_WORDS:
            chars.append(_DIGIT_WORDS[word])
        else:
            chars.extend(c for c in word if c.isascii() and c.isalnum())
    code = "".join(chars).upper().translate(_LOOKALIKE)
    if len(code) != 8:
        return None
    return f"{code[:4]}-{code[4:]}"
