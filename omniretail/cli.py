"""The ``omniretail`` command."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from omniretail.config import DEFAULT_CONFIG_NAME, ConfigError
from omniretail.host import PluginError

T = TypeVar("T")
EXIT_CONFIG = 2


def fail_config(message: str) -> None:
    click.echo(f"omniretail: config error: {message}", err=True)
    sys.exit(EXIT_CONFIG)


def handles_config_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Config and plugin mistakes: one line on stderr naming the key, exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail_config(str(exc))
        except PluginError as exc:
            fail_config(f"plugins: {exc}")
        raise AssertionError("unreachable")

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def kernel_from(ctx: click.Context) -> Any:
    from omniretail.kernel import Kernel

    return Kernel.from_path(ctx.obj.get("config"))


@click.group()
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="OMNIRETAIL_CONFIG",
    help="Configuration file (default: ./omniretail.toml).",
)
@click.version_option(package_name="omniretail")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """omniretail: one catalog, one stock pool, one customer record, one order book."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Folder to initialise (default: the current one).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing omniretail.toml.")
@click.option("--no-sample", is_flag=True, help="Do not load the sample catalog.")
@click.option(
    "--database-url",
    default=None,
    help="Database for the starter config (default: a SQLite file; e.g. env:OMNIRETAIL_DATABASE_URL).",
)
@handles_config_errors
def init(directory: Path, force: bool, no_sample: bool, database_url: str | None) -> None:
    """Write a starter omniretail.toml (five channels, SQLite) and load a sample catalog."""
    from omniretail.kernel import Kernel
    from omniretail.starter import STARTER_TOML, load_catalog, sample_catalog

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DEFAULT_CONFIG_NAME
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (use --force to overwrite)")
    text = STARTER_TOML
    if database_url:
        text = text.replace('url = "sqlite:///omniretail.db"', f"url = {json.dumps(database_url)}")
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}")

    async def go() -> None:
        async with Kernel.from_path(path) as kernel:
            if not kernel.db.is_sqlite:
                from omniretail.storage import migrate

                await migrate.upgrade(kernel.db)
            if not no_sample:
                products, rows = await load_catalog(kernel, sample_catalog())
                click.echo(f"loaded {products} products and {rows} stock levels into {kernel.db.url}")

    run(go())
    click.echo("next: omniretail serve")


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
@handles_config_errors
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations (run once per deploy on PostgreSQL; SQLite migrates itself)."""
    from omniretail.storage import migrate

    kernel = kernel_from(ctx)

    async def go() -> None:
        await migrate.upgrade(kernel.db, revision)
        click.echo(f"database at {await migrate.current_revision(kernel.db)}")
        await kernel.close()

    run(go())


@db.command("current")
@click.pass_context
@handles_config_errors
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database and of this code."""
    from omniretail.storage import migrate

    kernel = kernel_from(ctx)

    async def go() -> None:
        click.echo(f"database: {await migrate.current_revision(kernel.db)}  code: {migrate.head_revision()}")
        await kernel.close()

    run(go())


@main.command()
@click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
@click.pass_context
@handles_config_errors
def worker(ctx: click.Context, once: bool) -> None:
    """Deliver outbox events to plugins and outbound webhooks, run queued jobs (publishing asked
    for through the API) and the channels' periodic tasks. Run several on PostgreSQL."""
    import signal

    from omniretail.background import JobRunner, TaskRunner, run_background
    from omniretail.webhooks import WebhookDeliverer
    from omniretail.worker import OutboxWorker

    kernel = kernel_from(ctx)

    async def go() -> None:
        async with kernel:
            w = OutboxWorker(kernel)
            deliverer = WebhookDeliverer(kernel, name=w.name)
            if once:
                click.echo(f"delivered {await w.drain()} event(s)")
                jobs = JobRunner(kernel, name=w.name)
                done = 0
                while await jobs.run_once() is not None:
                    done += 1
                click.echo(f"ran {done} job(s) and {await TaskRunner(kernel, name=w.name).run_due()} periodic task(s)")
                # Jobs and tasks raise events too (a publish, an ingested order): deliver them.
                await w.drain()
                click.echo(f"sent {await deliverer.drain()} webhook delivery attempt(s)")
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            click.echo(f"worker {w.name} running (Ctrl+C stops)")
            await asyncio.gather(w.run(stop), deliverer.run(stop), run_background(kernel, stop))

    run(go())


