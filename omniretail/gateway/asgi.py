"""ASGI entry point for servers: ``granian --interface asgi --factory omniretail.gateway.asgi:app``.

Reads the configuration named by ``$OMNIRETAIL_CONFIG`` (or ``./omniretail.toml``).
"""

from __future__ import annotations

import os

from litestar import Litestar

from omniretail.gateway.app import create_app
from omniretail.kernel import Kernel


def app() -> Litestar:
    return create_app(Kernel.from_path(os.environ.get("OMNIRETAIL_CONFIG")))
