"""Guest checkout through a served gateway: create a cart, add a line, check out with an
Idempotency-Key; an order counts when all three answered as they should (201, 200, 201).

* ``checkout_orders_per_s_sqlite`` / ``_postgres``: complete orders per second with 20 clients,
  each on its own keep-alive connection, back to back; p50/p99 of the whole three-call flow. The
  gateway runs as each store is deployed: one process on SQLite (the embedded default, its outbox
  worker in-process), one per core on PostgreSQL (the outbox worker is a separate
  ``omniretail worker`` there, not started here).
* ``checkout_sequential_ms``: one client, one order at a time (SQLite); median of the flow. It runs
  first, on a server with nothing else to do: after a concurrent run the embedded outbox worker
  spends seconds delivering that run's events (loyalty points, webhooks), and a sequential run
  then would measure that backlog rather than a checkout.

Every order buys one unit of a random SKU among 128 stocked with 1,000,000 units each, so no
order fails for stock; every guest gives a new email address (a new customer record each).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections import Counter, defaultdict

import msgspec
from sqlalchemy.engine import make_url

from benchmarks.client import Connection, LoadResult, build_request, closed_loop, percentile
from benchmarks.results import Context, Metric
from benchmarks.servers import cpu_seconds, free_port, gateway_argv, serve
from benchmarks.store import Store, make_store

TARGET_ORDERS_PER_S = 300.0
TARGET_SEQUENTIAL_MS = 15.0


class _Id(msgspec.Struct):
    id: str


_id = msgspec.json.Decoder(_Id)


class OrderFlow:
    """The three calls of one guest checkout, with per-step latencies and status counts."""

    def __init__(self, port: int, store: Store, run_tag: str) -> None:
        self.port = port
        self.skus = store.stocked_skus
        self.auth = {"Authorization": f"Bearer {store.key}"}
        self.create_raw = build_request("POST", "/v1/carts", port, self.auth, b"{}")
        self.tag = run_tag
        self.steps: dict[str, list[float]] = defaultdict(list)
        self.statuses: Counter[str] = Counter()
        self.record = True

    async def __call__(self, conn: Connection, n: int) -> str | None:
        t0 = time.perf_counter()
        r = await conn.send_raw(self.create_raw)
        t1 = time.perf_counter()
        self.statuses[f"create {r.status}"] += 1
        if r.status != 201:
            return f"create {r.status}"
        cart_id = _id.decode(r.body).id
        line = msgspec.json.encode({"sku": random.choice(self.skus), "quantity": 1})
        r = await conn.request("POST", f"/v1/carts/{cart_id}/lines", self.auth, line)
        t2 = time.perf_counter()
        self.statuses[f"add_line {r.status}"] += 1
        if r.status != 200:
            return f"add_line {r.status}"
        body = msgspec.json.encode({"email": f"guest-{self.tag}-{n}@example.com"})
        headers = {**self.auth, "Idempotency-Key": f'"{uuid.uuid4()}"'}
        r = await conn.request("POST", f"/v1/carts/{cart_id}/checkout", headers, body)
        t3 = time.perf_counter()
        self.statuses[f"checkout {r.status}"] += 1
        if r.status != 201:
            return f"checkout {r.status}"
        if self.record:
            self.steps["create_ms"].append((t1 - t0) * 1000)
            self.steps["add_line_ms"].append((t2 - t1) * 1000)
            self.steps["checkout_ms"].append((t3 - t2) * 1000)
        return None

    def step_summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {"p50": round(percentile(v, 50), 3), "p99": round(percentile(v, 99), 3)}
            for name, v in self.steps.items()
        }


async def _concurrent(flow: OrderFlow, ctx: Context, pid: int) -> tuple[LoadResult, float]:
    """The measured run, and the server's CPU seconds during it."""
    s = ctx.settings
    flow.record = False
    if s.warmup_seconds:
        await closed_loop(flow.port, flow, concurrency=s.checkout_clients, duration=s.warmup_seconds, max_units=100_000)
    flow.record = True
    flow.statuses.clear()
    cpu = cpu_seconds(pid)
    result = await closed_loop(
        flow.port,
        flow,
        concurrency=s.checkout_clients,
        duration=s.checkout_seconds,
        max_units=int(s.checkout_seconds * 20_000),
    )
    return result, cpu_seconds(pid) - cpu


async def _sequential(flow: OrderFlow, runs: int, pid: int) -> tuple[list[float], Counter[str], float]:
    conn = Connection(flow.port)
    times: list[float] = []
    failures: Counter[str] = Counter()
    try:
        flow.record = False
        for n in range(min(20, runs)):  # warm-up
            await asyncio.wait_for(flow(conn, -n - 1), 30)
        flow.record = True
        flow.statuses.clear()
        cpu = cpu_seconds(pid)
        deadline = time.perf_counter() + 120
        for n in range(runs):
            if time.perf_counter() > deadline:
                failures["stopped at the 120 s limit"] += 1
                break
            started = time.perf_counter()
            failure = await asyncio.wait_for(flow(conn, n), 30)
            if failure is None:
                times.append((time.perf_counter() - started) * 1000)
            else:
                failures[failure] += 1
        cpu = cpu_seconds(pid) - cpu
    finally:
        await conn.close()
    return times, failures, cpu


