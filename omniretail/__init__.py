"""omniretail: a headless omnichannel retail commerce framework.

One catalog, one stock pool, one customer record and one order book; channel plugins publish the
catalog in each channel's format and take orders from all of them.
"""

import pluggy

__version__ = "0.1.0"

#: Marker plugin authors decorate their hook implementations with.
hookimpl = pluggy.HookimplMarker("omniretail")

__all__ = ["__version__", "hookimpl"]
