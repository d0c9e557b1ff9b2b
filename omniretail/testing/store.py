"""A store to test against: a started kernel over SQLite in a folder, the sample catalog with its
stock, the gateway app, an httpx client on that app and an API key per enabled channel plus an
admin key.

The client talks to the app through ``httpx.ASGITransport`` on the test's own event loop (Litestar's
test client runs the app on another loop). The kernel is started by ``open_store``, as the app's
lifespan would; the embedded worker is off, so nothing runs behind a test's back.

Migrating a database and loading the catalog take most of a second, so ``StoreTemplate`` does it
once per test session and every store starts from a copy of that file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tomllib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from sqlalchemy import func, select

from omniretail.gateway.app import create_app
from omniretail.gateway.keys import KeyStore
from omniretail.host import collect_channels, create_plugin_manager
from omniretail.kernel import Kernel
from omniretail.services.clock import Clock, FakeClock
from omniretail.starter import STARTER_TOML, load_catalog, sample_catalog
from omniretail.storage import tables
from omniretail.storage.publications import RunRecord

#: The key ``Store.keys`` holds the admin key under.
ADMIN = "admin"
#: Tables whose row counts say whether a request changed anything.
COUNTED_TABLES = ("orders", "carts", "customers", "events")
BASE_URL = "http://testserver"


def starter_channels() -> dict[str, dict[str, Any]]:
    """The ``[channels.*]`` tables of the ``omniretail init`` configuration (the built-in channels)."""
    channels: dict[str, dict[str, Any]] = tomllib.loads(STARTER_TOML)["channels"]
    return channels


def starter_config(database_url: str, channels: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The ``omniretail init`` configuration (store, the locations ``wh-central``,
    ``store-downtown`` and ``store-riverside``, the built-in channels) on ``database_url``, with
    ``channels`` in place of the starter's channel tables when given, and no payment providers.
    The gateway's embedded worker is off."""
    config = tomllib.loads(STARTER_TOML)
    # Payment providers are plugins of their own; a channel's conformance does not depend on them.
    config.pop("payments", None)
    config["database"] = {"url": database_url, "migrate": "auto"}
    config["gateway"] = {"embedded_worker": False}
    if channels is not None:
        config["channels"] = {name: dict(table) for name, table in channels.items()}
    return config


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class StoreTemplate:
    """A database file with the schema, the starter locations and the sample catalog with its
    stock: made on first use, then copied for each store."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"

    async def copy_to(self, target: Path) -> None:
        if not self.path.exists():
            await self._make()
        shutil.copyfile(self.path, target)

    async def _make(self) -> None:
        building = self.path.with_name(f"building-{secrets.token_hex(4)}.db")
        kernel = Kernel.from_config(
            starter_config(sqlite_url(building), channels={}), entry_points=False, base_dir=str(self.path.parent)
        )
        async with kernel:
            await load_catalog(kernel, sample_catalog(), actor="omniretail.testing")
        _finish(building, self.path)


def _finish(building: Path, target: Path) -> None:
    """Move a closed database file into place (a WAL file left means a connection outlived it)."""
    for suffix in ("-wal", "-shm"):
        if Path(f"{building}{suffix}").exists():
            raise RuntimeError(f"{building}{suffix} is still there: the template database is not closed")
    os.replace(building, target)


@dataclass
class Store:
    """A running store: the kernel, the gateway app and an httpx client on it."""

    kernel: Kernel
    app: Litestar
    client: httpx.AsyncClient
    #: API key secrets: a storefront key per enabled channel (by channel name) and ``"admin"``.
    keys: dict[str, str]

    def headers(self, channel: str, *, customer: str | None = None, **extra: str) -> dict[str, str]:
        """``Authorization`` with the key of ``channel`` (or ``"admin"``), the customer token if
        given, and any extra headers."""
        headers = {"Authorization": f"Bearer {self.keys[channel]}", **extra}
        if customer:
            headers["Customer-Token"] = customer
        return headers

    async def add_key(self, channel: str, scopes: tuple[str, ...] = ("storefront",)) -> str:
        """A new API key of ``channel`` (which need not be enabled); returns its secret."""
        _key, secret = await KeyStore(self.kernel.db).create(channel, scopes, now=self.kernel.clock())
        return secret

    async def sign_up(self, channel: str, email: str | None = None) -> str:
        """Create a customer account through the gateway with the channel's key; returns the
        customer token (send it as ``Customer-Token``)."""
        email = email or f"shopper-{secrets.token_hex(6)}@example.com"
        response = await self.client.post(
            "/v1/customers", json={"email": email, "password": "pass-word-1"}, headers=self.headers(channel)
        )
        assert response.status_code == 201, f"sign-up on {channel} answered {response.status_code}: {response.text}"
        return str(response.json()["token"])

    async def publish(self, channel: str) -> RunRecord:
        """Publish the catalog to ``channel`` (as ``omniretail catalog publish`` does)."""
        from omniretail.publishing import Publisher

        return await Publisher(self.kernel).publish(channel, trigger="test")

    async def counts(self, names: Iterable[str] = COUNTED_TABLES) -> dict[str, int]:
        """Row counts of the named tables (by default orders, carts, customers and events)."""
        found: dict[str, int] = {}
        async with self.kernel.db.read() as conn:
            for name in names:
                table = tables.metadata.tables[name]
                found[name] = int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        return found


@asynccontextmanager
async def open_store(
    directory: Path,
    *,
    channels: Mapping[str, Mapping[str, Any]] | None = None,
    plugins: Iterable[Any] = (),
    entry_points: bool = True,
    clock: Clock | None = None,
    template: StoreTemplate | None = None,
) -> AsyncIterator[Store]:
    """A store in ``directory`` (its SQLite file is ``store.db``) with the sample catalog loaded.

    ``channels`` are the ``[channels.*]`` tables to enable (default: the starter's tables of the
    installed built-in channels); ``plugins`` are plugin objects registered besides the
    ``omniretail`` entry points (all of them unless ``entry_points=False``). Secrets written
    ``env:NAME`` are read from the environment as usual. A configuration mistake raises
    ``ConfigError``.
    """
    plugins = list(plugins)
    if channels is None:
        installed = collect_channels(create_plugin_manager(plugins, entry_points=entry_points))
        channels = {name: table for name, table in starter_channels().items() if name in installed}
    database = directory / "store.db"
    if template is not None:
        await template.copy_to(database)
    clock = clock or FakeClock(datetime.now(UTC).replace(microsecond=0))
    kernel = Kernel.from_config(
        starter_config(sqlite_url(database), channels),
        plugins=plugins,
        entry_points=entry_points,
        base_dir=str(directory),
        clock=clock,
    )
    try:
        await kernel.start()
        if template is None:
            await load_catalog(kernel, sample_catalog(), actor="omniretail.testing")
        key_store = KeyStore(kernel.db)
        keys = {}
        for name in (*kernel.channels, ADMIN):
            scopes = ("admin",) if name == ADMIN else ("storefront",)
            keys[name] = (await key_store.create(name, scopes, now=clock()))[1]
        app = create_app(kernel, run_worker=False)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar's ASGI types are narrower
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield Store(kernel=kernel, app=app, client=client, keys=keys)
    finally:
        await kernel.close()
