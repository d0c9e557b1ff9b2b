"""The kernel: one configured store. Config, plugins, database, services and channels.

Build it with ``await Kernel.open(config_path)`` (CLI, gateway) or ``Kernel.from_config``
(tests, embedding). Plugins receive it in hooks and reach the services through it.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pluggy

from omniretail.channel import ChannelContext, ChannelSpec
from omniretail.config import Config, ConfigError, find_config, load_config, parse_config
from omniretail.domain.customer import Customer
from omniretail.host import (
    PluginError,
    call_notification,
    channel_hook,
    collect_channels,
    collect_payment_providers,
    create_plugin_manager,
)
from omniretail.payment import PaymentContext, PaymentProviderSpec
from omniretail.services.carts import CartService
from omniretail.services.catalog import CatalogService
from omniretail.services.checkout import PaidCheckout
from omniretail.services.clock import Clock, system_clock
from omniretail.services.customers import CustomerService
from omniretail.services.inventory import InventoryService
from omniretail.services.loyalty import LoyaltyService, TierRule
from omniretail.services.orders import OrderService
from omniretail.services.payments import ConfiguredProvider, PaymentService
from omniretail.services.pricing import Offer, PricedCart
from omniretail.storage import migrate
from omniretail.storage.database import Database, normalize_url
from omniretail.storage.repositories import SqlUnitOfWork

log = logging.getLogger("omniretail")


class Kernel:
    def __init__(
        self,
        config: Config,
        pm: pluggy.PluginManager,
        specs: dict[str, tuple[ChannelSpec, Any]],
        *,
        clock: Clock = system_clock,
        providers: dict[str, tuple[PaymentProviderSpec, Any]] | None = None,
    ) -> None:
        self.config = config
        self.pm = pm
        self.hook = pm.hook
        self.clock = clock
        self.specs = specs
        try:
            url = normalize_url(config.database.url, Path(config.base_dir))
        except ValueError as exc:
            raise ConfigError("database.url", str(exc)) from None
        self.db = Database(url, pool_size=config.database.pool_size)
        self.uow = SqlUnitOfWork(self.db)
        location_ids = [loc.id for loc in config.locations]
        self.catalog = CatalogService(self.uow, clock)
        self.inventory = InventoryService(
            self.uow, clock, location_ids, reservation_minutes=config.inventory.reservation_minutes
        )
        self.customers = CustomerService(self.uow, clock)
        self.carts = CartService(self.uow, clock, self.catalog, currency=config.store.currency, offers=self._offers)
        self.payments = PaymentService(self.uow, clock, recovery_seconds=config.worker.payment_recovery_seconds)
        self.loyalty = LoyaltyService(
            self.uow,
            clock,
            currency=config.store.currency,
            points_per_unit=config.loyalty.points_per_unit,
            tiers=[TierRule(name=x.name, min_spend=x.min_spend) for x in config.loyalty.tiers],
        )
        self.orders = OrderService(
            self.uow,
            clock,
            self.customers,
            locations=config.locations,
            offers=self._offers,
            channel_locations={name: config.channel_locations(name) for name in config.channels},
            payments=self.payments,
        )
        self.checkout = PaidCheckout(
            self.uow,
            clock,
            self.orders,
            self.payments,
            channel_payments={name: config.channel_payments(name) for name in config.channels},
            reservation_minutes=config.inventory.reservation_minutes,
        )
        self.orders.paid_checkout = self.checkout.checkout
        #: Installed payment providers (spec, plugin), configured or not.
        self.provider_specs = providers or {}
        self.channels: dict[str, ChannelContext] = {}
        for cfg in config.enabled_channels:
            spec, _plugin = specs[cfg.name]
            self.channels[cfg.name] = ChannelContext(spec, cfg.settings, config.channel_locations(cfg.name), self)
        self._channel_hooks: dict[tuple[str, str], Any] = {}
        self._started = False
        for pay in config.enabled_payments:
            if pay.name not in self.provider_specs:
                raise ConfigError(f"payments.{pay.name}", f"unknown payment provider {pay.name!r}")
            pay_spec, _owner = self.provider_specs[pay.name]
            capture = pay.capture or pay_spec.capture
            provider = pay_spec.create(PaymentContext(pay_spec, pay.settings, capture, self))
            for method in ("authorize", "capture", "void", "refund"):
                if not callable(getattr(provider, method, None)):
                    raise PluginError(f"payment provider {pay.name!r} has no {method}() method")
            self.payments.providers[pay.name] = ConfiguredProvider(spec=pay_spec, provider=provider, capture=capture)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        data: dict[str, Any] | Config,
        *,
        plugins: Iterable[Any] = (),
        entry_points: bool = True,
        base_dir: str | None = None,
        clock: Clock = system_clock,
    ) -> Kernel:
        pm = create_plugin_manager(plugins, entry_points=entry_points)
        specs = collect_channels(pm)
        providers = collect_payment_providers(pm)
        if isinstance(data, Config):
            config = data
        else:
            config = parse_config(
                data,
                {n: s.settings for n, (s, _) in specs.items()},
                base_dir=base_dir or os.getcwd(),
                payment_settings={n: s.settings for n, (s, _) in providers.items()},
            )
        return cls(config, pm, specs, clock=clock, providers=providers)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        plugins: Iterable[Any] = (),
        clock: Clock = system_clock,
    ) -> Kernel:
        pm = create_plugin_manager(plugins)
        specs = collect_channels(pm)
        providers = collect_payment_providers(pm)
        config_path = find_config(path)
        if config_path is not None and not config_path.exists():
            raise ConfigError("", f"config file {config_path} does not exist (run `omniretail init`)")
        config = load_config(
            config_path,
            {n: s.settings for n, (s, _) in specs.items()},
            {n: s.settings for n, (s, _) in providers.items()},
        )
        return cls(config, pm, specs, clock=clock, providers=providers)

    async def start(self, *, migrate_schema: bool | None = None) -> Kernel:
        """Migrate (SQLite default) or check the schema, sync locations, tell the plugins."""
        if self._started:
            return self
        mode = self.config.database.migrate or ("auto" if self.db.is_sqlite else "check")
        if migrate_schema or (migrate_schema is None and mode == "auto"):
            await migrate.upgrade(self.db)
        elif not await migrate.is_current(self.db):
            raise ConfigError("database.url", "the database schema is not current: run `omniretail db upgrade`")
        async with self.uow.write() as tx:
            await tx.stock.sync_locations(self.config.locations)
        self._started = True
        await call_notification(self.hook.kernel_started, kernel=self)
        return self

    async def close(self) -> None:
        await self.db.dispose()

    async def __aenter__(self) -> Kernel:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plugins ---------------------------------------------------------------------------------

    def channel_hook(self, channel: str, name: str) -> Any:
        """The caller for a per-channel hook: reaches only the plugin that owns ``channel``."""
        key = (channel, name)
        if key not in self._channel_hooks:
            _spec, plugin = self.specs[channel]
            self._channel_hooks[key] = channel_hook(self.pm, name, plugin)
        return self._channel_hooks[key]

    def _offers(self, priced: PricedCart, customer: Customer | None) -> list[Offer]:
        offers: list[Offer] = []
        for result in self.hook.calculate_offers(cart=priced, customer=customer, kernel=self):
            if inspect.isawaitable(result):
                getattr(result, "close", lambda: None)()
                raise PluginError(
                    "calculate_offers must return offers, not an awaitable (it is called "
                    "while pricing, on every channel, and must not do I/O)"
                )
            if result:
                offers.extend(result)
        return offers

    def installed_channels(self) -> list[ChannelSpec]:
        return [spec for spec, _ in self.specs.values()]
