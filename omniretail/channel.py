"""What a channel plugin declares and what it is handed.

A plugin declares each channel it provides with ``register(ChannelSpec(...))`` from the
``register_channels`` hook. The host then calls that plugin's per-channel hooks
(``register_routes``, ``render_listing``, ...) with a ``ChannelContext`` for the channel: its name,
its decoded settings, the stock locations it sells from, and the kernel's services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from omniretail.kernel import Kernel


class Capability(StrEnum):
    """Journey steps a channel can carry: the rows of the capability matrix."""

    BROWSE = "browse"
    CART = "cart"
    CHECKOUT = "checkout"
    PAY = "pay"
    PICKUP = "pickup"
    TRACK = "track"
    RETURN = "return"
    HANDOFF = "handoff"


class ChannelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A channel a plugin provides."""

    #: Config table name (``[channels.<name>]``) and URL segment (``/channels/<name>/``).
    name: str
    title: str
    description: str = ""
    #: The plugin's frozen settings Struct (``forbid_unknown_fields=True``), or None.
    settings: type[msgspec.Struct] | None = None
    capabilities: frozenset[Capability] = frozenset()
    #: Formats this channel speaks, for humans (``"Google Merchant RSS 2.0"``, ...).
    formats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"channel name {self.name!r} must be a lower-case identifier")


class ChannelContext:
    """Handed to per-channel hooks: who the channel is and the services it may call."""

    def __init__(self, spec: ChannelSpec, settings: Any, locations: tuple[str, ...], kernel: Kernel) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        #: Stock locations the channel sells from, in preference order.
        self.locations = locations
        self.kernel = kernel

    def __repr__(self) -> str:
        return f"<ChannelContext {self.name}>"


class PeriodicTask(msgspec.Struct, frozen=True, kw_only=True):
    """Work a channel needs done every so often, run by ``omniretail worker``."""

    #: Unique across channels; the channel name is a good prefix (``marketplace.poll_orders``).
    name: str
    every_seconds: float
    #: ``async def run(state: dict) -> dict``: gets the state it returned last time.
    run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


#: The ``register`` callback handed to ``register_channels``.
RegisterChannel = Callable[[ChannelSpec], None]
