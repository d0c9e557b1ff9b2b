"""Shared fixtures. Storage tests run on SQLite and, when OMNIRETAIL_TEST_POSTGRES_URL is set,
on PostgreSQL too (test ids carry ``sqlite`` / ``postgres``)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.starter import load_catalog, sample_catalog
from omniretail.storage import migrate, tables
from omniretail.storage.database import Database, normalize_url

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


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A database of its own for this test session on the server named by the environment, so
    several test runs can share one server; migrated once, dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        yield None
        return
    import asyncpg

    name = f"omni_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        db = Database(normalize_url(url))
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    async def drop() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    asyncio.run(create())
    try:
        yield url
    finally:
        asyncio.run(drop())


async def reset_postgres(url: str) -> None:
    """Empty every table (the schema stays): each test starts from nothing."""
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in tables.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def db_url(backend: str, tmp_path: Path, postgres_url: str | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    assert postgres_url is not None
    await reset_postgres(postgres_url)
    return postgres_url


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


@pytest.fixture
async def api(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Any]:
    """The gateway over a stocked store, with a storefront key per channel and an admin key."""
    from tests.integration.gateway_fixtures import make_api

    async for a in make_api(db_url, tmp_path, clock):
        yield a
