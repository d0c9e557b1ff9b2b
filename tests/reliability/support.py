"""Shared pieces of the reliability suite: a store made with the real CLI, gateway processes that
can be crashed, bounded concurrent load and direct database counts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select

from omniretail.storage import tables as t
from omniretail.storage.database import Database, normalize_url
from tests.integration.served import free_port, init_store, new_key

T = TypeVar("T")

#: The starter config's channels; every one of them sells from the central warehouse.
CHANNELS = ("webshop", "marketplace", "kiosk", "social", "voice")
WAREHOUSE = "wh-central"
PROBLEM = "application/problem+json"


# -- the store -----------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the ASCII values used here
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def configure(
    folder: Path,
    tables: dict[str, dict[str, Any]] | None = None,
    channels: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Edit the omniretail.toml that `omniretail init` wrote: append ``tables`` (``gateway``,
    ``worker``, ...) and add keys to existing ``[channels.<name>]`` tables."""
    path = folder / "omniretail.toml"
    text = path.read_text(encoding="utf-8")
    for name, values in (channels or {}).items():
        header = f"[channels.{name}]\n"
        assert header in text, f"no {header.strip()} in the starter config"
        lines = "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
        text = text.replace(header, header + lines, 1)
    for name, values in (tables or {}).items():
        assert f"[{name}]" not in text, f"[{name}] is in the starter config already"
        text += f"\n[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
    path.write_text(text, encoding="utf-8")


@dataclass
class Store:
    """A folder made by `omniretail init` (SQLite file there, or the given database) with an admin
    key from `omniretail keys create`."""

    folder: Path
    url: str
    admin: str
    keys: dict[str, str] = field(default_factory=dict)

    def h(self, channel: str = "admin", **extra: str) -> dict[str, str]:
        secret = self.admin if channel == "admin" else self.keys[channel]
        return {"Authorization": f"Bearer {secret}", **extra}

    def database(self) -> Database:
        return Database(normalize_url(self.url))


def make_store(
    folder: Path,
    db_url: str | None,
    *,
    tables: dict[str, dict[str, Any]] | None = None,
    channels: dict[str, dict[str, Any]] | None = None,
) -> Store:
    """With the CLI: `omniretail init [--database-url]`, then `omniretail keys create --channel admin`."""
    init_store(folder, db_url)
    configure(folder, tables, channels)
    admin = new_key(folder, "admin")
    return Store(folder=folder, url=db_url or f"sqlite:///{folder / 'omniretail.db'}", admin=admin)


async def quick_store(
    folder: Path,
    db_url: str | None,
    *,
    tables: dict[str, dict[str, Any]] | None = None,
    channels: dict[str, dict[str, Any]] | None = None,
) -> Store:
    """What :func:`make_store` makes, in this process (each CLI run costs seconds on a loaded
    machine): the starter omniretail.toml `init` writes, the sample catalog, an admin key.
    Channel secrets written ``env:NAME`` must be set in this process's environment."""
    from omniretail.gateway.keys import KeyStore
    from omniretail.kernel import Kernel
    from omniretail.starter import STARTER_TOML, load_catalog, sample_catalog

    folder.mkdir(parents=True, exist_ok=True)
    text = STARTER_TOML
    if db_url:
        text = text.replace('url = "sqlite:///omniretail.db"', f"url = {json.dumps(db_url)}")
    (folder / "omniretail.toml").write_text(text, encoding="utf-8")
    configure(folder, tables, channels)
    async with Kernel.from_path(folder / "omniretail.toml") as kernel:
        await load_catalog(kernel, sample_catalog())
        _key, admin = await KeyStore(kernel.db).create("admin", ("admin",), now=kernel.clock())
    return Store(folder=folder, url=db_url or f"sqlite:///{folder / 'omniretail.db'}", admin=admin)


async def channel_keys(client: httpx.AsyncClient, store: Store, channels: Iterable[str] = CHANNELS) -> None:
    """A storefront key per channel, through the admin API (one CLI run costs seconds here)."""
    for channel in channels:
        r = await client.post("/v1/admin/keys", json={"channel": channel}, headers=store.h())
        assert r.status_code == 201, r.text
        store.keys[channel] = r.json()["secret"]