@main.command()
@click.option("--host", default=None, help="Address to bind (default: gateway.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: gateway.port, 8000).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: gateway.workers).")
@click.pass_context
@handles_config_errors
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway (Litestar on granian)."""
    import os

    from omniretail.config import find_config

    kernel = kernel_from(ctx)  # validates the whole configuration before anything starts
    from omniretail.gateway.app import plugin_routers

    plugin_routers(kernel)  # and the plugins' routes
    settings = kernel.config.gateway
    path = find_config(ctx.obj.get("config"))
    if path is not None:
        os.environ["OMNIRETAIL_CONFIG"] = str(path.resolve())
    from granian import Granian
    from granian.constants import Interfaces

    server = Granian(
        "omniretail.gateway.asgi:app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_access=False,
    )
    click.echo(
        f"omniretail gateway on http://{host or settings.host}:{port or settings.port} "
        f"({kernel.db.dialect}, channels: {', '.join(sorted(kernel.channels)) or 'none'})"
    )
    server.serve()


@main.group()
def keys() -> None:
    """API keys (stored hashed; a key is bound to one channel and scopes)."""


@keys.command("create")
@click.option("--channel", required=True, help="The channel the key belongs to (or 'admin').")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["storefront", "admin"]),
    help="Scope(s); default storefront (admin for --channel admin).",
)
@click.option("--name", default="", help="A label for people.")
@click.pass_context
@handles_config_errors
def keys_create(ctx: click.Context, channel: str, scopes: tuple[str, ...], name: str) -> None:
    """Create a key. The key itself is printed alone on the last line, once."""
    from omniretail.gateway.keys import KeyStore

    kernel = kernel_from(ctx)
    if channel != "admin" and channel not in kernel.channels:
        enabled = ", ".join(sorted(kernel.channels)) or "none"
        raise click.BadParameter(
            f"no enabled channel {channel!r} (enabled: {enabled}, or admin)", param_hint="--channel"
        )
    chosen = scopes or (("admin",) if channel == "admin" else ("storefront",))

    async def go() -> str:
        async with kernel:
            key, secret = await KeyStore(kernel.db).create(channel, chosen, name=name, now=kernel.clock())
        click.echo(f"created key {key.id} for channel {channel} with scope(s) {' '.join(key.scopes)}")
        return secret

    click.echo(run(go()))


@main.group()
def catalog() -> None:
    """The catalog: import products (and stock)."""


@catalog.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@handles_config_errors
def catalog_import(ctx: click.Context, file: Path) -> None:
    """Import FILE: CSV (one row per variant) or JSON (a list of products, or
    {"products": [...], "stock": [{sku, location_id, on_hand}]}). All or nothing."""
    from omniretail.domain.errors import DomainError
    from omniretail.starter import load_catalog

    kernel = kernel_from(ctx)
    text = file.read_text(encoding="utf-8-sig")

    async def go() -> None:
        async with kernel:
            if file.suffix.lower() == ".csv":
                result = await kernel.catalog.import_csv(text, actor="cli")
                for error in result.errors:
                    click.echo(f"{file}:{error.row}: {error.field or ''}: {error.message}", err=True)
                if result.errors:
                    raise SystemExit(1)
                click.echo(f"created {result.created}, updated {result.updated}, unchanged {result.unchanged}")
                return
            data = json.loads(text)
            if isinstance(data, list):
                result = await kernel.catalog.import_json(json.dumps(data).encode(), actor="cli")
                click.echo(f"created {result.created}, updated {result.updated}, unchanged {result.unchanged}")
            else:
                products, rows = await load_catalog(kernel, data, actor="cli")
                click.echo(f"imported {products} products and {rows} stock levels")

    try:
        run(go())
    except (DomainError, ValueError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None


@catalog.command("publish")
@click.option("--channel", default=None, help="Only this channel (default: every enabled channel).")
@click.option(
    "--full",
    is_flag=True,
    help="Look at every product, not only what changed since the channel's last run.",
)
@click.pass_context
@handles_config_errors
def catalog_publish(ctx: click.Context, channel: str | None, full: bool) -> None:
    """Publish the catalog to the enabled channels: only what changed is rendered again."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from omniretail.domain.errors import DomainError
    from omniretail.publishing import Publisher

    kernel = kernel_from(ctx)
    console = Console(width=120)

    async def go() -> list[Any]:
        async with kernel:
            publisher = Publisher(kernel)
            runs = []
            with Progress(
                TextColumn("{task.description:<12}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
                disable=not console.is_terminal and not sys.stdout.isatty(),
            ) as bar:
                for name in publisher.channels(channel):
                    task = bar.add_task(name, total=None)

                    def progress(done: int, total: int, _task: Any = task) -> None:
                        bar.update(_task, completed=done, total=total)

                    runs.append(await publisher.publish(name, trigger="cli", progress=progress, full=full))
            return runs

    try:
        runs = run(go())
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    table = Table(title="Publication")
    for col in (
        "channel",
        "mode",
        "products",
        "rendered",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "withdrawn",
        "failed",
        "run",
    ):
        table.add_column(col, justify="right" if col not in ("channel", "run") else "left")
    for r in runs:
        table.add_row(
            r.channel,
            r.mode or "",
            str(r.total),
            str(r.rendered),
            str(r.created),
            str(r.updated),
            str(r.unchanged),
            str(r.rejected),
            str(r.withdrawn),
            str(r.failed),
            r.id,
        )
    console.print(table)
    if any(r.failed for r in runs):
        raise SystemExit(1)


@main.command()
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an SVG bar chart of revenue per channel to this file.",
)
@click.pass_context
@handles_config_errors
def report(ctx: click.Context, chart_path: Path | None) -> None:
    """Sales and orders per channel, journeys that crossed channels, handoff conversion."""
    from omniretail.reporting import build_report, chart_svg

    kernel = kernel_from(ctx)

    async def go() -> Any:
        async with kernel:
            return await build_report(kernel)

    result = run(go())
    print_report(result)
    if chart_path is not None:
        chart_path.write_text(chart_svg(result), encoding="utf-8")
        click.echo(f"chart written to {chart_path}")


