"""Shoppable links: the web shop's checkout URL (``?products=SKU:QTY``, Meta's Checkout URL shape)
with UTM parameters, so an order placed through the link records where the shopper came from."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from omniretail.channel import ChannelContext

#: ``utm_medium`` of every link and cart this channel makes; the attribution report keys on it.
MEDIUM = "social"


def checkout_base(channel: ChannelContext) -> str:
    configured: str | None = channel.settings.checkout_url
    if configured:
        return configured
    return channel.kernel.config.store.base_url.rstrip("/") + "/channels/webshop/checkout"


def utm(channel: ChannelContext, *, campaign: str | None = None, content: str | None = None) -> dict[str, str]:
    """The attribution a link (or a cart made from a comment or message) carries."""
    values = {"utm_source": str(channel.settings.utm_source), "utm_medium": MEDIUM}
    if campaign:
        values["utm_campaign"] = campaign
    if content:
        values["utm_content"] = content
    return values


def checkout_link(channel: ChannelContext, lines: Mapping[str, int], attribution: Mapping[str, str]) -> str:
    """``<checkout>?products=SKU%3AQTY,...&utm_source=...``: ``:`` and ``,`` percent-escaped."""
    base = checkout_base(channel)
    query = {"products": ",".join(f"{sku}:{qty}" for sku, qty in lines.items()), **attribution}
    separator = "&" if "?" in base else "?"
    return base + separator + urlencode(query, quote_via=quote)


def shoppable_link(
    channel: ChannelContext,
    sku: str,
    *,
    quantity: int = 1,
    campaign: str | None = None,
    content: str | None = None,
) -> str:
    """The link for one product (the feeds' ``link``) or one post (``content`` = the post id)."""
    return checkout_link(channel, {sku: quantity}, utm(channel, campaign=campaign, content=content))
