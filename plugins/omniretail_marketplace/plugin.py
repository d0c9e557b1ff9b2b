"""Marketplace channel plugin: declares the channel and its settings.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import msgspec

from omniretail import hookimpl
from omniretail.channel import ChannelSpec, RegisterChannel
from omniretail.config import Secret


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seller_id: str = "SELLER"
    issue_locale: str = "en_US"
    marketplace_id: str = "ATVPDKIKX0DER"
    #: Standard Webhooks signing secret (whsec_...), as env:NAME.
    webhook_secret: Secret | None = None
    #: Shopify-style HMAC secret, as env:NAME.
    hmac_secret: Secret | None = None
    #: Orders API base URL for the polling connector (unset: no polling).
    orders_api_url: str | None = None


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="marketplace",
            title="Marketplace",
            description=(
                "Amazon JSON_LISTINGS_FEED export, signed order webhooks, order polling, shipment confirmation"
            ),
            settings=Settings,
        )
    )
