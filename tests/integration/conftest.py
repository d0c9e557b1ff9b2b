"""Fixtures for integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omniretail.services.clock import FakeClock
from tests.integration.gateway_fixtures import Api, make_api


@pytest.fixture
async def api(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    async for a in make_api(db_url, tmp_path, clock):
        yield a
