"""Testing support for omniretail plugins: fixtures and the channel conformance kit.

* ``omniretail.testing.plugin``: the pytest plugin (loaded automatically) with the
  ``omniretail_*`` fixtures: a store over SQLite with the sample catalog, the gateway app, an httpx
  client on it and API keys.
* ``ChannelConformance``: the tests every channel plugin runs against itself by subclassing it.
* ``open_store`` / ``Store``: the same store without pytest.

Names are imported on first use, so ``import omniretail.testing`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omniretail.testing.conformance import ChannelConformance
    from omniretail.testing.context import BadRequest, ConformanceContext
    from omniretail.testing.store import Store, StoreTemplate, open_store, starter_channels, starter_config

_WHERE = {
    "BadRequest": "omniretail.testing.context",
    "ChannelConformance": "omniretail.testing.conformance",
    "ConformanceContext": "omniretail.testing.context",
    "Store": "omniretail.testing.store",
    "StoreTemplate": "omniretail.testing.store",
    "open_store": "omniretail.testing.store",
    "starter_channels": "omniretail.testing.store",
    "starter_config": "omniretail.testing.store",
}

__all__ = [
    "BadRequest",
    "ChannelConformance",
    "ConformanceContext",
    "Store",
    "StoreTemplate",
    "open_store",
    "starter_channels",
    "starter_config",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'omniretail.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
