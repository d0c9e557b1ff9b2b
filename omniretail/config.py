"""``omniretail.toml``: the merchant's configuration.

Decoding is strict. Every table decodes into a frozen msgspec Struct with
``forbid_unknown_fields=True``; each ``[channels.<name>]`` table decodes into the plugin's own
settings Struct, and each ``[payments.<name>]`` table into the payment provider's. Any mistake
raises ``ConfigError`` naming the key path (``channels.webshop.color``),
which the CLI prints as one line before exiting with status 2. Secrets are written as
``env:NAME`` and read from the environment; a literal secret in the file is refused.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from omniretail.domain.inventory import StockLocation
from omniretail.domain.money import Currency
from omniretail.domain.payment import CaptureMode

DEFAULT_CONFIG_NAME = "omniretail.toml"
CONFIG_ENV = "OMNIRETAIL_CONFIG"


class ConfigError(Exception):
    """A configuration mistake. ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class Secret(str):
    """A secret setting. Written ``env:NAME`` in the file; the value comes from the environment."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


def _dec_hook(tp: type, value: Any) -> Any:
    if tp is Secret:
        if not isinstance(value, str) or not value.startswith("env:") or len(value) <= 4:
            raise ValueError("a secret must be written as env:NAME (secrets never live in the file)")
        name = value[4:]
        if not os.environ.get(name):
            raise ValueError(f"environment variable {name} is not set (or is empty)")
        return Secret(os.environ[name])
    raise NotImplementedError


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "omniretail store"
    currency: Currency = "EUR"
    #: Locale for prices read aloud or printed (babel/CLDR identifier).
    locale: str = "en_US"
    #: Public base URL of the gateway, used in feeds, links and QR codes.
    base_url: str = "http://127.0.0.1:8000"
    #: The storefront page a cart handoff QR code opens; ``{code}`` is filled in.
    handoff_url: str = "http://127.0.0.1:8000/?handoff={code}"


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: ``sqlite:///omniretail.db`` (relative to the config file) or ``postgresql://...``;
    #: may be ``env:NAME``.
    url: str = "sqlite:///omniretail.db"
    #: ``auto`` migrates at start-up; ``check`` refuses to start on an old schema.
    #: Default: auto for SQLite, check for PostgreSQL (run ``omniretail db upgrade`` in deploys).
    migrate: Literal["auto", "check"] | None = None
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 10


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: Largest request body accepted, in bytes (larger: 413).
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576
    #: Requests per minute per API key (or per client address without a key); 0 disables.
    rate_limit_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 1200
    #: How long an Idempotency-Key's stored response is replayed.
    idempotency_retention_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 30)] = 24
    #: Customer session lifetime.
    session_hours: Annotated[int, msgspec.Meta(ge=1)] = 24 * 30
    cors_origins: tuple[str, ...] = ()
    #: Run the worker (outbox, webhooks, jobs, periodic tasks) inside the gateway process
    #: (default: yes on SQLite, no on PostgreSQL, where `omniretail worker` processes do it).
    embedded_worker: bool | None = None


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    poll_seconds: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    #: Give up on an event or webhook after this many attempts (backoff grows between them).
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 12
    #: Base of the exponential backoff, in seconds (with full jitter).
    backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    #: Stop retrying after this long, whatever the attempt count.
    retry_horizon_hours: Annotated[float, msgspec.Meta(gt=0)] = 72.0
    #: Checkouts and payment operations left in between this long are settled by the worker
    #: (asked again, then finished or undone); the recovery task also runs this often.
    payment_recovery_seconds: Annotated[float, msgspec.Meta(ge=1)] = 30.0


class InventorySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: How long a reservation holds stock before it is ignored.
    reservation_minutes: Annotated[int, msgspec.Meta(ge=1)] = 15
    low_stock_threshold: Annotated[int, msgspec.Meta(ge=0)] = 3


TierName = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class LoyaltyTier(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The customer tier set (prices may have a tier price for it).
    name: TierName
    #: Lifetime order total, in minor units of the store currency, from which the tier applies.
    min_spend: Annotated[int, msgspec.Meta(ge=0)]


class LoyaltySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Points earned per whole currency unit of an order's total (0: no points).
    points_per_unit: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    #: Tiers by lifetime spend; the highest reached is the customer's tier.
    tiers: tuple[LoyaltyTier, ...] = ()


class ChannelConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One enabled channel: the keys every channel has, plus the plugin's own settings Struct."""

    name: str
    enabled: bool = True
    #: Stock locations this channel sells from, in preference order (default: all).
    locations: tuple[str, ...] = ()
    #: Payment providers offered on this channel (default: every configured one).
    payments: tuple[str, ...] = ()
    settings: Any = None


#: Keys every ``[channels.<name>]`` table may have; the rest belongs to the plugin.
COMMON_CHANNEL_KEYS = ("enabled", "locations", "payments")


class PaymentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One configured payment provider: the keys every provider has, plus its own settings."""

    name: str
    enabled: bool = True
    #: ``immediate`` or ``on_fulfilment``; default: the provider's own default.
    capture: CaptureMode | None = None
    settings: Any = None


#: Keys every ``[payments.<name>]`` table may have; the rest belongs to the provider.
COMMON_PAYMENT_KEYS = ("enabled", "capture")


class Config(msgspec.Struct, frozen=True, kw_only=True):
    store: StoreSettings = StoreSettings()
    database: DatabaseSettings = DatabaseSettings()
    gateway: GatewaySettings = GatewaySettings()
    worker: WorkerSettings = WorkerSettings()
    inventory: InventorySettings = InventorySettings()
    locations: tuple[StockLocation, ...] = ()
    channels: dict[str, ChannelConfig] = msgspec.field(default_factory=dict)
    payments: dict[str, PaymentConfig] = msgspec.field(default_factory=dict)
    loyalty: LoyaltySettings = LoyaltySettings()
    #: Folder of the config file; relative paths (the SQLite file) resolve against it.
    base_dir: str = "."
    #: Where the config came from, for messages.
    source: str = "<defaults>"

    @property
    def enabled_channels(self) -> list[ChannelConfig]:
        return [c for c in self.channels.values() if c.enabled]

    def location(self, location_id: str) -> StockLocation | None:
        return next((loc for loc in self.locations if loc.id == location_id), None)

    def channel_locations(self, channel: str) -> tuple[str, ...]:
        cfg = self.channels.get(channel)
        if cfg is not None and cfg.locations:
            return cfg.locations
        return tuple(loc.id for loc in self.locations)

    @property
    def enabled_payments(self) -> list[PaymentConfig]:
        return [p for p in self.payments.values() if p.enabled]

    def channel_payments(self, channel: str) -> tuple[str, ...]:
        """Payment providers offered on ``channel``: its ``payments`` list, else every enabled one."""
        enabled = tuple(p.name for p in self.enabled_payments)
        cfg = self.channels.get(channel)
        if cfg is not None and cfg.payments:
            return tuple(name for name in cfg.payments if name in enabled)
        return enabled


class _Document(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    store: StoreSettings = StoreSettings()
    database: DatabaseSettings = DatabaseSettings()
    gateway: GatewaySettings = GatewaySettings()
    worker: WorkerSettings = WorkerSettings()
    inventory: InventorySettings = InventorySettings()
    locations: tuple[StockLocation, ...] = ()
    channels: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    #: Checked table by table in ``_payments`` (so a mistake names ``payments.<name>``).
    payments: dict[str, Any] = msgspec.field(default_factory=dict)
    loyalty: LoyaltySettings = LoyaltySettings()


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def _key_path(prefix: str, error: msgspec.ValidationError, data: Any = None) -> ConfigError:
    """Turn msgspec's ``... - at `$.a[0].b``` into ``ConfigError('prefix.a[0].b', ...)``."""
    m = _AT.match(str(error))
    message = m.group("msg") if m else str(error)
    path = (m.group("path") or "") if m else ""
    path = path.lstrip(".")
    # Replace list indexes of [[locations]] with the location id when we can: easier to find.
    key = ".".join(p for p in (prefix, path) if p).replace(".[", "[")
    if um := _UNKNOWN.match(message):
        return ConfigError(f"{key}.{um.group('field')}" if key else um.group("field"), "unknown key")
    if mm := _MISSING.match(message):
        return ConfigError(f"{key}.{mm.group('field')}" if key else mm.group("field"), "required key is missing")
    return ConfigError(key, message[:1].lower() + message[1:])


