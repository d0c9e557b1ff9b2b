"""The voice channel's settings: the ``[channels.voice]`` table of ``omniretail.toml``."""

from __future__ import annotations

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The name customers say to open the skill ("Alexa, open riverside coffee"); sent lower case.
    invocation_name: str = "my shop"
    #: The Alexa skill id (``amzn1.ask.skill...``); requests for any other skill are refused.
    skill_id: str | None = None
    #: Verify Alexa request signatures and timestamps. Turn off for local development only.
    verify_signatures: bool = True
    #: The store where voice orders are picked up (a ``[[locations]]`` id with ``pickup = true``);
    #: default: the first of the channel's locations that offers pickup.
    pickup_location: str | None = None
