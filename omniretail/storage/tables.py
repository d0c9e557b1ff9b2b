"""The relational schema, as SQLAlchemy Core tables. Alembic migrations are generated from it.

Products are stored as a msgspec JSON document (``doc``) plus the columns we filter and join on;
everything the state machine or a conditional UPDATE touches is a real column.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone: store naive UTC, read aware)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite, where a checkout binds some twenty datetimes, the steps above and the dialect's
    # own (``DATETIME``: a string "YYYY-MM-DD HH:MM:SS.ffffff", read back with ``fromisoformat``)
    # are one function each way: the same strings and values in fewer calls, and a UTC datetime
    # (the clock's own) formatted directly.

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is not None and value.tzinfo is UTC:
                return value.isoformat(" ", "microseconds")[:26]
            naive = self.process_bind_param(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            return None if value is None else self.process_result_value(datetime.fromisoformat(value), dialect)

        return process


def ts(name: str, **kw: Any) -> Column[datetime]:
    return Column(name, UTCDateTime(), **kw)


# -- catalog -----------------------------------------------------------------------------------

catalog_state = Table(
    "catalog_state",
    metadata,
    Column("id", Integer, primary_key=True),
    # Bumped in the same transaction as any catalog change: read models and ETags key on it.
    Column("revision", BigInteger, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("handle", String(100), nullable=False, unique=True),
    Column("title", String(300), nullable=False),
    Column("brand", String(200)),
    Column("category", String(200)),
    Column("status", String(20), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("catalog_revision", BigInteger, nullable=False, index=True),
    ts("updated_at", nullable=False),
    Column("doc", LargeBinary, nullable=False),
)

product_revisions = Table(
    "product_revisions",
    metadata,
    Column("product_id", String(40), primary_key=True),
    Column("revision", Integer, primary_key=True),
    ts("changed_at", nullable=False),
    Column("actor", String(100), nullable=False),
    Column("doc", LargeBinary, nullable=False),
)

variants = Table(
    "variants",
    metadata,
    Column("sku", String(50), primary_key=True),
    Column("product_id", String(40), ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("gtin", String(14), index=True),
)

# -- inventory ---------------------------------------------------------------------------------

locations = Table(
    "locations",
    metadata,
    Column("id", String(50), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("pickup", Boolean, nullable=False),
    Column("preparation_minutes", Integer, nullable=False),
    Column("store_code", String(60)),
    Column("address", Text, nullable=False, default=""),
)

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("sku", String(50), primary_key=True),
    Column("location_id", String(50), ForeignKey("locations.id"), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    # Sum of ACTIVE reservations; expired ones are swept by the same conditional statements.
    Column("reserved", Integer, nullable=False, default=0),
    # Wall-clock microseconds of the last change: incremental publishing finds moved stock by it,
    # scanning the table. Not indexed: every sale updates it, and an indexed column would make
    # each of those updates write index entries (on PostgreSQL: no HOT update, so the hottest
    # rows in the store would pile up versions in the primary key's index between vacuums).
    Column("changed_us", BigInteger, nullable=False, default=0, server_default="0"),
    CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
    CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("sku", String(50), nullable=False),
    Column("location_id", String(50), nullable=False),
    Column("quantity", Integer, nullable=False),
    ts("expires_at", nullable=False),
    Column("status", String(20), nullable=False),
    Column("reference", String(80), nullable=False, default=""),
    Index("ix_reservations_stock_active", "sku", "location_id", "status"),
    Index("ix_reservations_reference", "reference"),
)

# -- customers ---------------------------------------------------------------------------------

customers = Table(
    "customers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("tier", String(40)),
    ts("created_at", nullable=False),
    Column("merged_into", String(40)),
    Column("password_hash", String(200)),
)

identities = Table(
    "identities",
    metadata,
    Column("kind", String(30), primary_key=True),
    Column("namespace", String(60), primary_key=True, default=""),
    Column("value", String(200), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    ts("linked_at", nullable=False),
    Column("channel", String(60), nullable=False),
)

# -- carts -------------------------------------------------------------------------------------

carts = Table(
    "carts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("channel", String(60), nullable=False),
    Column("channels", Text, nullable=False),  # JSON list, origin first
    Column("customer_id", String(40), index=True),
    Column("status", String(20), nullable=False),
    Column("coupon", String(60)),
    Column("attribution", Text, nullable=False, default="{}"),
    ts("created_at", nullable=False),
    ts("updated_at", nullable=False),
    Column("version", Integer, nullable=False),
)

cart_lines = Table(
    "cart_lines",
    metadata,
    Column("cart_id", String(40), ForeignKey("carts.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("sku", String(50), nullable=False),
    Column("quantity", Integer, nullable=False),
)

# -- orders ------------------------------------------------------------------------------------

orders = Table(
    "orders",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("number", String(20), nullable=False, unique=True),
    Column("channel", String(60), nullable=False, index=True),
    Column("external_ref", String(120)),
    Column("customer_id", String(40), index=True),
    Column("status", String(30), nullable=False),
    Column("fulfilment", String(30), nullable=False),
    Column("pickup_location_id", String(50)),
    ts("ready_by"),
    Column("currency", String(3), nullable=False),
    Column("subtotal", BigInteger, nullable=False),
    Column("discount", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("email", String(200)),
    Column("phone", String(40)),
    Column("cart_id", String(40), unique=True),
    Column("attribution", Text, nullable=False, default="{}"),
    ts("created_at", nullable=False, index=True),
    ts("updated_at", nullable=False),
    # External order ids are idempotent: one order per (channel, external id).
    UniqueConstraint("channel", "external_ref", name="uq_orders_channel_external_ref"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(40), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(50), nullable=False),
    Column("title", String(300), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("location_id", String(50), nullable=False),
    Column("quantity_returned", Integer, nullable=False, default=0),
    Column("quantity_refunded", Integer, nullable=False, default=0),
    CheckConstraint("quantity_returned <= quantity", name="returned_within_quantity"),
    CheckConstraint("quantity_refunded <= quantity", name="refunded_within_quantity"),
)

# -- events and outbox -------------------------------------------------------------------------

events = Table(
    "events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("type", String(60), nullable=False),
    ts("occurred_at", nullable=False),
    Column("channel", String(60), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("customer_id", String(40)),
    Column("order_id", String(40)),
    Column("cart_id", String(40)),
    Column("payload", LargeBinary, nullable=False),
    # Guest events (no customer yet) are not in it: a cart adopted at checkout looks its events
    # up by cart, and an index holding every guest event would be the planner's choice for
    # ``customer_id IS NULL`` (scanning all of them).
    Index(
        "ix_events_customer",
        "customer_id",
        "seq",
        postgresql_where=text("customer_id IS NOT NULL"),
        sqlite_where=text("customer_id IS NOT NULL"),
    ),
    # Likewise only the events about an order, about a cart (most events are about one or the
    # other, not both): fewer entries, fewer index pages written per transaction.
    Index(
        "ix_events_order",
        "order_id",
        "seq",
        postgresql_where=text("order_id IS NOT NULL"),
        sqlite_where=text("order_id IS NOT NULL"),
    ),
    Index(
        "ix_events_cart",
        "cart_id",
        "seq",
        postgresql_where=text("cart_id IS NOT NULL"),
        sqlite_where=text("cart_id IS NOT NULL"),
    ),
)

outbox = Table(
    "outbox",
    metadata,
    Column("event_seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("status", String(20), nullable=False),  # pending | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    ts("available_at", nullable=False),
    ts("locked_until"),
    Column("locked_by", String(80)),
    Column("last_error", Text),
    Index("ix_outbox_pending", "status", "available_at"),
)

# -- gateway: keys, sessions, idempotency, outbound webhooks ------------------------------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    # SHA-256 of the key. Keys carry 256 random bits, so a fast hash is safe and keeps auth cheap.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("channel", String(60), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("name", String(200), nullable=False, default=""),
    ts("created_at", nullable=False),
    ts("revoked_at"),
)

customer_sessions = Table(
    "customer_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("customer_id", String(40), nullable=False, index=True),
    Column("channel", String(60), nullable=False),
    ts("created_at", nullable=False),
    ts("expires_at", nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(80), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(20), nullable=False),  # in_flight | open (answer not final) | done
    Column("response_status", Integer),
    Column("response_headers", Text),
    Column("response_body", LargeBinary),
    ts("created_at", nullable=False),
    ts("expires_at", nullable=False, index=True),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=False),  # space-separated; "*" for all
    # Standard Webhooks signing secret (whsec_...), shown once at creation.
    Column("secret", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    ts("created_at", nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("subscription_id", String(40), nullable=False, index=True),
    Column("event_seq", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    ts("next_attempt_at", nullable=False),
    ts("locked_until"),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    ts("delivered_at"),
    UniqueConstraint("subscription_id", "event_seq", name="uq_webhook_deliveries_sub_event"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

inbound_deliveries = Table(
    "inbound_deliveries",
    metadata,
    # Webhook deliveries received from channels, deduplicated on (channel, delivery id).
    Column("channel", String(60), primary_key=True),
    Column("delivery_id", String(200), primary_key=True),
    ts("received_at", nullable=False),
    Column("result", Text),
)

# -- publication pipeline ------------------------------------------------------------------------

publications = Table(
    "publications",
    metadata,
    # The current listing of a product on a channel, as last published.
    Column("channel", String(60), primary_key=True),
    Column("product_id", String(40), primary_key=True),
    Column("status", String(20), nullable=False),  # published | rejected | withdrawn | failed
    # Hash of what the rendering depends on (product revision, stock, channel settings): when it
    # has not moved, the product is not rendered again.
    Column("input_hash", String(32), nullable=False),
    # Hash of the rendered listing: only a different hash counts as a change to send.
    Column("content_hash", String(32)),
    Column("content", LargeBinary),
    Column("reason", Text),
    Column("product_revision", Integer, nullable=False),
    Column("run_id", String(40), nullable=False),
    ts("updated_at", nullable=False),
    Index("ix_publications_channel_status", "channel", "status"),
)

publication_log = Table(
    "publication_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False, index=True),
    Column("channel", String(60), nullable=False),
    Column("product_id", String(40), nullable=False),
    Column("action", String(20), nullable=False),  # created | updated | rejected | withdrawn | failed
    Column("content_hash", String(32)),
    Column("reason", Text),
    Column("product_revision", Integer, nullable=False),
    ts("at", nullable=False),
    Index("ix_publication_log_product", "channel", "product_id", "seq"),
)

publication_runs = Table(
    "publication_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(60), nullable=False),
    Column("status", String(20), nullable=False),  # running | done | failed
    Column("trigger", String(60), nullable=False),
    Column("total", Integer, nullable=False, default=0),
    Column("rendered", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("withdrawn", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("error", Text),
    ts("started_at", nullable=False),
    ts("finished_at"),
    # What the run saw, so the next one renders only what moved since: full | incremental.
    Column("mode", String(12)),
    Column("catalog_revision", BigInteger),
    Column("stock_mark_us", BigInteger),
    Column("settings_hash", String(32)),
    Index("ix_publication_runs_channel", "channel", "started_at"),
)

jobs = Table(
    "jobs",
    metadata,
    # Background work requested through the API and run by `omniretail worker`.
    Column("id", String(40), primary_key=True),
    Column("kind", String(60), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(20), nullable=False),  # queued | running | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    ts("created_at", nullable=False),
    ts("available_at", nullable=False),
    ts("locked_until"),
    Column("locked_by", String(80)),
    ts("finished_at"),
    Column("result", Text),
    Column("error", Text),
    Index("ix_jobs_due", "status", "available_at"),
)

task_state = Table(
    "task_state",
    metadata,
    # Periodic plugin tasks (e.g. a marketplace order poller): claimed by one worker at a time.
    Column("name", String(120), primary_key=True),
    ts("next_run_at", nullable=False),
    ts("locked_until"),
    Column("locked_by", String(80)),
    ts("last_run_at"),
    Column("last_error", Text),
    # What the task keeps between runs (e.g. a LastUpdatedAfter cursor), as JSON.
    Column("state", Text, nullable=False, default="{}"),
)

cart_handoffs = Table(
    "cart_handoffs",
    metadata,
    # A short code that continues one cart on another channel: expiring, claimable once.
    Column("code", String(16), primary_key=True),
    Column("cart_id", String(40), nullable=False, index=True),
    Column("channel", String(60), nullable=False),
    ts("created_at", nullable=False),
    ts("expires_at", nullable=False),
    ts("claimed_at"),
    Column("claimed_channel", String(60)),
)

# -- payments and the loyalty wallet -------------------------------------------------------------

checkout_attempts = Table(
    "checkout_attempts",
    metadata,
    # A checkout with payment, in between its steps: reserving -> authorizing -> completed,
    # declined or abandoned. Its stock holds are reservations whose reference is this id.
    Column("id", String(40), primary_key=True),
    Column("cart_id", String(40), nullable=False),
    # The cart while this attempt is live (NULL once it ended): one live attempt per cart.
    Column("active_cart_id", String(40), unique=True),
    Column("idempotency_key", String(255), nullable=False),
    Column("channel", String(60), nullable=False),
    Column("status", String(20), nullable=False),
    Column("customer_id", String(40)),
    Column("currency", String(3), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("cart_version", Integer, nullable=False),
    Column("payment_id", String(40), nullable=False),
    Column("lines", Text, nullable=False),  # JSON: the held lines
    Column("request", LargeBinary, nullable=False),  # JSON: the checkout request
    Column("order_id", String(40)),
    Column("reason", Text),
    ts("expires_at", nullable=False),
    # Whoever talks to the provider about this attempt holds the lease (a retry, a webhook, the
    # recovery job); every final transition is conditional on still holding it.
    ts("locked_until"),
    Column("lock_token", String(40)),
    ts("created_at", nullable=False),
    ts("updated_at", nullable=False),
    UniqueConstraint("cart_id", "idempotency_key", name="uq_checkout_attempts_cart_key"),
    Index("ix_checkout_attempts_status", "status", "updated_at"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", String(40), index=True),
    Column("attempt_id", String(40), index=True),
    Column("customer_id", String(40)),
    Column("provider", String(60), nullable=False),
    Column("provider_ref", String(200)),
    Column("status", String(20), nullable=False),
    Column("capture_mode", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("authorized", BigInteger, nullable=False, default=0),
    Column("captured", BigInteger, nullable=False, default=0),
    Column("refunded", BigInteger, nullable=False, default=0),
    Column("refund_pending", BigInteger, nullable=False, default=0),
    Column("last_error", Text),
    ts("created_at", nullable=False),
    ts("updated_at", nullable=False),
    CheckConstraint("amount >= 0 AND authorized >= 0", name="amounts_not_negative"),
    CheckConstraint("captured >= 0 AND captured <= authorized", name="captured_within_authorized"),
    CheckConstraint(
        "refunded >= 0 AND refund_pending >= 0 AND refunded + refund_pending <= captured",
        name="refunded_within_captured",
    ),
)

payment_operations = Table(
    "payment_operations",
    metadata,
    # Captures, voids and refunds asked of a provider; pending ones are retried with the same key.
    Column("id", String(40), primary_key=True),
    Column("payment_id", String(40), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # capture | void | refund
    Column("amount", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),  # pending | succeeded | failed
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("reason", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("channel", String(60), nullable=False),
    Column("actor", String(100), nullable=False),
    ts("created_at", nullable=False),
    ts("updated_at", nullable=False),
    CheckConstraint("amount >= 0", name="amount_not_negative"),
    Index("ix_payment_operations_status", "status", "updated_at"),
)

wallets = Table(
    "wallets",
    metadata,
    # Stored value and loyalty points per customer. Changed only by conditional UPDATEs
    # (balance = balance - :a WHERE balance >= :a), each with its ledger row.
    Column("customer_id", String(40), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("points", BigInteger, nullable=False, default=0),
    Column("lifetime_spend", BigInteger, nullable=False, default=0),
    ts("updated_at", nullable=False),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint("points >= 0", name="points_not_negative"),
)

wallet_ledger = Table(
    "wallet_ledger",
    metadata,
    # Append-only: top-ups, payments, refunds, adjustments, points earned.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("customer_id", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("points_after", BigInteger, nullable=False),
    # A write with a reference already used changes nothing: idempotent.
    Column("reference", String(255), nullable=False, unique=True),
    Column("order_id", String(40)),
    Column("channel", String(60), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("note", Text, nullable=False, default=""),
    ts("created_at", nullable=False),
    Index("ix_wallet_ledger_customer", "customer_id", "seq"),
)
