"""``anyio_backend``: asyncio, for tests using the omniretail fixtures.

Registered by ``omniretail.testing.plugin`` at ``pytest_configure``, after the entry-point plugins,
so it overrides anyio's own default (every installed backend, trio included) but not a project's
``anyio_backend`` in a conftest.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"
