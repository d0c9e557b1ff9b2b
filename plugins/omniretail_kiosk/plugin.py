"""In-store kiosk channel plugin: declares the channel and its settings.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import msgspec

from omniretail import hookimpl
from omniretail.channel import ChannelSpec, RegisterChannel


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The store location this kiosk stands in (a [[locations]] id).
    store: str | None = None
    #: Hours after which an uncollected pickup order is cancelled and its stock released.
    release_uncollected_after_hours: int = 72


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="kiosk",
            title="In-store kiosk",
            description=(
                "store-scoped availability, Google local inventory feed, click and collect, endless aisle, QR handoff"
            ),
            settings=Settings,
        )
    )
