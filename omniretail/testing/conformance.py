"""The channel conformance kit: tests every channel plugin inherits and runs against itself.

A plugin's test module subclasses ``ChannelConformance`` and names its channel::

    from omniretail.testing import ChannelConformance

    class TestPopup(ChannelConformance):
        channel = "popup"
        settings = {"greeting": "hi"}

The subclass inherits one test per promise a channel makes: it registers (a lower-case name, a
title, strict settings), declares capabilities, publishes the sample catalog, renders every
product or rejects it with a reason (the same way every time), guards its private routes with its
own key, takes an order and reports its status (if it declares checkout), and refuses bad input
with a 4xx problem without changing anything.

All the tests of one subclass share one store (SQLite in a temporary folder, the sample catalog
loaded, only this channel and ``other_channels`` enabled), so the whole kit takes a few seconds per
channel; each test's assertions hold whatever the others did before it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import msgspec
import pytest

from omniretail.channel import Capability, ChannelSpec
from omniretail.config import ConfigError, parse_config
from omniretail.domain.errors import InvalidValue
from omniretail.domain.order import OrderStatus
from omniretail.host import collect_channels, create_plugin_manager
from omniretail.storage.publications import PublicationStore
from omniretail.testing.context import BadRequest, ConformanceContext, idempotency_key
from omniretail.testing.store import (
    COUNTED_TABLES,
    Store,
    StoreTemplate,
    open_store,
    sqlite_url,
    starter_config,
)

#: A settings key no channel has: decoding it must fail with its path.
UNKNOWN_SETTING = "conformance_unknown_setting"
PROBLEM_JSON = "application/problem+json"
_PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_PARAM_SAMPLES = {"int": "1", "float": "1.0", "uuid": "00000000-0000-4000-8000-000000000000", "date": "2026-01-01"}
_PUBLISHED, _REJECTED, _WITHDRAWN = "published", "rejected", "withdrawn"
_encoder = msgspec.json.Encoder(order="deterministic")


@dataclass(frozen=True)
class Route:
    method: str
    #: The route's path with its parameters filled in with sample values.
    path: str
    public: bool


def _expect(response: httpx.Response, status: int, what: str) -> Any:
    assert response.status_code == status, f"{what}: expected {status}, got {response.status_code}: {response.text}"
    return response.json()


class ChannelConformance:
    """Subclass as ``Test<YourChannel>`` and set ``channel``; see the module docstring."""

    #: The channel under test (its ``ChannelSpec.name``).
    channel: ClassVar[str]
    #: Its ``[channels.<name>]`` table (plugin settings, and ``locations`` if you like).
    settings: ClassVar[Mapping[str, Any]] = {}
    #: Plugin objects to register besides the ``omniretail`` entry points.
    extra_plugins: ClassVar[Sequence[Any]] = ()
    #: Load the installed ``omniretail`` entry points (False: only ``extra_plugins``).
    entry_points: ClassVar[bool] = True
    #: Other channels to enable alongside, as ``{name: table}``.
    other_channels: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Environment variables set while the tests run (for secrets written ``env:NAME``).
    env: ClassVar[Mapping[str, str]] = {}
    #: Why the kit cannot place an order on this channel, if it declares checkout but takes its
    #: orders some other way (the order tests are then skipped with this reason).
    no_orders_reason: ClassVar[str | None] = None
    #: Tables whose row counts must not move when bad input is refused.
    counted_tables: ClassVar[tuple[str, ...]] = COUNTED_TABLES

    # -- what a subclass may override -------------------------------------------------------------

    async def place_order(self, ctx: ConformanceContext) -> str:
        """Place an order on the channel; return its id.

        The default goes through the gateway with the channel's key: a customer signs up, fills a
        cart with one unit of a SKU in stock at the channel's locations and checks it out with an
        Idempotency-Key. Override it to order the way your channel's shoppers do (a signed
        webhook, a chat message, ...).
        """
        sku = await ctx.sku_in_stock()
        ctx.customer_token = await ctx.store.sign_up(ctx.channel)
        headers = ctx.headers(customer=ctx.customer_token)
        cart = _expect(await ctx.client.post("/v1/carts", headers=headers), 201, "create a cart")
        path = f"/v1/carts/{cart['id']}"
        line = {"sku": sku, "quantity": 1}
        _expect(await ctx.client.post(f"{path}/lines", json=line, headers=headers), 200, f"add {sku}")
        response = await ctx.client.post(f"{path}/checkout", json={}, headers={**headers, **idempotency_key()})
        return str(_expect(response, 201, "check the cart out")["id"])

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        """Requests the channel must refuse with a 4xx problem without changing anything: a
        ``BadRequest`` or a tuple ``(method, path[, body[, headers]])`` each. Extend the list
        with your routes' bad input: ``return [*super().bad_requests(), BadRequest(...)]``."""
        return [BadRequest("GET", f"/channels/{self.channel}/conformance-no-such-route", status=404, why="no-route")]

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def anyio_backend(cls) -> str:
        """The kit runs on asyncio (SQLAlchemy's async drivers), whatever the project's default."""
        return "asyncio"

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_env(cls) -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in cls.env.items():
                patch.setenv(name, value)
            yield

    @pytest.fixture(scope="class")
    @classmethod
    async def conformance_store(
        cls,
        anyio_backend: str,
        conformance_env: None,
        omniretail_template: StoreTemplate,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> AsyncIterator[Store]:
        directory = tmp_path_factory.mktemp(f"conformance-{cls.channel}")
        async with open_store(
            directory,
            channels=cls._channel_tables(),
            plugins=cls.extra_plugins,
            entry_points=cls.entry_points,
            template=omniretail_template,
        ) as store:
            yield store

    @pytest.fixture
    def conformance(self, conformance_store: Store) -> ConformanceContext:
        return ConformanceContext(store=conformance_store, channel=self.channel)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "bad_request" in metafunc.fixturenames:
            requests = [BadRequest.of(r) for r in self.bad_requests()]
            metafunc.parametrize("bad_request", requests, ids=[r.id for r in requests])

    # -- helpers --------------------------------------------------------------------------------

    @classmethod
    def _channel_tables(cls) -> dict[str, dict[str, Any]]:
        return {**{n: dict(t) for n, t in cls.other_channels.items()}, cls.channel: dict(cls.settings)}

    def _installed(self) -> dict[str, ChannelSpec]:
        pm = create_plugin_manager(self.extra_plugins, entry_points=self.entry_points)
        return {name: spec for name, (spec, _plugin) in collect_channels(pm).items()}

    def _spec(self) -> ChannelSpec:
        installed = self._installed()
        assert self.channel in installed, (
            f"no plugin registers channel {self.channel!r} (installed: {', '.join(sorted(installed)) or 'none'}); "
            "is the plugin installed (its `omniretail` entry point) or given in extra_plugins?"
        )
        return installed[self.channel]

    def _parse(self, table: Mapping[str, Any]) -> None:
        settings = {name: spec.settings for name, spec in self._installed().items()}
        channels = {**self._channel_tables(), self.channel: dict(table)}
        parse_config(starter_config(sqlite_url(Path("unused.db")), channels), settings)

    def _takes_orders(self) -> None:
        if self.no_orders_reason:
            pytest.skip(self.no_orders_reason)
        if Capability.CHECKOUT not in self._spec().capabilities:
            pytest.skip(f"{self.channel} does not declare the checkout capability")

    @staticmethod
    def _routes(ctx: ConformanceContext) -> list[Route]:
        prefix = f"/channels/{ctx.channel}/"
        found = []
        for route in ctx.store.app.routes:
            if not route.path.startswith(prefix):
                continue
            path = _PATH_PARAM.sub(lambda m: _PARAM_SAMPLES.get(m.group(2) or "", "conformance-x"), route.path)
            for handler in getattr(route, "route_handlers", ()):
                for method in sorted(getattr(handler, "http_methods", ())):
                    if method not in ("HEAD", "OPTIONS"):
                        found.append(Route(method, path, bool(handler.opt.get("public"))))
        return found

    # -- declaration ----------------------------------------------------------------------------

    def test_registers_the_channel(self) -> None:
        spec = self._spec()
        assert isinstance(spec, ChannelSpec)
        assert spec.name == self.channel
        assert isinstance(spec.title, str) and spec.title.strip(), "a channel needs a title"

    def test_settings_are_strict(self, conformance_env: None) -> None:
        settings = self._spec().settings
        if settings is not None:
            assert issubclass(settings, msgspec.Struct), "settings must be a msgspec Struct"
            assert settings.__struct_config__.frozen, f"{settings.__qualname__} must be frozen=True"
            assert settings.__struct_config__.forbid_unknown_fields, (
                f"{settings.__qualname__} must be forbid_unknown_fields=True (a typo in the config is an error)"
            )
        self._parse(self.settings)  # the test's own settings decode
        with pytest.raises(ConfigError) as refused:
            self._parse({**self.settings, UNKNOWN_SETTING: True})
        assert refused.value.key == f"channels.{self.channel}.{UNKNOWN_SETTING}", refused.value

    def test_declares_capabilities(self) -> None:
        capabilities = self._spec().capabilities
        assert capabilities, "declare the journey steps the channel carries (omniretail.channel.Capability)"
        assert isinstance(capabilities, frozenset), "capabilities must be a frozenset"
        strays = [c for c in capabilities if not isinstance(c, Capability)]
        assert not strays, f"not omniretail.channel.Capability members: {strays!r}"

    # -- publishing -----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_publishes_the_sample_catalog(self, conformance: ConformanceContext) -> None:
        run = await conformance.store.publish(self.channel)
        products = (await conformance.kernel.catalog.snapshot()).products
        handles = {p.id: p.handle for p in products}
        failed = await PublicationStore(conformance.kernel.db).records(self.channel, status="failed")
        assert run.failed == 0, "render_listing raised (not InvalidValue):\n" + "\n".join(
            f"  {handles.get(r.product_id, r.product_id)}: {r.reason}" for r in failed
        )
        assert run.status == "done" and run.error is None, run
        assert run.total == len(products)

    @pytest.mark.anyio
    async def test_renders_every_product_or_rejects_it_with_a_reason(self, conformance: ConformanceContext) -> None:
        await conformance.store.publish(self.channel)
        records = await PublicationStore(conformance.kernel.db).records(self.channel, limit=10_000)
        handles = {p.id: p.handle for p in (await conformance.kernel.catalog.snapshot()).products}
        if not records:  # render_listing returned None: the channel lists no products
            return
        missing = set(handles) - {r.product_id for r in records if r.status != _WITHDRAWN}
        assert not missing, f"products neither rendered nor rejected: {sorted(handles[m] for m in missing)}"
        wrong = []
        for record in records:
            name = handles.get(record.product_id, record.product_id)
            if record.status == _PUBLISHED and not _is_json(record.content):
                wrong.append(f"{name}: published without a JSON rendering")
            elif record.status == _REJECTED and not (record.reason or "").strip():
                wrong.append(f"{name}: rejected without a reason (raise InvalidValue naming what is missing)")
            elif record.status not in (_PUBLISHED, _REJECTED, _WITHDRAWN):
                wrong.append(f"{name}: {record.status}: {record.reason}")
        assert not wrong, "\n".join(wrong)

    @pytest.mark.anyio
    async def test_renders_the_same_product_the_same_way(self, conformance: ConformanceContext) -> None:
        """Feeds change only when the rendered bytes change, so a rendering must depend on the
        product, its stock and the settings alone (no clock, no randomness, no set order)."""
        kernel = conformance.kernel
        ctx = kernel.channels[self.channel]
        render = kernel.channel_hook(self.channel, "render_listing")
        stock = await kernel.inventory.available_everywhere(ctx.locations)
        differ = []
        for product in (await kernel.catalog.snapshot()).products:
            units = {v.sku: max(stock.get(v.sku, 0), 0) for v in product.variants}
            renderings = []
            for _ in range(2):
                try:
                    renderings.append(_encoder.encode(render(channel=ctx, product=product, stock=units)))
                except InvalidValue as exc:
                    renderings.append(f"rejected: {exc}".encode())
                except Exception:  # noqa: S112  # a failing rendering is test_publishes_the_sample_catalog's
                    continue
            if len(renderings) == 2 and renderings[0] != renderings[1]:
                differ.append(product.handle)
        assert not differ, f"two renderings of the same product differ: {differ}"

    @pytest.mark.anyio
    async def test_publishing_again_changes_nothing(self, conformance: ConformanceContext) -> None:
        await conformance.store.publish(self.channel)
        again = await conformance.store.publish(self.channel)
        changed = {k: getattr(again, k) for k in ("created", "updated", "rejected", "withdrawn", "failed")}
        assert not any(changed.values()), f"a second publish with nothing changed recorded changes: {changed}"

    # -- routes ---------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_private_routes_need_the_channel_key(self, conformance: ConformanceContext) -> None:
        other = await conformance.store.add_key(f"not-{self.channel}")
        wrong = []
        for route in self._routes(conformance):
            if route.public:
                continue
            # With an Idempotency-Key: a route that requires one must still answer the key question.
            anonymous = await conformance.client.request(route.method, route.path, headers=idempotency_key())
            if anonymous.status_code != 401:
                wrong.append(f"{route.method} {route.path} without a key: {anonymous.status_code}, expected 401")
            foreign = await conformance.client.request(
                route.method, route.path, headers={"Authorization": f"Bearer {other}", **idempotency_key()}
            )
            if foreign.status_code != 403:
                wrong.append(f"{route.method} {route.path} with another channel's key: {foreign.status_code}, not 403")
        assert not wrong, "\n".join(wrong)

    @pytest.mark.anyio
    async def test_write_routes_refuse_malformed_json(self, conformance: ConformanceContext) -> None:
        """Every POST, PUT and PATCH route answers a body that is not JSON with a 4xx problem
        (signed webhooks: refused before the body is read) and changes nothing."""
        store, wrong = conformance.store, []
        for route in self._routes(conformance):
            if route.method not in ("POST", "PUT", "PATCH"):
                continue
            before = await store.counts(self.counted_tables)
            headers = conformance.headers(**{"Content-Type": "application/json"}, **idempotency_key())
            response = await conformance.client.request(route.method, route.path, content=b"{not json", headers=headers)
            after = await store.counts(self.counted_tables)
            if not 400 <= response.status_code < 500 or not response.headers.get("content-type", "").startswith(
                PROBLEM_JSON
            ):
                wrong.append(f"{route.method} {route.path}: {response.status_code} {response.text[:200]}")
            if after != before:
                wrong.append(f"{route.method} {route.path} changed {_changes(before, after)}")
        assert not wrong, "\n".join(wrong)

    # -- orders ---------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_takes_an_order(self, conformance: ConformanceContext) -> None:
        self._takes_orders()
        before = await conformance.store.counts(("orders",))
        order_id = await self.place_order(conformance)
        assert isinstance(order_id, str) and order_id, f"place_order must return the order id, not {order_id!r}"
        order = await conformance.kernel.orders.get(order_id)
        assert order.channel == self.channel, f"the order was placed on {order.channel!r}"
        assert order.lines, "the order has no lines"
        assert (await conformance.store.counts(("orders",)))["orders"] == before["orders"] + 1

    @pytest.mark.anyio
    async def test_reports_order_status(self, conformance: ConformanceContext) -> None:
        self._takes_orders()
        order_id = await self.place_order(conformance)
        client, admin = conformance.client, conformance.admin_headers()
        order = _expect(await client.get(f"/v1/admin/orders/{order_id}", headers=admin), 200, "read the order")
        assert order["channel"] == self.channel
        assert order["status"] in {s.value for s in OrderStatus}, order["status"]
        events = _expect(await client.get(f"/v1/orders/{order_id}/events", headers=admin), 200, "read its events")
        assert events and events[0]["type"] == "order.placed", events
        assert events[0]["channel"] == self.channel, events[0]
        listed = _expect(
            await client.get("/v1/admin/orders", params={"channel": self.channel}, headers=admin), 200, "list orders"
        )
        assert order_id in [o["id"] for o in listed["items"]]
        if conformance.customer_token:
            mine = await client.get(
                f"/v1/orders/{order_id}", headers=conformance.headers(customer=conformance.customer_token)
            )
            seen = _expect(mine, 200, "read the order as its customer with the channel's key")
            assert (seen["channel"], seen["status"]) == (self.channel, order["status"])

    # -- bad input ------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_refuses_bad_input_without_changing_anything(
        self, conformance: ConformanceContext, bad_request: BadRequest
    ) -> None:
        before = await conformance.store.counts(self.counted_tables)
        response = await conformance.send(bad_request)
        after = await conformance.store.counts(self.counted_tables)
        what = f"{bad_request.method} {bad_request.path} answered {response.status_code}: {response.text[:500]}"
        assert 400 <= response.status_code < 500, what
        if bad_request.status is not None:
            assert response.status_code == bad_request.status, what
        if bad_request.problem:
            assert response.headers.get("content-type", "").startswith(PROBLEM_JSON), what
            assert response.json().get("status") == response.status_code, what
        assert after == before, f"{bad_request.id}: refused, but changed {_changes(before, after)}"


def _is_json(content: bytes | None) -> bool:
    try:
        return content is not None and msgspec.json.decode(content) is not None
    except msgspec.DecodeError:
        return False


def _changes(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {before[k]} -> {after[k]}" for k in before if before[k] != after[k])
