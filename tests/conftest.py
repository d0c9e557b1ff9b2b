"""Shared fixtures. Storage tests run on SQLite and, when OMNIRETAIL_TEST_POSTGRES_URL is set,
on PostgreSQL too (test ids carry ``sqlite`` / ``postgres``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.starter import load_catalog, sample_catalog
from omniretail.storage import tables
from omniretail.storage.database import normalize_url

PG_ENV = "OMNIRETAIL_TEST_POSTGRES_URL"

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set"),
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def reset_postgres(url: str) -> None:
    """Empty every table (the schema stays): each test starts from nothing."""
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('public.alembic_version')"))
            if exists:
                names = ", ".join(f'"{t.name}"' for t in tables.metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def db_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = os.environ[PG_ENV]
    await reset_postgres(url)
    return url


def store_config(url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": {"name": "Test store", "currency": "EUR"},
        "database": {"url": url, "migrate": "auto"},
        "locations": [
            {"id": "wh", "name": "Warehouse", "kind": "warehouse"},
            {
                "id": "store-a",
                "name": "Store A",
                "kind": "store",
                "pickup": True,
                "preparation_minutes": 10,
                "store_code": "A",
            },
            {
                "id": "store-b",
                "name": "Store B",
                "kind": "store",
                "pickup": True,
                "preparation_minutes": 20,
                "store_code": "B",
            },
        ],
        "channels": {
            "webshop": {"locations": ["wh", "store-a", "store-b"]},
            "marketplace": {"locations": ["wh"]},
            "kiosk": {"store": "store-a", "locations": ["store-a", "wh", "store-b"]},
            "social": {},
            "voice": {},
        },
    }
    config.update(overrides)
    return config


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def kernel(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Kernel]:
    k = Kernel.from_config(store_config(db_url), base_dir=str(tmp_path), clock=clock)
    async with k:
        yield k


@pytest.fixture
async def stocked(kernel: Kernel) -> Kernel:
    """The kernel with the sample catalog and its stock loaded (store-a = sample 'store-downtown')."""
    data = sample_catalog()
    rename = {"store-downtown": "store-a", "store-riverside": "store-b", "wh-central": "wh"}
    for row in data["stock"]:
        row["location_id"] = rename[row["location_id"]]
    await load_catalog(kernel, data)
    return kernel
