"""``catalog_read_ratio``: ``GET /v1/products?limit=20`` through the gateway, against a bare
Litestar handler returning the same 20 products from memory, on the same server (granian, one
worker), load generator, concurrency and duration. Servers run one at a time, alternating when
there are several rounds; the ratio is of the medians."""

from __future__ import annotations

import os
import statistics

from benchmarks import loadgen
from benchmarks.client import LOOPBACK
from benchmarks.results import Context, Metric
from benchmarks.servers import bare_argv, cpu_seconds, free_port, gateway_argv, serve
from benchmarks.store import make_store

PATH = "/v1/products?limit=20"
TARGET = 0.5


def _fetch(port: int, key: str) -> bytes:
    import httpx

    response = httpx.get(f"http://{LOOPBACK}:{port}{PATH}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    response.raise_for_status()
    return response.content


def run(ctx: Context) -> list[Metric]:
    s = ctx.settings
    ctx.log(f"catalog: building a SQLite store with {s.catalog_products} products")
    store = make_store(ctx.workdir / "catalog", products=s.catalog_products)
    fixture = ctx.workdir / "catalog" / "page.json"
    auth = {"Authorization": f"Bearer {store.key}"}
    runs: dict[str, list[loadgen.Throughput]] = {"gateway": [], "bare": []}
    cpu_ms: dict[str, list[float]] = {"gateway": [], "bare": []}
    sizes: dict[str, int] = {}
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ctx.repo_root), os.environ.get("PYTHONPATH")]))}

    def measure(name: str, port: int, headers: dict[str, str], pid: int) -> None:
        if s.warmup_seconds:
            loadgen.load(
                port,
                PATH,
                headers,
                connections=s.connections,
                seconds=s.warmup_seconds,
                use_wrk=ctx.use_wrk,
                wrk_threads=ctx.wrk_threads,
            )
        cpu_before = cpu_seconds(pid)
        result = loadgen.load(
            port,
            PATH,
            headers,
            connections=s.connections,
            seconds=s.catalog_seconds,
            use_wrk=ctx.use_wrk,
            wrk_threads=ctx.wrk_threads,
        )
        # Server CPU per request: far steadier than req/s when other work shares the machine.
        cpu_ms[name].append((cpu_seconds(pid) - cpu_before) * 1000 / max(1, result.requests))
        ctx.log(
            f"catalog: {name} {result.rps:,.0f} req/s, {cpu_ms[name][-1]:.3f} CPU ms/request "
            f"({result.generator}, {result.errors} errors)"
        )
        runs[name].append(result)

    for round_no in range(s.catalog_rounds):
        port = free_port()
        with serve(
            "gateway", gateway_argv(store.config, port), port=port, cwd=store.directory, log_dir=ctx.log_dir, env=env
        ) as served:
            if round_no == 0:
                body = _fetch(port, store.key)
                fixture.write_bytes(body)
                sizes["gateway"] = len(body)
            measure("gateway", port, auth, served.pid)
        port = free_port()
        with serve(
            "bare",
            bare_argv(port),
            port=port,
            cwd=ctx.repo_root,
            log_dir=ctx.log_dir,
            env={**env, "OMNIRETAIL_BENCH_FIXTURE": str(fixture)},
        ) as served:
            if round_no == 0:
                sizes["bare"] = len(_fetch(port, store.key))
            measure("bare", port, {}, served.pid)

    gateway_cpu = statistics.median(cpu_ms["gateway"])
    bare_cpu = statistics.median(cpu_ms["bare"])
    gateway_rps = statistics.median(r.rps for r in runs["gateway"])
    bare_rps = statistics.median(r.rps for r in runs["bare"])
    errors = sum(r.errors for rs in runs.values() for r in rs)
    generator = runs["gateway"][0].generator
    note = "" if sizes.get("gateway") == sizes.get("bare") else "response sizes differ"
    if generator != "wrk":
        note = (note + "; " if note else "") + "python client: the bare figure may be client-bound (ratio overstated)"
    return [
        Metric(
            "catalog_read_ratio",
            round(gateway_rps / bare_rps, 3) if bare_rps else None,
            "x",
            target=TARGET,
            errors=errors,
            note=note,
            details={
                "gateway_rps": round(gateway_rps, 1),
                "bare_rps": round(bare_rps, 1),
                "gateway_cpu_ms_per_request": round(gateway_cpu, 4),
                "bare_cpu_ms_per_request": round(bare_cpu, 4),
                # bare CPU / gateway CPU per request: the same comparison in server CPU time.
                "cpu_ratio": round(bare_cpu / gateway_cpu, 3) if gateway_cpu else None,
                "generator": generator,
                "connections": s.connections,
                "seconds_each": s.catalog_seconds,
                "rounds": s.catalog_rounds,
                "response_bytes": sizes,
                "products_in_store": store.products,
                "runs": {name: [r.as_dict() for r in rs] for name, rs in runs.items()},
            },
        )
    ]