async def create_product(
    client: httpx.AsyncClient, store: Store, sku: str, stock: int, *, price: int = 500, bases: Iterable[str] = ()
) -> None:
    """A one-variant product with ``stock`` units at the warehouse; waits until every gateway in
    ``bases`` sells it (each process refreshes its catalog read model within about 0.5 s)."""
    draft = {
        "handle": sku.lower(),
        "title": f"Item {sku}",
        "variants": [{"sku": sku, "prices": [{"amount": price, "currency": "EUR"}]}],
    }
    r = await client.post("/v1/admin/products", json=draft, headers=store.h())
    assert r.status_code == 201, r.text
    if stock:
        r = await client.post(
            "/v1/admin/stock/adjustments",
            json={"sku": sku, "location_id": WAREHOUSE, "delta": stock, "reason": "reliability test"},
            headers=store.h(),
        )
        assert r.status_code == 201, r.text
    for base in bases:
        deadline = time.monotonic() + 10
        while (await client.get(f"{base}/v1/products/{sku.lower()}", headers=store.h())).status_code != 200:
            assert time.monotonic() < deadline, f"{base} does not sell {sku} after 10 s"
            await asyncio.sleep(0.1)


async def stock_of(client: httpx.AsyncClient, store: Store, sku: str) -> dict[str, dict[str, int]]:
    r = await client.get(f"/v1/admin/stock/{sku}", headers=store.h())
    assert r.status_code == 200, r.text
    return {row["location_id"]: row for row in r.json()}


async def db_counts(url: str, sku: str) -> dict[str, Any]:
    """What the database holds for ``sku``: orders with a line of it, units sold and returned, stock."""
    db = Database(normalize_url(url))
    try:
        async with db.read() as conn:
            ol, sl = t.order_lines, t.stock_levels
            order_ids = (await conn.scalars(select(ol.c.order_id).where(ol.c.sku == sku))).all()
            sold = await conn.scalar(select(func.coalesce(func.sum(ol.c.quantity), 0)).where(ol.c.sku == sku))
            returned = await conn.scalar(
                select(func.coalesce(func.sum(ol.c.quantity_returned), 0)).where(ol.c.sku == sku)
            )
            levels = (
                await conn.execute(select(sl.c.location_id, sl.c.on_hand, sl.c.reserved).where(sl.c.sku == sku))
            ).all()
            orders = (
                await conn.execute(select(t.orders.c.id, t.orders.c.cart_id).where(t.orders.c.id.in_(order_ids)))
            ).all()
    finally:
        await db.dispose()
    return {
        "order_ids": list(order_ids),
        "orders": {oid: cart for oid, cart in orders},
        "sold": int(sold or 0),
        "returned": int(returned or 0),
        "on_hand": sum(r[1] for r in levels),
        "reserved": sum(r[2] for r in levels),
        "min_on_hand": min((r[1] for r in levels), default=0),
    }


# -- gateway processes ---------------------------------------------------------------------------


class Gateway:
    """`omniretail serve` on a free loopback port, in a process group of its own so that a crash
    (``kill()``: SIGKILL to granian's supervisor and its worker together) leaves nothing behind.
    Output goes to a file in the store folder (a pipe nobody reads could block the server)."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.log_path = folder / "gateway.log"

    def spawn(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = self.folder / f"gateway-{port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "omniretail", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> str:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return self.base
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.output()}")
            assert time.monotonic() < deadline, f"gateway did not come up in {timeout:g} s: {self.output()}"
            time.sleep(0.1)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9, the whole process group (the server and its worker process)."""
        assert self.proc is not None
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def freeze(self) -> None:
        """SIGSTOP the process group: the server stops wherever it is, mid-request included."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._reap_group()
            return
        self.proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        self._reap_group()

    def _reap_group(self) -> None:
        assert self.proc is not None
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of this group is left
        if self.proc.poll() is None:
            self.proc.wait(timeout=15)


@contextmanager
def gateways(folder: Path, count: int = 1, env: dict[str, str] | None = None) -> Iterator[list[Gateway]]:
    """``count`` gateway processes on one store, started together."""
    started = [Gateway(folder, env) for _ in range(count)]
    try:
        for g in started:
            g.spawn()
        for g in started:
            g.wait_ready()
        yield started
    finally:
        for g in started:
            g.stop()


# -- load ----------------------------------------------------------------------------------------


@dataclass
class Gauge:
    """How many calls were in flight at once, at most."""

    now: int = 0
    peak: int = 0


async def bounded(
    count: int, concurrency: int, fn: Callable[[int], Awaitable[T]], gauge: Gauge | None = None
) -> list[T]:
    """``fn(0) .. fn(count - 1)`` with at most ``concurrency`` running at once, results in order."""
    gate = asyncio.Semaphore(concurrency)
    gauge = gauge or Gauge()

    async def one(i: int) -> T:
        async with gate:
            gauge.now += 1
            gauge.peak = max(gauge.peak, gauge.now)
            try:
                return await fn(i)
            finally:
                gauge.now -= 1

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def idem_key() -> str:
    return f'"{uuid.uuid4()}"'


def load_client(concurrency: int, timeout: float = 60.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2),
    )


def problem_type(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith(PROBLEM):
        return ""
    return str(response.json().get("type", "")).rsplit("/", 1)[-1]
