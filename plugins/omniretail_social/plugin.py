"""Social commerce channel plugin: declares the channel and its settings.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import msgspec

from omniretail import hookimpl
from omniretail.channel import ChannelSpec, RegisterChannel
from omniretail.config import Secret


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Meta app secret for X-Hub-Signature-256, as env:NAME.
    app_secret: Secret | None = None
    utm_source: str = "social"


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="social",
            title="Social commerce",
            description="Meta and TikTok catalog CSV, shoppable links with attribution, signed webhooks",
            settings=Settings,
        )
    )
