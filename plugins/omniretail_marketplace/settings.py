"""The ``[channels.marketplace]`` settings (documented in docs/configuration.md)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from omniretail.config import Secret
from omniretail.domain.money import Currency

#: The channel this plugin provides.
CHANNEL = "marketplace"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Your seller (merchant) id on the marketplace: the listings feed's ``header.sellerId``.
    seller_id: str = "SELLER"
    #: Locale in which the marketplace reports listing issues (``header.issueLocale``).
    issue_locale: str = "en_US"
    #: The marketplace to list on and poll (the default is Amazon US).
    marketplace_id: str = "ATVPDKIKX0DER"
    #: Standard Webhooks signing secret (whsec_...), as env:NAME.
    webhook_secret: Secret | None = None
    #: Shopify-style HMAC secret, as env:NAME.
    hmac_secret: Secret | None = None
    #: Orders API base URL for the polling connector (unset: no polling).
    orders_api_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")] | None = None
    #: Amazon product type of the listings; a product's ``channel_content.extra.marketplace.product_type``
    #: overrides it.
    product_type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "PRODUCT"
    #: Language of the listing text (Amazon ``language_tag``, such as ``en_US``); unset: the store's locale.
    language_tag: str | None = None
    #: Currency of the listed prices; unset: the store's currency.
    currency: Currency | None = None
    #: The previous Shopify-style HMAC secret, still accepted while the marketplace rotates secrets.
    hmac_previous_secret: Secret | None = None
    #: Access token for the Orders API, sent as ``x-amz-access-token``, as env:NAME.
    orders_api_token: Secret | None = None
    #: Seconds between two polls of the Orders API.
    poll_seconds: Annotated[float, msgspec.Meta(ge=5)] = 60.0
    #: How far back the first poll looks for orders, in hours.
    poll_lookback_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 30)] = 24.0
    #: Amazon ``carrierCode`` for a shipment whose note gives only a tracking number.
    carrier_code: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] = "Other"
