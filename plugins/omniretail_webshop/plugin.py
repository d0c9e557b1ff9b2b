"""Web shop channel plugin: declares the channel and its settings.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import msgspec

from omniretail import hookimpl
from omniretail.channel import ChannelSpec, RegisterChannel


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The storefront page the checkout URL redirects to; ``{cart_id}`` is filled in.
    storefront_cart_url: str = "http://127.0.0.1:8000/channels/webshop/cart/{cart_id}"
    #: Public product page URL; ``{handle}`` and ``{sku}`` are filled in.
    product_url: str = "http://127.0.0.1:8000/channels/webshop/products/{sku}"


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="webshop",
            title="Web shop",
            description=("product pages with schema.org JSON-LD and Open Graph, Google Merchant feeds, checkout URL"),
            settings=Settings,
        )
    )
