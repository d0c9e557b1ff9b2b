"""A throwaway store for one benchmark: config, schema, a synthetic catalog with stock, an API key.

Everything goes through the product's own front doors: the starter config, ``omniretail db
upgrade`` (PostgreSQL), the kernel's catalog and inventory services, and ``omniretail keys
create``. On PostgreSQL the store lives in its own database, ``omniretail_bench``, which is
dropped and created afresh on the server the given URL points at (no other database is touched).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

BENCH_DATABASE = "omniretail_bench"
#: The location checkout stock is put in (the starter's warehouse; every channel sells from it).
STOCK_LOCATION = "wh-central"
#: Units per stocked SKU: far more than any run can sell, so checkouts never fail for stock.
STOCK_UNITS = 1_000_000
CHUNK = 2_000


@dataclass
class Store:
    """A store on disk: its config file, an API key for the webshop channel, the stocked SKUs."""

    directory: Path
    config: Path
    backend: str
    key: str
    products: int
    stocked_skus: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def _gtin13(n: int) -> str:
    body = f"200{n:09d}"  # GS1 prefix 200-299: for internal use
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def synthetic_products(count: int) -> list[dict[str, object]]:
    """``count`` products shaped like the sample catalog: two variants each (regular/large),
    list and VIP prices, a GTIN, an MPN, attributes, one image."""
    brands = ["Riverside Roasters", "Northbank Bakery", "Harbour Tea Co.", None]
    categories = ["drinks", "food", "beans", "merch"]
    products: list[dict[str, object]] = []
    for i in range(count):
        base = 250 + (i * 37) % 900
        variants = [
            {
                "sku": f"BENCH-{i:06d}-{size[0]}",
                "title": size,
                "gtin": _gtin13(i * 2 + j),
                "mpn": f"BN-{i:06d}-{size[0]}",
                "attributes": {"size": size.lower()},
                "prices": [
                    {"amount": base + 70 * j, "currency": "EUR"},
                    {"amount": base + 70 * j - 50, "currency": "EUR", "tier": "vip"},
                ],
            }
            for j, size in enumerate(("Regular", "Large"))
        ]
        products.append(
            {
                "handle": f"bench-product-{i:06d}",
                "title": f"Benchmark product {i}",
                "description": f"Synthetic product number {i}, for load tests: a sentence or two of copy.",
                "brand": brands[i % len(brands)],
                "category": categories[i % len(categories)],
                "media": [{"url": f"https://images.example.com/bench/{i}.jpg", "alt": f"Benchmark product {i}"}],
                "attributes": {"origin": "synthetic", "batch": str(i // 1000)},
                "variants": variants,
            }
        )
    return products


def write_config(directory: Path, database_url: str) -> Path:
    from omniretail.starter import STARTER_TOML

    text = STARTER_TOML.replace('url = "sqlite:///omniretail.db"', f"url = {json.dumps(database_url)}")
    if text == STARTER_TOML and database_url != "sqlite:///omniretail.db":
        raise RuntimeError("the starter config no longer has the database line this benchmark replaces")
    # Benchmarks send thousands of requests a second with one key: no rate limit.
    text += "\n[gateway]\nrate_limit_per_minute = 0\n"
    path = directory / "omniretail.toml"
    path.write_text(text, encoding="utf-8")
    return path


def omniretail_cli(config: Path, *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "omniretail", "--config", str(config), *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"omniretail {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def bench_database_url(server_url: str) -> tuple[str, str]:
    """(admin URL, bench URL): the server of ``server_url`` with the maintenance database, and
    with ``omniretail_bench``."""
    url = make_url(server_url)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    admin_db = url.database if url.database and url.database != BENCH_DATABASE else "postgres"
    admin = url.set(drivername="postgresql", database=admin_db)
    bench = url.set(drivername="postgresql", database=BENCH_DATABASE)
    return admin.render_as_string(hide_password=False), bench.render_as_string(hide_password=False)


async def recreate_postgres_database(server_url: str) -> str:
    """Drop and create ``omniretail_bench`` on the server; returns its URL."""
    import asyncpg  # type: ignore[import-untyped]

    admin_url, bench_url = bench_database_url(server_url)
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    finally:
        await conn.close()
    return bench_url


async def _load(config: Path, products: list[dict[str, object]], stock_skus: list[str]) -> None:
    import msgspec

    from omniretail.kernel import Kernel
    from omniretail.services.catalog import ProductDraft

    async with Kernel.from_path(config) as kernel:
        for start in range(0, len(products), CHUNK):
            drafts = msgspec.convert(products[start : start + CHUNK], list[ProductDraft])
            await kernel.catalog.upsert_many(drafts, actor="benchmark")
        for sku in stock_skus:
            await kernel.inventory.set_on_hand(sku, STOCK_LOCATION, STOCK_UNITS, reason="benchmark", actor="benchmark")


def make_store(
    directory: Path, *, backend: str = "sqlite", products: int = 200, stocked: int = 64, postgres_url: str = ""
) -> Store:
    """Build a store in ``directory`` with ``products`` products, the first ``stocked`` of them
    (both variants) with ample stock at ``wh-central``."""
    directory.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    if backend == "sqlite":
        config = write_config(directory, "sqlite:///omniretail.db")
    elif backend == "postgres":
        url = asyncio.run(recreate_postgres_database(postgres_url))
        config = write_config(directory, url)
        omniretail_cli(config, "db", "upgrade")
    else:
        raise ValueError(f"unknown backend {backend!r}")
    catalog = synthetic_products(products)
    skus = [str(v["sku"]) for p in catalog[:stocked] for v in p["variants"]]  # type: ignore[attr-defined]
    started = time.perf_counter()
    asyncio.run(_load(config, catalog, skus))
    timings["load_seconds"] = round(time.perf_counter() - started, 2)
    key = (
        omniretail_cli(config, "keys", "create", "--channel", "webshop", "--name", "benchmark").strip().splitlines()[-1]
    )
    return Store(directory, config, backend, key, products, skus, timings)
