"""``gateway_rss_mb``: resident memory of a served gateway holding a large catalog.

A SQLite store with N products (5,000 with ``--quick``, 100,000 in a full run; two variants
each), loaded through the catalog service in chunks; then ``omniretail serve``, catalog reads
(50 pages by cursor, a product by handle, a few seconds of list load), and VmRSS from
/proc/<pid>/status. ``omniretail serve`` is two processes: the CLI process running granian's
supervisor and granian's forked worker that serves (and holds the catalog read model). The
figure is the worker's RSS; the details give the supervisor's, the PSS of both together, and
the same gateway with a 20-product catalog, from which a per-1,000-products cost and a linear
estimate at 100,000 products are drawn.

Loading time is reported too (``load_seconds``): a first look at what the later "publish 100k
products" benchmark will measure.
"""

from __future__ import annotations

from typing import Any

import httpx

from benchmarks import loadgen
from benchmarks.client import LOOPBACK
from benchmarks.results import Context, Metric
from benchmarks.servers import free_port, gateway_argv, memory_of, serve
from benchmarks.store import Store, make_store

TARGET_MB = 150.0
TARGET_PRODUCTS = 100_000
BASELINE_PRODUCTS = 20


def _measure(ctx: Context, store: Store, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serve ``store``, read from it, and return (memory after start, memory after reads + info)."""
    port = free_port()
    with serve(
        name,
        gateway_argv(store.config, port),
        port=port,
        cwd=store.directory,
        log_dir=ctx.log_dir,
        start_timeout=900,
    ) as served:
        idle = memory_of(served.pid)
        auth = {"Authorization": f"Bearer {store.key}"}
        cursor = None
        pages = 0
        with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", headers=auth, timeout=30) as client:
            for _ in range(50):
                params = {"limit": "20", **({"cursor": cursor} if cursor else {})}
                response = client.get("/v1/products", params=params)
                response.raise_for_status()
                pages += 1
                cursor = response.json()["next_cursor"]
                if not cursor:
                    break
            client.get(f"/v1/products/bench-product-{store.products // 2:06d}").raise_for_status()
        burst = loadgen.load(
            port,
            "/v1/products?limit=20",
            auth,
            connections=ctx.settings.connections,
            seconds=3,
            use_wrk=ctx.use_wrk,
            wrk_threads=ctx.wrk_threads,
        )
        after: dict[str, Any] = memory_of(served.pid)
    after.update(pages_read=pages, burst_rps=round(burst.rps, 1), burst_errors=burst.errors)
    return idle, after


def run(ctx: Context) -> list[Metric]:
    s = ctx.settings
    ctx.log(f"memory: baseline gateway with {BASELINE_PRODUCTS} products")
    small = make_store(ctx.workdir / "memory-baseline", products=BASELINE_PRODUCTS, stocked=BASELINE_PRODUCTS)
    _, base = _measure(ctx, small, "gateway-memory-baseline")
    ctx.log(f"memory: loading {s.rss_products:,} products into a SQLite store (catalog service, chunks)")
    store = make_store(ctx.workdir / "memory", products=s.rss_products, stocked=20)
    load_s = store.timings["load_seconds"]
    ctx.log(f"memory: loaded in {load_s} s ({s.rss_products / load_s:,.0f} products/s)")
    idle, after = _measure(ctx, store, "gateway-memory")
    ctx.log(f"memory: worker RSS {after['worker_rss_mb']} MB with {s.rss_products:,} products")
    per_1k = (after["worker_rss_mb"] - base["worker_rss_mb"]) / max(1, s.rss_products - BASELINE_PRODUCTS) * 1000
    partial = s.rss_products < TARGET_PRODUCTS
    details: dict[str, Any] = {
        "products": s.rss_products,
        "load_seconds": load_s,
        "load_products_per_s": round(s.rss_products / load_s, 1) if load_s else None,
        "after_start": idle,
        "after_reads": after,
        "baseline_20_products": base,
        "mb_per_1k_products": round(per_1k, 2),
    }
    if partial:
        details["estimated_mb_at_100k"] = round(base["worker_rss_mb"] + per_1k * TARGET_PRODUCTS / 1000, 1)
    return [
        Metric(
            "gateway_rss_mb",
            after["worker_rss_mb"],
            "MB",
            # A smaller catalog says little about the 100k target: no verdict then.
            target=None if partial else TARGET_MB,
            direction="<=",
            errors=after["burst_errors"] + base["burst_errors"],
            note=f"{s.rss_products:,} products: no verdict (the <= {TARGET_MB:g} MB target is for {TARGET_PRODUCTS:,})"
            if partial
            else f"{s.rss_products:,} products",
            details=details,
        )
    ]
