"""``publish_full_seconds`` and ``publish_incremental_seconds``: publishing a large catalog to
every enabled channel (the five built-ins), all of it, then again after a 1 % change.

A SQLite store with N generated products (100,000 in a full run, 4,000 with ``--quick``), the
starter configuration's five channels, published in process through the same ``Publisher`` that
``omniretail catalog publish`` runs. The incremental run changes the price of 1 % of the products
first; it must render only those (checked: ``rendered`` is reported per channel).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.results import Context, Metric
from benchmarks.store import make_store

FULL_TARGET_S = 60.0
INCREMENTAL_TARGET_S = 3.0
TARGET_PRODUCTS = 100_000


async def _publish(config: Path, changed_share: float) -> dict[str, Any]:
    from omniretail.kernel import Kernel
    from omniretail.publishing import Publisher
    from omniretail.services.catalog import ProductDraft

    async with Kernel.from_path(config) as kernel:
        publisher = Publisher(kernel)
        started = time.perf_counter()
        full = [await publisher.publish(name, trigger="benchmark") for name in publisher.channels()]
        full_s = time.perf_counter() - started
        snapshot = await kernel.catalog.snapshot()
        step = max(1, round(1 / changed_share))
        changed = snapshot.products[::step]
        drafts = []
        for product in changed:
            data = msgspec.to_builtins(product)
            data.pop("id")
            data.pop("revision")
            for variant in data["variants"]:
                for price in variant["prices"]:
                    price["amount"] += 10
            drafts.append(msgspec.convert(data, ProductDraft))
        await kernel.catalog.upsert_many(drafts, actor="benchmark")
        started = time.perf_counter()
        again = [await publisher.publish(name, trigger="benchmark") for name in publisher.channels()]
        incremental_s = time.perf_counter() - started
    return {
        "full_s": full_s,
        "incremental_s": incremental_s,
        "changed_products": len(changed),
        "full": {
            r.channel: {"rendered": r.rendered, "created": r.created, "rejected": r.rejected, "failed": r.failed}
            for r in full
        },
        "incremental": {r.channel: {"rendered": r.rendered, "updated": r.updated, "failed": r.failed} for r in again},
    }


def run(ctx: Context) -> list[Metric]:
    quick = ctx.settings.mode == "quick"
    products = 4_000 if quick else TARGET_PRODUCTS
    store = make_store(ctx.workdir / "publish", products=products, stocked=500)
    result = asyncio.run(_publish(store.config, 0.01))
    failed = sum(v["failed"] for v in result["full"].values()) + sum(
        v["failed"] for v in result["incremental"].values()
    )
    wrong = [c for c, v in result["incremental"].items() if v["rendered"] > result["changed_products"]]
    note = "" if products == TARGET_PRODUCTS else f"{products:,} products (--quick): the target is for 100,000"
    details = {
        "products": products,
        "channels": len(result["full"]),
        "load_seconds": store.timings.get("load_seconds"),
        **result,
    }
    return [
        Metric(
            "publish_full_seconds",
            round(result["full_s"], 2),
            "s",
            FULL_TARGET_S if not quick else None,
            "<=",
            errors=failed,
            details=details,
            note=note,
        ),
        Metric(
            "publish_incremental_seconds",
            round(result["incremental_s"], 2),
            "s",
            INCREMENTAL_TARGET_S if not quick else None,
            "<=",
            errors=failed + len(wrong),
            details={
                "changed_products": result["changed_products"],
                "rendered_per_channel": {c: v["rendered"] for c, v in result["incremental"].items()},
            },
            note=note,
        ),
    ]
