"""The ``[channels.social]`` settings (documented in docs/configuration.md)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from omniretail.config import Secret

UtmValue = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Meta app secret for X-Hub-Signature-256, as env:NAME.
    app_secret: Secret | None = None
    #: ``utm_source`` put on shoppable links, for attribution.
    utm_source: UtmValue = "social"
    #: Meta webhook subscription verify token (``hub.verify_token``), as env:NAME.
    verify_token: Secret | None = None
    #: Checkout URL shoppable links point to (it takes ``?products=SKU:QTY`` and ``utm_*``);
    #: unset: the web shop's ``<store.base_url>/channels/webshop/checkout``.
    checkout_url: str | None = None