def _resolve_env(value: str, key: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(key, f"environment variable {name} is not set")
        return os.environ[name]
    return value


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file: ``--config``, else ``$OMNIRETAIL_CONFIG``, else ``./omniretail.toml``."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    candidate = Path.cwd() / DEFAULT_CONFIG_NAME
    return candidate if candidate.exists() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist (run `omniretail init`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None


def parse_config(
    data: Mapping[str, Any],
    channel_settings: Mapping[str, type[msgspec.Struct] | None],
    *,
    base_dir: str = ".",
    source: str = "<memory>",
    payment_settings: Mapping[str, type[msgspec.Struct] | None] | None = None,
) -> Config:
    """Validate a config mapping. ``channel_settings`` maps each installed channel name to its
    plugin's settings Struct (None: the plugin takes no settings); ``payment_settings`` does the
    same for installed payment providers."""
    try:
        doc = msgspec.convert(dict(data), _Document, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _key_path("", exc) from None

    location_ids = [loc.id for loc in doc.locations]
    for i, loc_id in enumerate(location_ids):
        if loc_id in location_ids[:i]:
            raise ConfigError(f"locations[{i}].id", f"location {loc_id!r} is defined twice")

    payments = _payments(doc.payments, payment_settings or {})
    tier_names = [tier.name for tier in doc.loyalty.tiers]
    for i, tier_name in enumerate(tier_names):
        if tier_name in tier_names[:i]:
            raise ConfigError(f"loyalty.tiers[{i}].name", f"tier {tier_name!r} is defined twice")

    channels: dict[str, ChannelConfig] = {}
    for name, table in doc.channels.items():
        prefix = f"channels.{name}"
        if name not in channel_settings:
            installed = ", ".join(sorted(channel_settings)) or "none"
            raise ConfigError(prefix, f"unknown channel {name!r} (installed channels: {installed})")
        if not isinstance(table, dict):
            raise ConfigError(prefix, "must be a table")
        own = {k: v for k, v in table.items() if k not in COMMON_CHANNEL_KEYS}
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{prefix}.enabled", "expected true or false")
        locs = table.get("locations", [])
        if not isinstance(locs, list) or not all(isinstance(x, str) for x in locs):
            raise ConfigError(f"{prefix}.locations", "expected a list of location ids")
        for i, loc_id in enumerate(locs):
            if loc_id not in location_ids:
                raise ConfigError(f"{prefix}.locations[{i}]", f"no location {loc_id!r} in [[locations]]")
        offered = table.get("payments", [])
        if not isinstance(offered, list) or not all(isinstance(x, str) for x in offered):
            raise ConfigError(f"{prefix}.payments", "expected a list of [payments.<name>] provider names")
        for i, provider in enumerate(offered):
            if provider not in payments:
                configured = ", ".join(sorted(payments)) or "none"
                raise ConfigError(
                    f"{prefix}.payments[{i}]",
                    f"no payment provider {provider!r} in [payments] (configured: {configured})",
                )
        settings_type = channel_settings[name]
        settings: Any = None
        if settings_type is not None:
            try:
                settings = msgspec.convert(own, settings_type, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                raise _key_path(prefix, exc) from None
        elif own:
            raise ConfigError(f"{prefix}.{next(iter(own))}", "unknown key (this channel takes no settings)")
        channels[name] = ChannelConfig(
            name=name, enabled=enabled, locations=tuple(locs), payments=tuple(offered), settings=settings
        )

    database = doc.database
    if database.url.startswith("env:"):
        database = msgspec.structs.replace(database, url=_resolve_env(database.url, "database.url"))
    return Config(
        store=doc.store,
        database=database,
        gateway=doc.gateway,
        worker=doc.worker,
        inventory=doc.inventory,
        locations=doc.locations,
        channels=channels,
        payments=payments,
        loyalty=doc.loyalty,
        base_dir=base_dir,
        source=source,
    )


def _payments(
    tables: Mapping[str, Any], installed: Mapping[str, type[msgspec.Struct] | None]
) -> dict[str, PaymentConfig]:
    """Decode each ``[payments.<name>]`` table: the common keys, then the provider's settings."""
    payments: dict[str, PaymentConfig] = {}
    for name, table in tables.items():
        prefix = f"payments.{name}"
        if name not in installed:
            known = ", ".join(sorted(installed)) or "none"
            raise ConfigError(prefix, f"unknown payment provider {name!r} (installed providers: {known})")
        if not isinstance(table, dict):
            raise ConfigError(prefix, "must be a table")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{prefix}.enabled", "expected true or false")
        capture: CaptureMode | None = None
        if "capture" in table:
            try:
                capture = CaptureMode(table["capture"])
            except (ValueError, TypeError):
                raise ConfigError(f"{prefix}.capture", 'expected "immediate" or "on_fulfilment"') from None
        own = {k: v for k, v in table.items() if k not in COMMON_PAYMENT_KEYS}
        settings_type = installed[name]
        settings: Any = None
        if settings_type is not None:
            try:
                settings = msgspec.convert(own, settings_type, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                raise _key_path(prefix, exc) from None
        elif own:
            raise ConfigError(f"{prefix}.{next(iter(own))}", "unknown key (this provider takes no settings)")
        payments[name] = PaymentConfig(name=name, enabled=enabled, capture=capture, settings=settings)
    return payments


def load_config(
    path: Path | None,
    channel_settings: Mapping[str, type[msgspec.Struct] | None],
    payment_settings: Mapping[str, type[msgspec.Struct] | None] | None = None,
) -> Config:
    if path is None:
        return parse_config(
            {}, channel_settings, base_dir=str(Path.cwd()), source="<defaults>", payment_settings=payment_settings
        )
    data = read_toml(path)
    return parse_config(
        data,
        channel_settings,
        base_dir=str(path.resolve().parent),
        source=str(path),
        payment_settings=payment_settings,
    )