def _backend(ctx: Context, backend: str, *, sequential: bool) -> list[Metric]:
    s = ctx.settings
    ctx.log(f"checkout: building a {backend} store with {s.catalog_products} products")
    store = make_store(
        ctx.workdir / f"checkout-{backend}",
        backend=backend,
        products=s.catalog_products,
        postgres_url=ctx.postgres_url,
    )
    metrics: list[Metric] = []
    port = free_port()
    workers = gateway_workers(backend)
    argv = gateway_argv(store.config, port, workers)
    with serve(f"gateway-{backend}", argv, port=port, cwd=store.directory, log_dir=ctx.log_dir) as served:
        if sequential:
            flow = OrderFlow(port, store, f"{backend}-s")
            times, failures, cpu = asyncio.run(_sequential(flow, s.sequential_runs, served.pid))
            median = statistics.median(times) if times else None
            ctx.log(f"checkout: {backend} sequential median {median or 0:.2f} ms over {len(times)} orders")
            metrics.append(
                Metric(
                    "checkout_sequential_ms",
                    round(median, 2) if median is not None else None,
                    "ms",
                    target=TARGET_SEQUENTIAL_MS,
                    direction="<=",
                    errors=sum(failures.values()),
                    details={
                        "runs": len(times),
                        "server_cpu_ms_per_order": round(cpu * 1000 / max(1, len(times) + sum(failures.values())), 2),
                        "p90_ms": round(percentile(times, 90), 2),
                        "p99_ms": round(percentile(times, 99), 2),
                        "min_ms": round(min(times), 2) if times else None,
                        "failures": dict(failures),
                        "steps_ms": flow.step_summary(),
                    },
                )
            )
        flow = OrderFlow(port, store, f"{backend}-c")
        result, cpu = asyncio.run(_concurrent(flow, ctx, served.pid))
        transport = store_transport(ctx.postgres_url) if backend == "postgres" else None
        summary = result.summary()
        cpu_per_order = cpu * 1000 / max(1, result.ok + result.failed)
        ctx.log(
            f"checkout: {backend} {result.rate:,.0f} orders/s, p50 {summary['p50_ms']} ms, "
            f"p99 {summary['p99_ms']} ms, {cpu_per_order:.1f} server CPU ms/order, {result.failed} failed"
        )
        metrics.append(
            Metric(
                f"checkout_orders_per_s_{backend}",
                round(result.rate, 1),
                "orders/s",
                target=TARGET_ORDERS_PER_S,
                errors=result.failed,
                note=f"{workers} gateway process{'es' if workers > 1 else ''}{f', {transport}' if transport else ''}",
                details={
                    "clients": s.checkout_clients,
                    "gateway_workers": workers,
                    **({"database_transport": transport} if transport else {}),
                    **summary,
                    # Server CPU per order: steadier than orders/s when other work shares the machine;
                    # 1000 / this is the rate one fully busy core could sustain.
                    "server_cpu_ms_per_order": round(cpu_per_order, 2),
                    "statuses": dict(flow.statuses),
                    "steps_ms": flow.step_summary(),
                },
            )
        )
    return metrics


def store_transport(url: str) -> str:
    """How the gateway reaches PostgreSQL: "unix socket" (``?host=/a/directory``), "tcp" (a
    host name or address) or "driver default" (no host: asyncpg tries the usual socket
    directories, then localhost)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or ""
    host = host[0] if isinstance(host, tuple) else host
    return "driver default" if not host else "unix socket" if host.startswith("/") else "tcp"


def gateway_workers(backend: str) -> int:
    """Gateway processes, as each store is deployed: SQLite is the embedded default, one process
    (a second one only queues on the file's write lock: measured slower); PostgreSQL is the
    production store, one process per core (docs/deployment.md)."""
    return 1 if backend == "sqlite" else max(1, os.cpu_count() or 1)


def run_sqlite(ctx: Context) -> list[Metric]:
    return _backend(ctx, "sqlite", sequential=True)


def run_postgres(ctx: Context) -> list[Metric]:
    if not ctx.postgres_url:
        return [
            Metric(
                "checkout_orders_per_s_postgres",
                None,
                "orders/s",
                target=TARGET_ORDERS_PER_S,
                skipped="no PostgreSQL: pass --postgres-url or set OMNIRETAIL_BENCH_POSTGRES_URL",
            )
        ]
    return _backend(ctx, "postgres", sequential=False)
