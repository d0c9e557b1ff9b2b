"""The ``[channels.chat]`` settings.

Like every channel's, they decode into a frozen Struct with ``forbid_unknown_fields=True``: a typo
in ``omniretail.toml`` stops start-up with the key's path (``channels.chat.max_quantiy: unknown
key``). Secrets are ``Secret`` fields, written ``env:NAME`` in the file.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from omniretail.config import Secret

#: The channel this plugin provides: the ``[channels.chat]`` table, the ``/channels/chat/`` routes.
CHANNEL = "chat"

Url = Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$")]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The secret the chat provider signs inbound messages with (``X-Chat-Signature``), as
    #: env:NAME. Unset: every inbound message is refused.
    webhook_secret: Secret | None = None
    #: The WhatsApp Business catalog id that product list messages point to.
    catalog_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "omniretail"
    #: The store where chat orders are collected (a ``[[locations]]`` id with ``pickup = true``);
    #: unset: chat orders are shipped.
    pickup_location: str | None = None
    #: The most units of one SKU a single message may order.
    max_quantity: Annotated[int, msgspec.Meta(ge=1, le=999)] = 20
    #: Product page for catalog items, ``{sku}`` filled in; unset: items carry no link.
    product_url: str | None = None
    #: The provider's send-message endpoint for order status messages; unset: none are sent.
    send_url: Url | None = None
    #: The provider's catalog endpoint: the catalog is pushed there after a publish changed it
    #: (task ``chat.sync_catalog``); unset: the provider pulls ``GET /channels/chat/catalog.json``.
    catalog_sync_url: Url | None = None
    #: Minutes between two runs of the catalog sync.
    sync_minutes: Annotated[float, msgspec.Meta(ge=1, le=24 * 60)] = 15.0