def print_report(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from omniretail.domain.money import Money

    console = Console(width=120)
    sales = Table(title="Sales per channel")
    for col in ("channel", "orders", "revenue", "units returned"):
        sales.add_column(col, justify="left" if col == "channel" else "right")
    for row in result.sales:
        sales.add_row(
            row.channel,
            str(row.orders),
            Money(amount=row.revenue, currency=row.currency).feed_string(),
            str(row.units_returned),
        )
    console.print(sales)
    journeys = Table(title=f"Journeys across channels ({result.cross_channel_orders} of {result.orders} orders)")
    journeys.add_column("started on")
    journeys.add_column("finished on")
    journeys.add_column("orders", justify="right")
    for j in result.journeys:
        journeys.add_row(j.started_on, j.finished_on, str(j.orders))
    console.print(journeys)
    h = result.handoffs
    console.print(
        f"handoffs: {h.created} created, {h.claimed} claimed, {h.converted} became orders "
        f"({h.conversion:.0%} conversion)"
    )


@main.command()
@click.pass_context
@handles_config_errors
def channels(ctx: click.Context) -> None:
    """Installed channel plugins, and the capability matrix of the enabled ones: which journey
    steps each carries, with the gaps flagged."""
    from rich.console import Console
    from rich.table import Table

    from omniretail.matrix import capability_matrix

    kernel = kernel_from(ctx)
    console = Console(width=140)
    table = Table(title="Installed channels")
    for col in ("channel", "title", "enabled", "sells from"):
        table.add_column(col)
    for spec in sorted(kernel.installed_channels(), key=lambda s: s.name):
        enabled = spec.name in kernel.channels
        locs = ", ".join(kernel.channels[spec.name].locations) if enabled else ""
        table.add_row(spec.name, spec.title, "yes" if enabled else "no", locs)
    console.print(table)
    matrix = capability_matrix(kernel)
    if matrix.channels:
        grid = Table(title="Capability matrix (journey steps each enabled channel carries)")
        grid.add_column("channel")
        for step in matrix.steps:
            grid.add_column(step, justify="center")
        for row in matrix.channels:
            grid.add_row(row.name, *("✓" if row.steps[step] else "·" for step in matrix.steps))
        console.print(grid)
        console.print(f"maturity: {matrix.carried}/{matrix.cells} journey steps carried ({matrix.maturity:.0%})")
        console.print("gaps: " + (", ".join(matrix.gaps) + " (no channel carries them)" if matrix.gaps else "none"))
        if matrix.single:
            console.print("carried by one channel only: " + ", ".join(f"{k} ({v})" for k, v in matrix.single.items()))
    run(kernel.close())


@main.command()
def demo() -> None:
    """Play one customer's journey across all five channels in a temporary store (seconds)."""
    from omniretail.demo import DemoError, run_demo

    try:
        run_demo()
    except DemoError as exc:
        click.echo(f"omniretail demo: {exc}", err=True)
        sys.exit(1)
