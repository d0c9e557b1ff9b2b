"""Fixtures for gateway tests: an app over the test kernel, keys per channel, a test channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar import Litestar, get

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, RegisterChannel
from omniretail.gateway.app import create_app
from omniretail.gateway.keys import KeyStore
from omniretail.kernel import Kernel
from omniretail.services.clock import FakeClock
from omniretail.starter import load_catalog, sample_catalog
from tests.conftest import store_config


class PingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    greeting: str = "pong"


class PingChannel:
    """A tiny third-party channel used to test plugin routes and their auth."""

    @hookimpl
    def register_channels(self, register: RegisterChannel) -> None:
        register(
            ChannelSpec(name="ping", title="Ping", settings=PingSettings, capabilities=frozenset({Capability.BROWSE}))
        )

    @hookimpl
    def register_routes(self, register: Any, channel: ChannelContext) -> None:
        greeting = channel.settings.greeting

        @get("/hello", sync_to_thread=False)
        def hello() -> dict[str, str]:
            return {"says": greeting}

        @get("/open", opt={"public": True}, sync_to_thread=False)
        def open_route() -> dict[str, str]:
            return {"public": "yes"}

        register(hello)
        register(open_route)


@dataclass
class Api:
    client: httpx.AsyncClient
    kernel: Kernel
    app: Litestar
    keys: dict[str, str] = field(default_factory=dict)

    def h(self, channel: str = "webshop", *, customer: str | None = None, **extra: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.keys[channel]}", **extra}
        if customer:
            headers["Customer-Token"] = customer
        return headers

    async def sign_up(self, email: str, channel: str = "webshop") -> str:
        r = await self.client.post(
            "/v1/customers", json={"email": email, "password": "pass-word-1"}, headers=self.h(channel)
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


async def make_api(db_url: str, tmp_path: Path, clock: FakeClock, **gateway: Any) -> AsyncIterator[Api]:
    config = store_config(db_url)
    config["channels"]["ping"] = {"greeting": "hi"}
    config["gateway"] = {"embedded_worker": False, **gateway}
    kernel = Kernel.from_config(config, plugins=[PingChannel()], base_dir=str(tmp_path), clock=clock)
    await kernel.start()
    data = sample_catalog()
    rename = {"store-downtown": "store-a", "store-riverside": "store-b", "wh-central": "wh"}
    for row in data["stock"]:
        row["location_id"] = rename[row["location_id"]]
    await load_catalog(kernel, data)
    store = KeyStore(kernel.db)
    api_keys = {}
    for channel in ("webshop", "marketplace", "kiosk", "social", "voice", "ping"):
        api_keys[channel] = (await store.create(channel, ("storefront",), now=clock()))[1]
    api_keys["admin"] = (await store.create("admin", ("admin",), now=clock()))[1]
    app = create_app(kernel, run_worker=False)
    # On the test's own event loop (Litestar's test client runs the app on another loop, which an
    # asyncpg pool cannot share). The kernel is started above, as the app's lifespan would.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client=client, kernel=kernel, keys=api_keys, app=app)
    await kernel.close()
