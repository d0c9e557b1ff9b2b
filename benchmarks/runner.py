"""The registry of benchmarks and the command line: ``python -m benchmarks``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.loadgen import find_wrk
from benchmarks.results import Context, Metric, Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "OMNIRETAIL_BENCH_POSTGRES_URL"


@dataclass(frozen=True)
class Benchmark:
    """A group of metrics measured together (they share a store and a server)."""

    name: str
    metrics: tuple[str, ...]
    run: Callable[[Context], list[Metric]]
    description: str


def _registry() -> list[Benchmark]:
    from benchmarks.suites import catalog, checkout, memory, publish

    return [
        Benchmark(
            "catalog",
            ("catalog_read_ratio",),
            catalog.run,
            "GET /v1/products?limit=20: gateway vs bare Litestar, same server and load",
        ),
        Benchmark(
            "checkout-sqlite",
            ("checkout_orders_per_s_sqlite", "checkout_sequential_ms"),
            checkout.run_sqlite,
            "guest checkouts on SQLite: 20 clients, then one at a time",
        ),
        Benchmark(
            "checkout-postgres",
            ("checkout_orders_per_s_postgres",),
            checkout.run_postgres,
            "guest checkouts on PostgreSQL: 20 clients",
        ),
        Benchmark(
            "memory",
            ("gateway_rss_mb",),
            memory.run,
            "gateway RSS with 5k (--quick) or 100k products",
        ),
        Benchmark(
            "publish",
            ("publish_full_seconds", "publish_incremental_seconds"),
            publish.run,
            "publish 4k (--quick) or 100k products to the five channels, then again after a 1 % change",
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [b.name for b in _registry()]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="omniretail benchmarks. Servers run on 127.0.0.1 only, one at a time; each "
        "comparison is measured in the same run. Progress goes to stderr.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about 2-3 minutes in all)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only these benchmarks (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_ENV, ""),
        help=f"a PostgreSQL server for the postgres checkout (default: ${POSTGRES_ENV}); the benchmark "
        "drops and creates the database omniretail_bench there and touches no other",
    )
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave a core to the server)"
    )
    parser.add_argument("--connections", type=int, default=None, help="connections for catalog reads (default 32)")
    parser.add_argument("--seconds", type=float, default=None, help="override the measured seconds of each load run")
    parser.add_argument("--rss-products", type=int, default=None, help="products for the memory benchmark")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores and server logs")
    return parser.parse_args(argv)


def render_table(ctx: Context, metrics: list[Metric]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"omniretail benchmarks ({ctx.settings.mode})")
    for col in ("metric", "value", "target", "status", "details"):
        table.add_column(col, overflow="fold")
    for m in metrics:
        value = "-" if m.value is None else f"{m.value:,.3g}" if m.unit == "x" else f"{m.value:,.1f}"
        target = "" if m.target is None else f"{m.direction} {m.target:g}"
        d = m.details
        if m.name == "catalog_read_ratio" and d:
            info = (
                f"gateway {d['gateway_rps']:,.0f} req/s, bare {d['bare_rps']:,.0f} req/s ({d['generator']}); "
                f"server CPU/request {d['gateway_cpu_ms_per_request']:.3f} vs {d['bare_cpu_ms_per_request']:.3f} ms"
            )
        elif m.name.startswith("checkout_orders") and d:
            info = (
                f"p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms, {d['ok']} orders; "
                f"server CPU {d['server_cpu_ms_per_order']:.1f} ms/order"
            )
        elif m.name == "checkout_sequential_ms" and d:
            cpu = d["server_cpu_ms_per_order"]
            info = f"p90 {d['p90_ms']:.1f} ms, {d['runs']} orders; server CPU {cpu:.1f} ms/order"
        elif m.name == "gateway_rss_mb" and d:
            info = f"{d['products']:,} products; both processes PSS {d['after_reads']['tree_pss_mb']} MB"
            if "estimated_mb_at_100k" in d:
                info += f"; ~{d['estimated_mb_at_100k']:,.0f} MB at 100k (linear)"
        else:
            info = ""
        info = "; ".join(x for x in (info, m.skipped, m.note) if x)
        style = {"met": "green", "MISSED": "red", "skipped": "yellow"}.get(m.status, "red" if m.errors else "")
        table.add_row(m.name, f"{value} {m.unit}", target, f"[{style}]{m.status}[/]" if style else m.status, info)
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.for_mode(args.quick)
    if args.connections:
        settings.connections = args.connections
    if args.seconds:
        settings.catalog_seconds = settings.checkout_seconds = args.seconds
    if args.rss_products:
        settings.rss_products = args.rss_products
    workdir = Path(tempfile.mkdtemp(prefix="omniretail-bench-"))
    ctx = Context(
        settings=settings,
        workdir=workdir,
        repo_root=REPO_ROOT,
        postgres_url=args.postgres_url,
        use_wrk=not args.no_wrk,
        wrk_threads=args.wrk_threads,
    )
    chosen = [b for b in _registry() if not args.only or b.name in args.only]
    metrics: list[Metric] = []
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    generator = "wrk" if ctx.use_wrk and find_wrk() else "python-asyncio"
    ctx.log(f"benchmarks ({settings.mode}) in {workdir}; load generator: {generator}")
    try:
        for bench in chosen:
            t0 = time.perf_counter()
            try:
                metrics.extend(bench.run(ctx))
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                ctx.console.print(traceback.format_exc())
                metrics.extend(
                    Metric(name, None, "", errors=1, skipped=f"failed: {type(exc).__name__}: {exc}"[:500])
                    for name in bench.metrics
                )
            ctx.log(f"{bench.name}: {time.perf_counter() - t0:.1f} s")
    finally:
        if args.keep:
            ctx.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    verdicts = [m.met is True for m in metrics if m.met is not None or m.errors]
    report = {
        "mode": settings.mode,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_generator": generator,
            "loadavg_start": load_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "all_targets_met": all(verdicts) if verdicts else None,
        "targets_met": f"{sum(verdicts)}/{len(verdicts)}",
        "metrics": {m.name: m.as_dict() for m in metrics},
    }
    if args.json:
        sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
    else:
        render_table(ctx, metrics)
    return 0 if all(not m.errors for m in metrics) else 1
