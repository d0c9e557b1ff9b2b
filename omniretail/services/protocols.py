"""The ports: what the services need from storage, as Protocols.

Services speak only to these; ``omniretail.storage.repositories`` implements them with
SQLAlchemy on SQLite and PostgreSQL. Every write a use case makes happens inside one
``UnitOfWork.write()`` transaction, and the events it records are committed with it (outbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from omniretail.domain.cart import Cart, CartLine
from omniretail.domain.catalog import Product
from omniretail.domain.customer import Customer, Identity
from omniretail.domain.events import Event
from omniretail.domain.inventory import Reservation, StockLevel, StockLocation
from omniretail.domain.order import Order, OrderStatus
from omniretail.domain.payment import (
    AttemptLine,
    AttemptStatus,
    CheckoutAttempt,
    LedgerEntry,
    OperationStatus,
    Payment,
    PaymentOperation,
    PaymentStatus,
    Wallet,
)


class ProductRepository(Protocol):
    async def get(self, product_id: str) -> Product | None: ...
    async def get_by_handle(self, handle: str) -> Product | None: ...
    async def get_by_skus(self, skus: Sequence[str]) -> dict[str, Product]: ...
    async def sku_owner(self, sku: str) -> str | None: ...
    async def save(self, product: Product, actor: str, catalog_revision: int) -> None:
        """Insert or replace the product (its revision already incremented) and record it."""

    async def page(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        brand: str | None = None,
        q: str | None = None,
    ) -> list[Product]: ...
    async def revisions(self, product_id: str) -> list[tuple[int, datetime, str]]: ...
    async def next_catalog_revision(self) -> int:
        """Bump and return the catalog revision (serialises catalog writers)."""

    async def catalog_revision(self) -> int: ...
    async def changed_since(self, catalog_revision: int) -> list[Product]:
        """Products (any status) written after ``catalog_revision``, by id."""
        ...

    async def ids_changed_since(self, catalog_revision: int, upto: int | None = None) -> list[str]:
        """Ids of the products written after ``catalog_revision`` (and at or before ``upto``)."""
        ...


class StockRepository(Protocol):
    async def sync_locations(self, locations: Sequence[StockLocation]) -> None: ...
    async def levels(
        self, skus: Sequence[str], location_ids: Sequence[str] | None = None, now: datetime | None = None
    ) -> list[StockLevel]:
        """Stock levels; with ``now``, live reservations only (expired ones are not counted)."""

    async def available_by_sku(self, location_ids: Sequence[str], now: datetime) -> dict[str, int]:
        """Free units of every SKU stocked at these locations (expired holds not counted)."""

    async def moved_since(
        self, location_ids: Sequence[str], mark_us: int, expired_after: datetime, now: datetime
    ) -> set[str]:
        """SKUs whose free units at these locations may have moved: a stock row changed at or
        after the wall-clock mark ``mark_us`` (microseconds), or a hold lapsed in
        ``(expired_after, now]`` without being swept yet."""

    async def adjust(self, sku: str, location_id: str, delta: int) -> StockLevel | None:
        """Change on-hand by ``delta`` (creating the row); None if that would go below what is
        reserved or below zero. One conditional statement."""

    async def take(self, sku: str, location_id: str, quantity: int) -> bool:
        """Sell ``quantity`` units not held by a reservation: ``on_hand -= q`` only where
        ``on_hand - reserved >= q``. One conditional UPDATE; False changes nothing."""

    async def put_back(self, sku: str, location_id: str, quantity: int) -> None: ...
    async def reserve(self, reservation: Reservation) -> bool:
        """Hold units: ``reserved += q`` only where ``on_hand - reserved >= q``."""

    async def release(self, reservation_id: str) -> bool: ...
    async def commit_reservation(self, reservation_id: str, now: datetime) -> bool:
        """Turn a live hold into a sale: ``on_hand -= q, reserved -= q``."""

    async def sweep_expired(self, now: datetime, sku: str | None = None, location_id: str | None = None) -> int:
        """Release expired holds (each exactly once, whatever the concurrency)."""

    async def reservations(self, reference: str) -> list[Reservation]: ...


class CartRepository(Protocol):
    async def get(self, cart_id: str) -> Cart | None: ...
    async def insert(self, cart: Cart) -> None: ...
    async def update(
        self, cart: Cart, expected_version: int, *, lines: bool = True, previous: Sequence[CartLine] | None = None
    ) -> bool:
        """Write the cart if nobody changed it since ``expected_version`` (optimistic);
        ``lines=False`` when only the cart's own fields changed (its lines are kept). With
        ``previous`` (the lines as read at ``expected_version``) only what changed is written."""

    async def open_for_customer(self, customer_id: str) -> Cart | None: ...
    async def create_handoff(self, code: str, cart_id: str, channel: str, now: datetime, expires_at: datetime) -> bool:
        """False if the code is taken (the caller draws another)."""

    async def claim_handoff(self, code: str, channel: str, now: datetime) -> str | None:
        """The cart id if this call claimed the live code (once, whatever the concurrency)."""

    async def handoff(self, code: str) -> tuple[str, str, datetime, datetime | None] | None:
        """(cart id, channel that made it, expiry, claimed at)."""


class OrderRepository(Protocol):
    async def get(self, order_id: str) -> Order | None: ...
    async def get_by_number(self, number: str) -> Order | None: ...
    async def get_by_cart(self, cart_id: str) -> Order | None: ...
    async def get_by_external_ref(self, channel: str, external_ref: str) -> Order | None: ...
    async def insert(self, order: Order) -> bool:
        """False if the (channel, external_ref) or the cart already has an order."""

    async def set_status(self, order_id: str, expected: OrderStatus, new: OrderStatus, now: datetime) -> bool:
        """Conditional: only if the status is still ``expected``."""

    async def add_returned(self, order_id: str, line_no: int, quantity: int) -> bool:
        """Conditional: only while returned + quantity <= sold."""

    async def add_refunded(self, order_id: str, line_no: int, quantity: int) -> bool:
        """Conditional: only while refunded + quantity <= sold."""

    async def for_customer(self, customer_id: str, *, after: str | None, limit: int) -> list[Order]: ...
    async def page(
        self, *, after: str | None, limit: int, channel: str | None = None, status: str | None = None
    ) -> list[Order]: ...


class CustomerRepository(Protocol):
    async def get(self, customer_id: str) -> Customer | None: ...
    async def standing(self, customer_id: str) -> tuple[str | None, str | None] | None:
        """``(merged_into, tier)`` of the record, without reading its identities; None if absent."""

    async def insert(self, customer: Customer) -> None: ...
    async def find(self, identity: Identity) -> str | None:
        """The customer id that owns this (normalised) identity."""

    async def link(self, identity: Identity, customer_id: str, channel: str, now: datetime) -> bool:
        """Attach an identity; False if another customer already owns it."""

    async def set_tier(self, customer_id: str, tier: str | None) -> None: ...
    async def set_name(self, customer_id: str, name: str) -> None: ...
    async def password_hash(self, customer_id: str) -> str | None: ...
    async def set_password_hash(self, customer_id: str, password_hash: str) -> None: ...
    async def merge(self, source_id: str, target_id: str) -> tuple[int, int, int]:
        """Move orders, carts, identities and events from source to target; mark the source
        merged. Returns (orders, carts, identities) moved."""


class EventLog(Protocol):
    async def record(self, event: Event) -> None:
        """Append the event and its outbox row in the current transaction (written with the
        transaction's other events before it commits, in the order recorded)."""

    async def for_customer(
        self,
        customer_id: str,
        *,
        after: int | None = None,
        limit: int = 50,
        types: Sequence[str] = (),
        channels: Sequence[str] = (),
    ) -> list[tuple[int, Event]]: ...
    async def for_order(self, order_id: str) -> list[tuple[int, Event]]: ...
    async def for_cart(self, cart_id: str) -> list[tuple[int, Event]]: ...

    async def adopt_cart(self, cart_id: str, customer_id: str) -> None:
        """A guest cart became a customer's: its events join their timeline."""


class PaymentRepository(Protocol):
    async def insert(self, payment: Payment) -> None: ...
    async def get(self, payment_id: str) -> Payment | None: ...
    async def for_order(self, order_id: str) -> list[Payment]: ...
    async def set_authorized(
        self, payment_id: str, *, order_id: str, amount: int, provider_ref: str | None, now: datetime
    ) -> bool:
        """Conditional: only an ``authorizing`` payment, only up to its amount."""

    async def set_status(
        self,
        payment_id: str,
        expected: Sequence[PaymentStatus],
        new: PaymentStatus,
        now: datetime,
        *,
        error: str | None = None,
    ) -> bool:
        """Conditional: only from one of the ``expected`` statuses."""

    async def add_captured(self, payment_id: str, amount: int, now: datetime) -> bool:
        """``captured += amount`` only while capturing and ``captured + amount <= authorized``."""

    async def reserve_refund(self, payment_id: str, amount: int, now: datetime) -> bool:
        """``refund_pending += amount`` only while ``refunded + refund_pending + amount <= captured``."""

    async def settle_refund(self, payment_id: str, amount: int, *, succeeded: bool, now: datetime) -> int | None:
        """End a refund in flight (counted as refunded if it succeeded); the refunded total."""

    async def insert_operation(self, op: PaymentOperation) -> bool:
        """False if an operation with this idempotency key exists already."""

    async def operation(self, operation_id: str) -> PaymentOperation | None: ...
    async def operations(self, payment_ids: Sequence[str]) -> list[PaymentOperation]: ...
    async def finish_operation(
        self, operation_id: str, status: OperationStatus, now: datetime, *, error: str | None = None
    ) -> bool:
        """Conditional: a pending operation ends once."""

    async def note_operation_error(self, operation_id: str, error: str, now: datetime) -> None: ...
    async def pending_operations(self, before: datetime, limit: int) -> list[PaymentOperation]: ...


class CheckoutAttemptRepository(Protocol):
    async def insert(self, attempt: CheckoutAttempt) -> bool:
        """False if the cart has a live attempt, or the key was used for this cart."""

    async def get(self, attempt_id: str) -> CheckoutAttempt | None: ...
    async def by_key(self, cart_id: str, idempotency_key: str) -> CheckoutAttempt | None: ...
    async def live_for_cart(self, cart_id: str) -> CheckoutAttempt | None: ...
    async def by_payment(self, payment_id: str) -> CheckoutAttempt | None: ...
    async def set_lines(self, attempt_id: str, lines: Sequence[AttemptLine], status: AttemptStatus) -> None: ...
    async def lease(self, attempt_id: str, token: str, now: datetime, seconds: float) -> bool:
        """Hold a live attempt (nobody else holds it, or the lease lapsed)."""

    async def unlease(self, attempt_id: str, token: str, now: datetime) -> None: ...
    async def finish(
        self,
        attempt_id: str,
        token: str,
        status: AttemptStatus,
        now: datetime,
        *,
        order_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """End a live attempt, only while ``token`` still holds it."""

    async def stale(self, before: datetime, now: datetime, limit: int) -> list[CheckoutAttempt]: ...


class WalletRepository(Protocol):
    async def get(self, customer_id: str) -> Wallet | None: ...
    async def ensure(self, customer_id: str, currency: str, now: datetime) -> None: ...
    async def change(
        self, customer_id: str, *, amount: int, points: int = 0, spend: int = 0, now: datetime
    ) -> tuple[int, int, int] | None:
        """One conditional UPDATE; None (nothing changed) if balance or points would go below 0.
        Returns (balance, points, lifetime spend) after."""

    async def credit(
        self, customer_id: str, currency: str, *, amount: int, points: int, spend: int, now: datetime
    ) -> tuple[int, int, int]:
        """Add non-negative ``amount``, ``points`` and ``spend``, creating the wallet if need be (one
        upsert). Returns (balance, points, lifetime spend) after."""

    async def append(self, entry: LedgerEntry) -> int:
        """Append a ledger row; raises ``DuplicateReference`` if its reference is taken."""

    async def entry(self, reference: str) -> LedgerEntry | None: ...
    async def ledger(self, customer_id: str, *, before: int | None, limit: int) -> list[LedgerEntry]: ...


class Transaction(Protocol):
    """The repositories of one open transaction."""

    @property
    def products(self) -> ProductRepository: ...
    @property
    def stock(self) -> StockRepository: ...
    @property
    def carts(self) -> CartRepository: ...
    @property
    def orders(self) -> OrderRepository: ...
    @property
    def customers(self) -> CustomerRepository: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def payments(self) -> PaymentRepository: ...
    @property
    def attempts(self) -> CheckoutAttemptRepository: ...
    @property
    def wallets(self) -> WalletRepository: ...


class UnitOfWork(Protocol):
    def write(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: all or nothing, events included."""

    def read(self) -> AbstractAsyncContextManager[Transaction]: ...
