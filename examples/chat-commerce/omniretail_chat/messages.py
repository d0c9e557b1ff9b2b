"""Inbound chat messages: the wire format, the signature check and the commands people type.

The chat provider (a WhatsApp Business or Telegram bot bridge) posts each message a shopper sends
to ``POST /channels/chat/messages``::

    {"id": "wamid.HBgLMzUzODcxMjM0NTY3", "from": "+353871234567", "name": "Aoife",
     "text": "order 2 LATTE-REG"}

signed with ``X-Chat-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with
``channels.chat.webhook_secret``. The signature is checked before the body is decoded.

Commands (case-insensitive):

* ``order 2 LATTE-REG``, ``order LATTE-REG x2, CROISSANT``: order those SKUs (``buy`` works too);
* ``menu`` (or ``catalog``): the product list;
* ``status`` or ``status R-123456``: where my last (or that) order is;
* anything else: how to order.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Annotated

import msgspec

from omniretail.gateway.problems import ApiError

SIGNATURE_HEADER = "x-chat-signature"
#: Lines one message may order.
MAX_LINES = 20


class InboundMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The provider's message id: a message delivered twice has the same id.
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
    #: The sender's phone number (E.164 preferred): the shopper's identity on this channel.
    sender: Annotated[str, msgspec.Meta(min_length=6, max_length=32, pattern=r"^\+?[0-9 ().\-]+$")] = msgspec.field(
        name="from"
    )
    text: Annotated[str, msgspec.Meta(max_length=1000)]
    #: The sender's profile name, used for a customer seen the first time.
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""


_decoder = msgspec.json.Decoder(InboundMessage)


def verify_signature(secret: str | None, header: str | None, body: bytes) -> None:
    """Raise a 401 problem unless ``header`` is ``sha256=`` + the body's HMAC-SHA256 with ``secret``."""
    if not secret:
        raise ApiError(
            401,
            "signature-invalid",
            "inbound messages cannot be checked: channels.chat.webhook_secret is not configured",
            field="header.x-chat-signature",
        )
    scheme, _, given = (header or "").strip().partition("=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if scheme.lower() != "sha256" or not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise ApiError(
            401,
            "signature-invalid",
            "X-Chat-Signature is missing or does not match the body",
            field="header.x-chat-signature",
        )


def sign(secret: str, body: bytes) -> str:
    """The ``X-Chat-Signature`` value for ``body`` (what the provider sends)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def decode(body: bytes) -> InboundMessage:
    """The message, or a 400 (not JSON) / 422 (not a message) problem naming what is wrong."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation", f"not a chat message: {exc}", field="body") from None
    except msgspec.DecodeError:
        raise ApiError(400, "validation", "the body is not valid JSON", field="body") from None


# -- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    #: (SKU as typed, upper-cased; quantity), in the order given, SKUs merged.
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Menu:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    number: str | None = None


@dataclass(frozen=True, slots=True)
class Help:
    #: Why the message was not understood, if it looked like a command.
    problem: str = ""


Command = Order | Menu | Status | Help

_ITEM = re.compile(
    r"^(?:(?P<lead>\d{1,4})\s*[x\u00d7]?\s+)?(?P<sku>[A-Za-z0-9][A-Za-z0-9._\-]*)(?:\s*[x\u00d7]\s*(?P<trail>\d{1,4}))?$"
)
_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\+)\s*", re.IGNORECASE)


def parse(text: str, *, max_quantity: int) -> Command:
    words = text.strip().split(maxsplit=1)
    verb = words[0].casefold() if words else ""
    rest = words[1] if len(words) > 1 else ""
    if verb in ("menu", "catalog", "catalogue"):
        return Menu()
    if verb == "status":
        return Status(rest.strip().upper() or None)
    if verb not in ("order", "buy"):
        return Help()
    wanted: dict[str, int] = {}
    parts = [p for p in _SPLIT.split(rest) if p.strip()]
    if not parts:
        return Help("say what to order, for example: order 2 LATTE-REG")
    if len(parts) > MAX_LINES:
        return Help(f"at most {MAX_LINES} items per message")
    for part in parts:
        m = _ITEM.match(part.strip())
        if m is None:
            return Help(f"I did not understand {part.strip()!r}")
        quantity = int(m.group("lead") or m.group("trail") or 1)
        sku = m.group("sku").upper()
        wanted[sku] = wanted.get(sku, 0) + quantity
        if not 1 <= wanted[sku] <= max_quantity:
            return Help(f"you can order 1 to {max_quantity} of {sku}")
    return Order(tuple(wanted.items()))
