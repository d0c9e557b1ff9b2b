"""Voice assistant channel plugin: declares the channel and its settings.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import msgspec

from omniretail import hookimpl
from omniretail.channel import ChannelSpec, RegisterChannel


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    invocation_name: str = "my shop"
    skill_id: str | None = None
    #: Verify Alexa request signatures and timestamps. Turn off for local development only.
    verify_signatures: bool = True


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name="voice",
            title="Voice assistant",
            description=("Alexa custom skill: interaction model from the catalog, SSML responses, signed requests"),
            settings=Settings,
        )
    )
