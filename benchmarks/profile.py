"""Where a request's time goes, in-process: ``python -m benchmarks.profile {checkout,catalog}``.

Builds a throwaway store (SQLite, or PostgreSQL with ``--postgres-url``: the database
``omniretail_bench`` there is dropped and created), runs the gateway app in this process through
``httpx.ASGITransport`` (no server, no lifespan: the embedded outbox worker does not run), and
reports for N repetitions of the flow:

* wall and CPU milliseconds per repetition (CPU of this process, all threads);
* CPU milliseconds and SQL statements (those the code executes: BEGIN, COMMIT and SAVEPOINTs
  not counted) per call, and for the outbox worker's delivery of the repetitions' events
  afterwards (on SQLite the gateway runs that worker in-process, so a served order costs both);
* cProfile self time grouped by package, and the top functions.

On PostgreSQL, time spent waiting for the server's answers shows up as ``select.epoll.poll``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.store import Store, make_store

_GROUPS = (
    ("/sqlalchemy/", "sqlalchemy"),
    ("/litestar/", "litestar"),
    ("/msgspec/", "msgspec"),
    ("/httpx/", "httpx (client side)"),
    ("/httpcore/", "httpx (client side)"),
    ("/asyncio/", "asyncio"),
    ("/omniretail/", "omniretail"),
)


def _group(filename: str, function: str) -> str:
    if filename == "~":
        if "greenlet" in function:
            return "greenlet"
        if "sqlite3" in function:
            return "sqlite3 (the database itself)"
        if "epoll" in function or "SimpleQueue" in function or "_thread.lock" in function:
            return "thread hand-offs (queue put, GIL, waiting in epoll)"
        return "builtins"
    for needle, name in _GROUPS:
        if needle in filename:
            return name
    return "other"


async def _profile(
    args: argparse.Namespace, store: Store
) -> tuple[float, float, dict[str, float], dict[str, float], cProfile.Profile]:
    from omniretail.gateway.app import create_app
    from omniretail.kernel import Kernel
    from omniretail.storage.postgres import PgConnection
    from omniretail.storage.sqlite_inline import InlineConnection
    from omniretail.worker import OutboxWorker

    kernel = Kernel.from_path(store.config)
    app = create_app(kernel)
    await kernel.start()
    statements: Counter[str] = Counter()
    step_cpu: dict[str, float] = defaultdict(float)
    current = ["setup"]

    # Counted where the code hands a statement to the connection: prepared statements run by
    # the driver directly never reach SQLAlchemy's cursor events.
    for cls in (InlineConnection, PgConnection):
        for name in ("execute", "exec_driver_sql"):
            original = getattr(cls, name)

            async def counted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                statements[current[0]] += 1
                return await _original(self, *args, **kwargs)

            setattr(cls, name, counted)

    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {store.key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench.local", headers=headers) as client:

        async def call(step: str, method: str, url: str, expect: int, **kw: Any) -> httpx.Response:
            current[0] = step
            started = time.process_time()
            response = await client.request(method, url, **kw)
            step_cpu[step] += time.process_time() - started
            if response.status_code != expect:
                raise RuntimeError(f"{step}: {response.status_code} {response.text[:300]}")
            return response

        async def checkout(n: int) -> None:
            cart = (await call("create", "POST", "/v1/carts", 201, json={})).json()["id"]
            sku = store.stocked_skus[n % len(store.stocked_skus)]
            await call("add_line", "POST", f"/v1/carts/{cart}/lines", 200, json={"sku": sku, "quantity": 1})
            await call(
                "checkout",
                "POST",
                f"/v1/carts/{cart}/checkout",
                201,
                json={"email": f"p-{uuid.uuid4().hex}@example.com"},
                headers={"Idempotency-Key": f'"{uuid.uuid4()}"'},
            )

        async def catalog(_n: int) -> None:
            await call("list", "GET", "/v1/products?limit=20", 200)

        flows: dict[str, Callable[[int], Awaitable[None]]] = {"checkout": checkout, "catalog": catalog}
        flow = flows[args.flow]
        for n in range(20):
            await flow(n)
        await OutboxWorker(kernel).drain()
        statements.clear()
        step_cpu.clear()
        # First without the profiler, for honest timings; then under it.
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(args.n):
            await flow(n)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per_order = {step: n / args.n for step, n in statements.items()}
        # The outbox worker's share: what delivering these repetitions' events costs (on SQLite
        # the gateway runs this worker in-process).
        current[0] = "outbox worker"
        started = time.process_time()
        await OutboxWorker(kernel).drain()
        step_cpu["outbox worker"] += time.process_time() - started
        per_order["outbox worker"] = statements["outbox worker"] / args.n
        measured = dict(step_cpu)  # before the profiler slows everything down
        profiler = cProfile.Profile()
        profiler.enable()
        for n in range(args.n):
            await flow(n)
        profiler.disable()
    await kernel.close()
    return wall, cpu, per_order, measured, profiler


def report(
    args: argparse.Namespace,
    wall: float,
    cpu: float,
    statements: dict[str, float],
    step_cpu: dict[str, float],
    profiler: cProfile.Profile,
) -> None:
    print(f"{args.flow}: {wall / args.n * 1000:.2f} ms wall, {cpu / args.n * 1000:.2f} ms CPU per repetition")
    print("per call (client included), then the outbox worker's delivery of the repetitions' events:")
    for step, seconds in step_cpu.items():
        print(f"  {step:<14} {seconds / args.n * 1000:6.2f} ms CPU  {statements.get(step, 0):5.1f} SQL statements")
    stats = pstats.Stats(profiler)
    groups: Counter[str] = Counter()
    total = 0.0
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        groups[_group(filename, function)] += tottime
        total += tottime
    print("\nself time by package:")
    for name, seconds in groups.most_common():
        print(f"  {100 * seconds / total:5.1f}%  {name}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("flow", choices=["checkout", "catalog"])
    parser.add_argument("-n", type=int, default=200, help="repetitions to profile (default 200)")
    parser.add_argument("--products", type=int, default=200, help="products in the store (default 200)")
    parser.add_argument("--top", type=int, default=30, help="functions to list (default 30)")
    parser.add_argument("--postgres-url", default="", help="profile on PostgreSQL (this server) instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omniretail-profile-") as tmp:
        backend = "postgres" if args.postgres_url else "sqlite"
        store = make_store(Path(tmp), backend=backend, products=args.products, postgres_url=args.postgres_url)
        report(args, *asyncio.run(_profile(args, store)))


if __name__ == "__main__":
    main()
