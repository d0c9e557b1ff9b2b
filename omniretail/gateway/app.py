"""``create_app``: the Litestar application in front of one kernel."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Router, get
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy import text

from omniretail import __version__
from omniretail.gateway.idempotency import IdempotencyMiddleware, IdempotencyStore
from omniretail.gateway.keys import KeyStore
from omniretail.gateway.problems import handle_exception
from omniretail.gateway.routes.admin import AdminController
from omniretail.gateway.routes.carts import CartController
from omniretail.gateway.routes.catalog import CatalogController
from omniretail.gateway.routes.common import KernelDep, errors, provide_kernel
from omniretail.gateway.routes.customers import CustomerController
from omniretail.gateway.routes.orders import OrderController
from omniretail.gateway.routes.payments import PaymentAdminController
from omniretail.gateway.routes.publications import PublicationsController, ReportController
from omniretail.gateway.schemas import HealthOut
from omniretail.gateway.security import AccessMiddleware, AuthMiddleware, RateLimitMiddleware, channel_only
from omniretail.host import PluginError
from omniretail.kernel import Kernel
from omniretail.storage import migrate

log = logging.getLogger("omniretail.gateway")


@get(
    "/health",
    operation_id="health",
    opt={"public": True},
    tags=["meta"],
    summary="Liveness and database check",
)
async def health(kernel: KernelDep) -> HealthOut:
    async with kernel.db.read() as conn:
        await conn.execute(text("SELECT 1"))
    snapshot = await kernel.catalog.snapshot()
    return HealthOut(
        status="ok",
        database=kernel.db.dialect,
        schema_revision=await migrate.current_revision(kernel.db),
        catalog_revision=snapshot.revision,
        channels=sorted(kernel.channels),
    )


def plugin_routers(kernel: Kernel) -> list[Router]:
    """Routes each enabled channel's plugin contributes, under ``/channels/<name>/``."""
    routers = []
    for name, ctx in kernel.channels.items():
        handlers: list[Any] = []
        kernel.channel_hook(name, "register_routes")(register=handlers.append, channel=ctx)
        if not handlers:
            continue
        for handler in handlers:
            if isinstance(handler, HTTPRouteHandler):
                # Every route can answer the gateway's problems (auth, validation, limits); a
                # plugin documents its own answers on top.
                handler.responses = {**errors(), **(handler.responses or {})}
        try:
            routers.append(
                Router(
                    path=f"/channels/{name}",
                    route_handlers=handlers,
                    opt=channel_only(name),
                    tags=[f"channel: {name}"],
                )
            )
        except Exception as exc:  # a handler Litestar refuses: a plugin bug, named
            raise PluginError(f"channel {name!r} registered invalid routes: {exc}") from exc
    return routers


def payment_routers(kernel: Kernel) -> list[Router]:
    """Routes each configured payment provider contributes (its signed webhooks), public, under
    ``/payments/<name>/``; the provider verifies each request's signature itself."""
    routers = []
    for name, configured in kernel.payments.providers.items():
        routes = getattr(configured.provider, "routes", None)
        handlers = list(routes()) if callable(routes) else []
        if not handlers:
            continue
        for handler in handlers:
            if not getattr(handler, "opt", {}).get("public"):
                raise PluginError(f"payment provider {name!r}: its routes must be public (signed webhooks)")
        try:
            routers.append(Router(path=f"/payments/{name}", route_handlers=handlers, tags=[f"payments: {name}"]))
        except Exception as exc:
            raise PluginError(f"payment provider {name!r} registered invalid routes: {exc}") from exc
    return routers


def create_app(kernel: Kernel, *, run_worker: bool | None = None) -> Litestar:
    """The gateway for ``kernel``. Starting the app starts the kernel (and, on the embedded
    SQLite default, an in-process outbox worker and webhook deliverer unless
    ``gateway.embedded_worker = false``)."""
    settings = kernel.config.gateway
    keys = KeyStore(kernel.db)
    embedded = (
        run_worker
        if run_worker is not None
        else (settings.embedded_worker if settings.embedded_worker is not None else kernel.db.is_sqlite)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await kernel.start()
        # What start-up built (modules, plugins, routes, SQLAlchemy's tables and compiled
        # statements: some 140,000 objects) lives as long as the process: out of the cyclic
        # garbage collector's sight, its full collections do not walk it again and again under
        # load (they cost a checkout about 65 us; measured in process, 3 % of its CPU).
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if embedded:
            from omniretail.background import run_background
            from omniretail.webhooks import WebhookDeliverer
            from omniretail.worker import OutboxWorker

            tasks.append(asyncio.create_task(OutboxWorker(kernel).run(stop)))
            tasks.append(asyncio.create_task(WebhookDeliverer(kernel).run(stop)))
            tasks.append(asyncio.create_task(run_background(kernel, stop)))
        try:
            yield
        finally:
            try:
                stop.set()
                await asyncio.gather(*tasks)
                await kernel.close()
            finally:
                gc.unfreeze()  # an application stopped in a process that goes on (tests): collectable again

    openapi = OpenAPIConfig(
        title="omniretail gateway",
        version=__version__,
        description="One API for every channel: catalog, carts, checkout, orders, customers. "
        "Errors are RFC 9457 problem+json; creating POSTs accept an Idempotency-Key.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="http", scheme="bearer", description="An omniretail API key"),
                "customerToken": SecurityScheme(
                    type="apiKey",
                    name="Customer-Token",
                    security_scheme_in="header",
                    description="A signed-in customer's session token",
                ),
            }
        ),
        security=[{"apiKey": []}],
        use_handler_docstrings=False,
    )
    app = Litestar(
        route_handlers=[
            health,
            CatalogController,
            CartController,
            OrderController,
            CustomerController,
            AdminController,
            PublicationsController,
            ReportController,
            PaymentAdminController,
            *plugin_routers(kernel),
            *payment_routers(kernel),
        ],
        dependencies={"kernel": Provide(provide_kernel, sync_to_thread=False, use_cache=True)},  # one per app
        middleware=[
            AuthMiddleware(keys, kernel.clock),
            *([RateLimitMiddleware(settings.rate_limit_per_minute)] if settings.rate_limit_per_minute else []),
            AccessMiddleware(),
            IdempotencyMiddleware(IdempotencyStore(kernel.db), kernel.clock, settings.idempotency_retention_hours),
        ],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Customer-Token",
                "If-None-Match",
            ],
            expose_headers=["ETag", "Idempotent-Replayed", "Retry-After"],
        )
        if settings.cors_origins
        else None,
        openapi_config=openapi,
        lifespan=[lifespan],
        debug=False,
        # Leave logging to the host application (the CLI, granian); Litestar would turn on INFO logs.
        logging_config=None,
    )
    app.state.kernel = kernel
    app.state.key_store = keys
    return app
