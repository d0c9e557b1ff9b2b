"""SQLAlchemy Core implementations of the service ports (``omniretail.services.protocols``).

Every stock and status change is one conditional statement whose row count says whether it
happened; none reads a value, changes it in Python and writes it back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
from sqlalchemy import Table, and_, bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.expression import Insert, Select, TableClause, Update

from omniretail.domain.cart import Cart, CartLine, CartStatus
from omniretail.domain.catalog import Product
from omniretail.domain.customer import Customer, Identity, IdentityKind
from omniretail.domain.events import Event, decode_event, encode_event
from omniretail.domain.inventory import Reservation, ReservationStatus, StockLevel, StockLocation
from omniretail.domain.order import Fulfilment, Order, OrderLine, OrderStatus
from omniretail.domain.payment import LedgerEntry, LedgerKind
from omniretail.storage import tables as t
from omniretail.storage.database import Database, DbConnection, dialect_insert, insert_or_ignore, prepared
from omniretail.storage.payments import SqlCheckoutAttempts, SqlPayments, SqlWallets, load_payments
from omniretail.storage.prepared import PREPARED

_product_decoder = msgspec.json.Decoder(Product)
_json = msgspec.json.Encoder()
_str_list = msgspec.json.Decoder(list[str])
_str_dict = msgspec.json.Decoder(dict[str, str])


def _now() -> datetime:
    return datetime.now(UTC)


def _upsert(conn: DbConnection, table: Table, values: dict[str, Any], keys: Sequence[str]) -> Any:
    stmt = dialect_insert(conn, table).values(**values)
    updates = {k: stmt.excluded[k] for k in values if k not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)


class SqlProducts:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def get(self, product_id: str) -> Product | None:
        doc = await self.conn.scalar(select(t.products.c.doc).where(t.products.c.id == product_id))
        return _product_decoder.decode(doc) if doc is not None else None

    async def get_by_handle(self, handle: str) -> Product | None:
        doc = await self.conn.scalar(select(t.products.c.doc).where(t.products.c.handle == handle))
        return _product_decoder.decode(doc) if doc is not None else None

    async def get_by_skus(self, skus: Sequence[str]) -> dict[str, Product]:
        if not skus:
            return {}
        unique = set(skus)
        if len(unique) == 1:  # the usual cart: one prepared statement, no IN list to expand
            rows = await self.conn.execute(_PRODUCT_BY_SKU, {"sku": next(iter(unique))})
        else:
            rows = await self.conn.execute(_PRODUCTS_BY_SKUS, {"skus": list(unique)})
        return {sku: _product_decoder.decode(doc) for sku, doc in rows}

    async def sku_owner(self, sku: str) -> str | None:
        return await self.conn.scalar(select(t.variants.c.product_id).where(t.variants.c.sku == sku))

    async def save(self, product: Product, actor: str, catalog_revision: int) -> None:
        now = _now()
        doc = _json.encode(product)
        await self.conn.execute(
            _upsert(
                self.conn,
                t.products,
                {
                    "id": product.id,
                    "handle": product.handle,
                    "title": product.title,
                    "brand": product.brand,
                    "category": product.category,
                    "status": product.status.value,
                    "revision": product.revision,
                    "catalog_revision": catalog_revision,
                    "updated_at": now,
                    "doc": doc,
                },
                ["id"],
            )
        )
        await self.conn.execute(delete(t.variants).where(t.variants.c.product_id == product.id))
        await self.conn.execute(
            insert(t.variants),
            [{"sku": v.sku, "product_id": product.id, "gtin": v.gtin} for v in product.variants],
        )
        await self.conn.execute(
            insert(t.product_revisions).values(
                product_id=product.id, revision=product.revision, changed_at=now, actor=actor, doc=doc
            )
        )

    async def page(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        brand: str | None = None,
        q: str | None = None,
    ) -> list[Product]:
        stmt = select(t.products.c.doc).order_by(t.products.c.id).limit(limit)
        if after:
            stmt = stmt.where(t.products.c.id > after)
        if status:
            stmt = stmt.where(t.products.c.status == status)
        if brand:
            stmt = stmt.where(t.products.c.brand == brand)
        if q:
            stmt = stmt.where(t.products.c.title.ilike(f"%{q}%"))
        return [_product_decoder.decode(doc) for doc in await self.conn.scalars(stmt)]

    async def revisions(self, product_id: str) -> list[tuple[int, datetime, str]]:
        rows = await self.conn.execute(
            select(t.product_revisions.c.revision, t.product_revisions.c.changed_at, t.product_revisions.c.actor)
            .where(t.product_revisions.c.product_id == product_id)
            .order_by(t.product_revisions.c.revision)
        )
        return [(r, c, a) for r, c, a in rows]

    async def next_catalog_revision(self) -> int:
        result = await self.conn.execute(
            update(t.catalog_state)
            .where(t.catalog_state.c.id == 1)
            .values(revision=t.catalog_state.c.revision + 1)
            .returning(t.catalog_state.c.revision)
        )
        revision = result.scalar()
        if revision is None:
            await self.conn.execute(insert(t.catalog_state).values(id=1, revision=1))
            return 1
        return int(revision)

    async def catalog_revision(self) -> int:
        value = await self.conn.scalar(_CATALOG_REVISION)
        return int(value or 0)

    async def changed_since(self, catalog_revision: int) -> list[Product]:
        p = t.products
        stmt = select(p.c.doc).where(p.c.catalog_revision > catalog_revision).order_by(p.c.id)
        return [_product_decoder.decode(doc) for doc in await self.conn.scalars(stmt)]

    async def ids_changed_since(self, catalog_revision: int, upto: int | None = None) -> list[str]:
        p = t.products
        stmt = select(p.c.id).where(p.c.catalog_revision > catalog_revision).order_by(p.c.id)
        if upto is not None:
            stmt = stmt.where(p.c.catalog_revision <= upto)
        return list(await self.conn.scalars(stmt))


def _now_us() -> int:
    """Wall-clock microseconds for ``stock_levels.changed_us`` (not the kernel clock: the mark
    orders real commits, and incremental publishing compares it with its own wall-clock mark)."""
    return time.time_ns() // 1000


class SqlStock:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def sync_locations(self, locations: Sequence[StockLocation]) -> None:
        for loc in locations:
            await self.conn.execute(
                _upsert(
                    self.conn,
                    t.locations,
                    {
                        "id": loc.id,
                        "name": loc.name,
                        "kind": loc.kind.value,
                        "pickup": loc.pickup,
                        "preparation_minutes": loc.preparation_minutes,
                        "store_code": loc.store_code,
                        "address": loc.address,
                    },
                    ["id"],
                )
            )

    async def levels(
        self, skus: Sequence[str], location_ids: Sequence[str] | None = None, now: datetime | None = None
    ) -> list[StockLevel]:
        sl = t.stock_levels
        stmt = select(sl.c.sku, sl.c.location_id, sl.c.on_hand, sl.c.reserved).where(sl.c.sku.in_(list(skus)))
        if location_ids is not None:
            stmt = stmt.where(sl.c.location_id.in_(list(location_ids)))
        rows = (await self.conn.execute(stmt.order_by(sl.c.sku, sl.c.location_id))).all()
        expired: dict[tuple[str, str], int] = {}
        if now is not None and rows:
            r = t.reservations
            exp = await self.conn.execute(
                select(r.c.sku, r.c.location_id, func.sum(r.c.quantity))
                .where(
                    r.c.sku.in_(list(skus)),
                    r.c.status == ReservationStatus.ACTIVE.value,
                    r.c.expires_at <= now,
                )
                .group_by(r.c.sku, r.c.location_id)
            )
            expired = {(s, loc): int(q) for s, loc, q in exp}
        return [
            StockLevel(sku=s, location_id=loc, on_hand=oh, reserved=res - expired.get((s, loc), 0))
            for s, loc, oh, res in rows
        ]

    async def available_by_sku(self, location_ids: Sequence[str], now: datetime) -> dict[str, int]:
        sl, r = t.stock_levels, t.reservations
        rows = await self.conn.execute(
            select(sl.c.sku, func.sum(sl.c.on_hand - sl.c.reserved))
            .where(sl.c.location_id.in_(list(location_ids)))
            .group_by(sl.c.sku)
        )
        totals = {sku: int(n) for sku, n in rows}
        expired = await self.conn.execute(
            select(r.c.sku, func.sum(r.c.quantity))
            .where(
                r.c.location_id.in_(list(location_ids)),
                r.c.status == ReservationStatus.ACTIVE.value,
                r.c.expires_at <= now,
            )
            .group_by(r.c.sku)
        )
        for sku, n in expired:
            totals[sku] = totals.get(sku, 0) + int(n)
        return totals

    async def moved_since(
        self, location_ids: Sequence[str], mark_us: int, expired_after: datetime, now: datetime
    ) -> set[str]:
        sl, r = t.stock_levels, t.reservations
        locations = list(location_ids)
        changed = await self.conn.scalars(
            select(sl.c.sku).where(sl.c.changed_us >= mark_us, sl.c.location_id.in_(locations)).distinct()
        )
        lapsed = await self.conn.scalars(
            select(r.c.sku)
            .where(
                r.c.status == ReservationStatus.ACTIVE.value,
                r.c.expires_at > expired_after,
                r.c.expires_at <= now,
                r.c.location_id.in_(locations),
            )
            .distinct()
        )
        return {*changed, *lapsed}

    async def adjust(self, sku: str, location_id: str, delta: int) -> StockLevel | None:
        sl = t.stock_levels
        result = await self.conn.execute(
            update(sl)
            .where(
                sl.c.sku == sku,
                sl.c.location_id == location_id,
                sl.c.on_hand + delta >= sl.c.reserved,
                sl.c.on_hand + delta >= 0,
            )
            .values(on_hand=sl.c.on_hand + delta, changed_us=_now_us())
            .returning(sl.c.on_hand, sl.c.reserved)
        )
        row = result.first()
        if row is None:
            exists = await self.conn.scalar(
                select(func.count()).select_from(sl).where(sl.c.sku == sku, sl.c.location_id == location_id)
            )
            if exists or delta < 0:
                return None
            try:
                async with self.conn.begin_nested():
                    await self.conn.execute(
                        insert(sl).values(
                            sku=sku, location_id=location_id, on_hand=delta, reserved=0, changed_us=_now_us()
                        )
                    )
            except IntegrityError:  # created concurrently: apply the delta to that row
                return await self.adjust(sku, location_id, delta)
            return StockLevel(sku=sku, location_id=location_id, on_hand=delta, reserved=0)
        return StockLevel(sku=sku, location_id=location_id, on_hand=row[0], reserved=row[1])

    async def take(self, sku: str, location_id: str, quantity: int) -> bool:
        result = await self.conn.execute(
            _TAKE, {"b_sku": sku, "b_location_id": location_id, "b_quantity": quantity, "b_changed_us": _now_us()}
        )
        return result.rowcount == 1

    async def put_back(self, sku: str, location_id: str, quantity: int) -> None:
        if await self.adjust(sku, location_id, quantity) is None:
            raise RuntimeError(f"could not return {quantity} x {sku} to {location_id}")

    async def reserve(self, reservation: Reservation) -> bool:
        sl = t.stock_levels
        result = await self.conn.execute(
            update(sl)
            .where(
                sl.c.sku == reservation.sku,
                sl.c.location_id == reservation.location_id,
                sl.c.on_hand - sl.c.reserved >= reservation.quantity,
            )
            .values(reserved=sl.c.reserved + reservation.quantity, changed_us=_now_us())
        )
        if result.rowcount != 1:
            return False
        await self.conn.execute(
            insert(t.reservations).values(
                id=reservation.id,
                sku=reservation.sku,
                location_id=reservation.location_id,
                quantity=reservation.quantity,
                expires_at=reservation.expires_at,
                status=ReservationStatus.ACTIVE.value,
                reference=reservation.reference,
            )
        )
        return True

    async def _end(
        self, reservation_id: str, status: ReservationStatus, sold: bool, now: datetime | None = None
    ) -> bool:
        r = t.reservations
        cond = [r.c.id == reservation_id, r.c.status == ReservationStatus.ACTIVE.value]
        if sold and now is not None:
            cond.append(r.c.expires_at > now)
        result = await self.conn.execute(
            update(r).where(*cond).values(status=status.value).returning(r.c.sku, r.c.location_id, r.c.quantity)
        )
        row = result.first()
        if row is None:
            return False
        sku, location_id, quantity = row
        sl = t.stock_levels
        values: dict[str, Any] = {"reserved": sl.c.reserved - quantity, "changed_us": _now_us()}
        if sold:
            values["on_hand"] = sl.c.on_hand - quantity
        await self.conn.execute(update(sl).where(sl.c.sku == sku, sl.c.location_id == location_id).values(**values))
        return True

    async def release(self, reservation_id: str) -> bool:
        return await self._end(reservation_id, ReservationStatus.RELEASED, sold=False)

    async def commit_reservation(self, reservation_id: str, now: datetime) -> bool:
        return await self._end(reservation_id, ReservationStatus.COMMITTED, sold=True, now=now)

    async def sweep_expired(self, now: datetime, sku: str | None = None, location_id: str | None = None) -> int:
        r = t.reservations
        if sku is not None and location_id is not None:  # the checkout's case: prebuilt
            result = await self.conn.execute(_SWEEP_ONE, {"b_now": now, "b_sku": sku, "b_location_id": location_id})
        else:
            cond = [r.c.status == ReservationStatus.ACTIVE.value, r.c.expires_at <= now]
            if sku is not None:
                cond.append(r.c.sku == sku)
            if location_id is not None:
                cond.append(r.c.location_id == location_id)
            result = await self.conn.execute(
                update(r)
                .where(*cond)
                .values(status=ReservationStatus.EXPIRED.value)
                .returning(r.c.sku, r.c.location_id, r.c.quantity)
            )
        totals: dict[tuple[str, str], int] = {}
        for s, loc, q in result:
            totals[(s, loc)] = totals.get((s, loc), 0) + q
        sl = t.stock_levels
        for (s, loc), q in totals.items():
            await self.conn.execute(
                update(sl)
                .where(sl.c.sku == s, sl.c.location_id == loc)
                .values(reserved=sl.c.reserved - q, changed_us=_now_us())
            )
        return sum(totals.values())

    async def reservations(self, reference: str) -> list[Reservation]:
        r = t.reservations
        rows = await self.conn.execute(select(r).where(r.c.reference == reference).order_by(r.c.id))
        return [
            Reservation(
                id=x.id,
                sku=x.sku,
                location_id=x.location_id,
                quantity=x.quantity,
                expires_at=x.expires_at,
                status=ReservationStatus(x.status),
                reference=x.reference,
            )
            for x in rows
        ]


# Hot statements built once. Prepared ones (storage.prepared) are run by the driver without
# SQLAlchemy's per-execution work; the expanding IN cannot be, but built once it still saves
# SQLAlchemy constructing the statement and its cache key on every call.
# The cart and its lines in one statement: a row per line (the cart's columns repeated; a cart
# has a few lines), or one row with no line for an empty cart.
_SELECT_CART = prepared(
    select(t.carts, t.cart_lines.c.sku.label("line_sku"), t.cart_lines.c.quantity.label("line_quantity"))
    .select_from(t.carts.outerjoin(t.cart_lines, t.cart_lines.c.cart_id == t.carts.c.id))
    .where(t.carts.c.id == bindparam("cart_id"))
    .order_by(t.cart_lines.c.position)
)
_DELETE_CART_LINES = prepared(delete(t.cart_lines).where(t.cart_lines.c.cart_id == bindparam("cart_id")))
_UPDATE_CART = prepared(
    update(t.carts)
    .where(t.carts.c.id == bindparam("cart_id"), t.carts.c.version == bindparam("expected_version"))
    .values({c.name: bindparam(f"new_{c.name}") for c in t.carts.c if c.name != "id"})
)
_PRODUCTS_BY_SKUS = (
    select(t.variants.c.sku, t.products.c.doc)
    .join(t.products, t.products.c.id == t.variants.c.product_id)
    .where(t.variants.c.sku.in_(bindparam("skus", expanding=True)))
)
_PRODUCT_BY_SKU = prepared(
    select(t.variants.c.sku, t.products.c.doc)
    .join(t.products, t.products.c.id == t.variants.c.product_id)
    .where(t.variants.c.sku == bindparam("sku"))
)
_TAKE = prepared(
    update(t.stock_levels)
    .where(
        t.stock_levels.c.sku == bindparam("b_sku"),
        t.stock_levels.c.location_id == bindparam("b_location_id"),
        t.stock_levels.c.on_hand - t.stock_levels.c.reserved >= bindparam("b_quantity"),
    )
    .values(on_hand=t.stock_levels.c.on_hand - bindparam("b_quantity"), changed_us=bindparam("b_changed_us"))
)
_SWEEP_ONE = prepared(
    update(t.reservations)
    .where(
        t.reservations.c.status == ReservationStatus.ACTIVE.value,
        t.reservations.c.expires_at <= bindparam("b_now"),
        t.reservations.c.sku == bindparam("b_sku"),
        t.reservations.c.location_id == bindparam("b_location_id"),
    )
    .values(status=ReservationStatus.EXPIRED.value)
    .returning(t.reservations.c.sku, t.reservations.c.location_id, t.reservations.c.quantity)
)
_SELECT_CUSTOMER = prepared(select(t.customers).where(t.customers.c.id == bindparam("customer_id")))
_SELECT_IDENTITIES = prepared(
    select(t.identities.c.kind, t.identities.c.value, t.identities.c.namespace)
    .where(t.identities.c.customer_id == bindparam("customer_id"))
    .order_by(t.identities.c.linked_at, t.identities.c.kind)
)
_CUSTOMER_STANDING = prepared(
    select(t.customers.c.merged_into, t.customers.c.tier).where(t.customers.c.id == bindparam("customer_id"))
)
_INSERT_CUSTOMER = prepared(insert(t.customers))
_FIND_IDENTITY = prepared(
    select(t.identities.c.customer_id).where(
        t.identities.c.kind == bindparam("kind"),
        t.identities.c.namespace == bindparam("namespace"),
        t.identities.c.value == bindparam("value"),
    )
)
_INSERT_OUTBOX = prepared(insert(t.outbox))
#: Read before every cart change (is the catalog snapshot current?): prepared, so on PostgreSQL
#: one round trip outside a transaction, not BEGIN, SELECT and ROLLBACK.
_CATALOG_REVISION = prepared(select(t.catalog_state.c.revision).where(t.catalog_state.c.id == 1))
_ADOPT_CART = prepared(
    update(t.events)
    .where(t.events.c.cart_id == bindparam("b_cart_id"), t.events.c.customer_id.is_(None))
    .values(customer_id=bindparam("b_customer_id"))
)
_EVENT_COLUMNS = [c for c in t.events.c if c.name != "seq"]
#: Pending writes (PendingWrites) go out in statements of up to this many rows, and as many events.
_BATCH = 8
_EVENT_INSERTS: dict[int, Any] = {}
_PG_FLUSHES: dict[tuple[tuple[tuple[str, tuple[str, ...], int], ...], int, int], Any] = {}
_INSERTS: dict[str, Any] = {}

#: Rows of one table with the same columns, written by one INSERT: (table, columns, how many).
Group = tuple[Table, tuple[str, ...], int]


def _insert_into(table: Table) -> Any:
    """``INSERT INTO table`` (its columns from the parameters), prepared."""
    stmt = _INSERTS.get(table.name)
    if stmt is None:
        stmt = _INSERTS[table.name] = prepared(insert(table))
    return stmt


def _events_values(n: int) -> Any:
    return insert(t.events).values(
        [{c.name: bindparam(f"{c.name}_{i}", type_=c.type) for c in _EVENT_COLUMNS} for i in range(n)]
    )


def _sqlite_events(n: int) -> Any:
    """``n`` events in one INSERT (bind names suffixed ``_0`` .. ``_{n-1}``) returning what their
    outbox rows need, prepared."""
    stmt = _EVENT_INSERTS.get(n)
    if stmt is None:
        stmt = _EVENT_INSERTS[n] = prepared(_events_values(n).returning(t.events.c.seq, t.events.c.occurred_at))
    return stmt


def _pg_flush(groups: Sequence[Group], events: int, adopts: int = 0) -> Any:
    """PostgreSQL: one prepared statement writing ``groups`` (bind names ``w{k}_{column}_{i}``),
    ``events`` events with their outbox rows (``{column}_{i}``) and ``adopts`` cart adoptions
    (``a{k}_cart_id``, ``a{k}_customer_id``: the cart's written guest events join the customer),
    each a CTE of it. A CTE does not see the others' rows: adoption reaches only events written
    by earlier statements (:meth:`PendingWrites.adopt` gives pending ones their customer)."""
    key = (tuple((table.name, columns, n) for table, columns, n in groups), events, adopts)
    stmt = _PG_FLUSHES.get(key)
    if stmt is None:
        inserts: list[Any] = [
            insert(table).values(
                [{c: bindparam(f"w{k}_{c}_{i}", type_=table.c[c].type) for c in columns} for i in range(n)]
            )
            for k, (table, columns, n) in enumerate(groups)
        ]
        inserts += [
            update(t.events)
            .where(t.events.c.cart_id == bindparam(f"a{k}_cart_id"), t.events.c.customer_id.is_(None))
            .values(customer_id=bindparam(f"a{k}_customer_id"))
            for k in range(adopts)
        ]
        if events:
            recorded = _events_values(events).returning(t.events.c.seq, t.events.c.occurred_at).cte("recorded")
            main: Any = (
                insert(t.outbox)
                .from_select(
                    ["event_seq", "status", "attempts", "available_at"],
                    select(recorded.c.seq, literal("pending"), literal(0), recorded.c.occurred_at),
                )
                .add_cte(recorded)
            )
        else:
            main, inserts = inserts[-1], inserts[:-1]
        # The order of the CTEs does not matter: a statement's foreign keys are checked at its end.
        if inserts:
            main = main.add_cte(*[ins.cte(f"w{k}") for k, ins in enumerate(inserts)])
        stmt = _PG_FLUSHES[key] = prepared(main)
    return stmt


#: What :class:`_AutoFlush` knows of a prepared statement: its kind ("select", "insert",
#: "update"), every table it names, and the table it writes (None: flush before it, always).
_Shape = tuple[str, frozenset[str], str | None]
_SHAPES: dict[int, _Shape | None] = {}
#: The tables each table's foreign keys point at.
_PARENTS: dict[str, frozenset[str]] = {
    table.name: frozenset(fk.column.table.name for fk in table.foreign_keys) for table in t.metadata.tables.values()
}


def _shape(statement: Any) -> _Shape | None:
    key = id(statement)
    if key in _SHAPES:
        return _SHAPES[key]
    if key not in PREPARED:  # built for this call: its id may be another statement's later
        return None
    tables = frozenset(e.name for e in visitors.iterate(statement) if isinstance(e, TableClause))
    shape: _Shape | None = None
    if isinstance(statement, Select) and statement._for_update_arg is None:
        shape = ("select", tables, None)
    elif isinstance(statement, Insert | Update) and isinstance(statement.table, Table):
        shape = ("insert" if isinstance(statement, Insert) else "update", tables, statement.table.name)
    _SHAPES[key] = shape
    return shape


def _independent(statement: Any, pending: set[str]) -> bool:
    """Whether ``statement`` may run before the pending writes to the tables ``pending``: it
    names none of them, and a row it inserts or updates cannot point at a pending row (a foreign
    key to one of them) nor be one a pending row points at (its key could change)."""
    shape = _shape(statement)
    if shape is None:
        return False
    kind, tables, target = shape
    if tables & pending:
        return False
    if target is None:  # a read
        return True
    if _PARENTS.get(target, frozenset()) & pending:
        return False
    return kind == "insert" or not any(target in _PARENTS.get(name, frozenset()) for name in pending)


def _groups(rows: Sequence[tuple[Table, dict[str, Any]]]) -> list[tuple[Group, list[dict[str, Any]]]]:
    """Consecutive rows of one table with the same columns, together."""
    out: list[tuple[Group, list[dict[str, Any]]]] = []
    for table, row in rows:
        columns = tuple(row)
        if out and out[-1][0][0] is table and out[-1][0][1] == columns:
            group, members = out[-1]
            members.append(row)
            out[-1] = ((table, columns, group[2] + 1), members)
        else:
            out.append(((table, columns, 1), [row]))
    return out


class PendingWrites:
    """Writes a transaction makes without reading back their outcome, kept and written together:
    its events (a checkout records three) and, on PostgreSQL, rows inserted with :meth:`insert`
    (a new cart, the lines added to a cart). Rows are written before the transaction's next
    statement, whatever it is (the repositories' connection is then an :class:`_AutoFlush`), so
    every statement sees them; events before the event log reads or changes events; and whatever
    is left when the transaction is about to commit. On PostgreSQL one statement writes them all,
    a round trip (and a write block that ran no other statement needs no BEGIN and COMMIT:
    creating a cart is one round trip, not four). On SQLite, where a statement costs
    microseconds and no round trip, rows are inserted at once and the events take two INSERTs."""

    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.rows: list[tuple[Table, dict[str, Any]]] = []
        self.events: list[Event] = []
        self.adopts: list[tuple[str, str]] = []  # (cart id, customer id), PostgreSQL
        # id(pending event) -> (the event, its customer), given by adopt until it is written (the
        # event is held, so its id is no other's meanwhile).
        self._adopted: dict[int, tuple[Event, str]] = {}

    @property
    def writes(self) -> bool:
        """Whether rows or adoptions are pending (events are written at the latest before the
        event log is read)."""
        return bool(self.rows or self.adopts)

    def tables(self) -> set[str]:
        """The tables pending rows and adoptions write."""
        names = {table.name for table, _row in self.rows}
        if self.adopts:
            names.add(t.events.name)
        return names

    async def insert(self, table: Table, row: dict[str, Any]) -> None:
        """Insert ``row`` into ``table``, now or with the pending writes: nothing may depend on
        its outcome (a failure to insert it fails the transaction, at the latest at commit)."""
        if self.postgres:
            self.rows.append((table, row))
        else:
            await self.conn.execute(_insert_into(table), row)

    async def insert_many(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`insert` for several rows (on SQLite, one statement)."""
        if self.postgres:
            self.rows.extend((table, row) for row in rows)
        elif rows:
            await self.conn.execute(_insert_into(table), list(rows) if len(rows) > 1 else rows[0])

    async def adopt(self, cart_id: str, customer_id: str) -> None:
        """The cart's guest events (written or pending) join ``customer_id``'s timeline."""
        pending = [e for e in self.events if e.customer_id is None and e.subject.get("cart_id") == cart_id]
        if not self.postgres:
            if pending:
                await self.flush()  # one of the cart's events is still to be written: it is adopted too
            await self.conn.execute(_ADOPT_CART, {"b_cart_id": cart_id, "b_customer_id": customer_id})
            return
        for event in pending:  # the column only, as the UPDATE sets it for written events
            self._adopted.setdefault(id(event), (event, customer_id))  # the first adoption holds
        if all(cart != cart_id for cart, _customer in self.adopts):  # an UPDATE per row and statement
            self.adopts.append((cart_id, customer_id))

    async def flush(self, *, last: bool = False) -> None:
        """Write what is pending, in the order it was added (``last``: the block runs nothing
        after this)."""
        while self.rows or self.events or self.adopts:
            rows, self.rows = self.rows[:_BATCH], self.rows[_BATCH:]
            events, self.events = self.events[:_BATCH], self.events[_BATCH:]
            if self.postgres:
                adopts, self.adopts = self.adopts, []
                groups = _groups(rows)
                params: dict[str, Any] = self._event_params(events)
                for k, ((_table, columns, _n), members) in enumerate(groups):
                    for i, row in enumerate(members):
                        for c in columns:
                            params[f"w{k}_{c}_{i}"] = row[c]
                for k, (cart_id, customer_id) in enumerate(adopts):
                    params[f"a{k}_cart_id"] = cart_id
                    params[f"a{k}_customer_id"] = customer_id
                stmt = _pg_flush([g for g, _ in groups], len(events), len(adopts))
                alone = last and not self.rows and not self.events
                await (self.conn.execute_last if alone else self.conn.execute)(stmt, params)
            else:
                result = await self.conn.execute(_sqlite_events(len(events)), self._event_params(events))
                outbox = [
                    {"event_seq": seq, "status": "pending", "attempts": 0, "available_at": occurred_at}
                    for seq, occurred_at in result
                ]
                await self.conn.execute(_INSERT_OUTBOX, outbox if len(outbox) > 1 else outbox[0])

    def _event_params(self, events: Sequence[Event]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        adopted = self._adopted
        for i, event in enumerate(events):
            subject = event.subject
            params[f"id_{i}"] = event.id
            params[f"type_{i}"] = event.type
            params[f"occurred_at_{i}"] = event.occurred_at
            params[f"channel_{i}"] = event.channel
            params[f"actor_{i}"] = event.actor
            customer_id = event.customer_id
            if adopted and (entry := adopted.pop(id(event), None)) is not None:
                customer_id = entry[1]
            params[f"customer_id_{i}"] = customer_id
            params[f"order_id_{i}"] = subject.get("order_id")
            params[f"cart_id_{i}"] = subject.get("cart_id")
            params[f"payload_{i}"] = encode_event(event)
        return params


class PendingWriteFailed(RuntimeError):
    """A pending write failed when it was written, before another statement of its transaction:
    raised as this, not as the ``IntegrityError`` it is, so that the statement's caller does not
    take it for its own (``except IntegrityError`` around an insert that may meet a duplicate)."""


class _AutoFlush:
    """A transaction's connection as its repositories see it: pending rows are written before
    any statement runs. Otherwise the connection itself."""

    __slots__ = ("_conn", "_pending")

    def __init__(self, conn: DbConnection, pending: PendingWrites) -> None:
        self._conn = conn
        self._pending = pending

    @property
    def dialect(self) -> Any:
        return self._conn.dialect

    async def _flush(self) -> None:
        try:
            await self._pending.flush()
        except IntegrityError as exc:
            raise PendingWriteFailed(f"a pending write failed: {exc.orig}") from exc

    async def execute(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        pending = self._pending
        if pending.writes and not _independent(statement, pending.tables()):
            await self._flush()
        return await self._conn.execute(statement, parameters, **kwargs)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalar()

    async def scalars(self, statement: Any, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalars()

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> Any:
        if self._pending.writes:
            await self._flush()
        return await self._conn.exec_driver_sql(statement, parameters)

    async def run_sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._pending.writes:
            await self._flush()
        return await self._conn.run_sync(fn, *args, **kwargs)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[Any]:
        if self._pending.writes:
            await self._flush()
        async with self._conn.begin_nested() as savepoint:
            yield savepoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class SqlCarts:
    def __init__(self, conn: DbConnection, pending: PendingWrites) -> None:
        self.conn = conn
        self._pending = pending  # new carts and added lines are written with the transaction's events

    async def get(self, cart_id: str) -> Cart | None:
        rows = (await self.conn.execute(_SELECT_CART, {"cart_id": cart_id})).all()
        if not rows:
            return None
        row = rows[0]
        return Cart(
            id=row.id,
            currency=row.currency,
            channel=row.channel,
            channels=tuple(_str_list.decode(row.channels)),
            customer_id=row.customer_id,
            status=CartStatus(row.status),
            lines=tuple(CartLine(sku=x.line_sku, quantity=x.line_quantity) for x in rows if x.line_sku is not None),
            coupon=row.coupon,
            attribution=_str_dict.decode(row.attribution),
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
        )

    def _row(self, cart: Cart) -> dict[str, Any]:
        return {
            "currency": cart.currency,
            "channel": cart.channel,
            "channels": _json.encode(list(cart.channels)).decode(),
            "customer_id": cart.customer_id,
            "status": cart.status.value,
            "coupon": cart.coupon,
            "attribution": _json.encode(cart.attribution).decode(),
            "created_at": cart.created_at,
            "updated_at": cart.updated_at,
            "version": cart.version,
        }

    async def _write_lines(self, cart: Cart, previous: Sequence[CartLine] | None) -> None:
        """Write the cart's lines; ``previous`` are those stored now (None: unknown, rewrite all)."""
        start = 0
        if previous is not None and len(cart.lines) >= len(previous) and cart.lines[: len(previous)] == tuple(previous):
            start = len(previous)  # lines only added at the end (the usual "add to cart"): insert those
        else:
            await self.conn.execute(_DELETE_CART_LINES, {"cart_id": cart.id})
        for i, line in enumerate(cart.lines):
            if i >= start:
                row = {"cart_id": cart.id, "position": i, "sku": line.sku, "quantity": line.quantity}
                await self._pending.insert(t.cart_lines, row)

    async def insert(self, cart: Cart) -> None:
        await self._pending.insert(t.carts, {"id": cart.id, **self._row(cart)})
        await self._write_lines(cart, ())

    async def update(
        self, cart: Cart, expected_version: int, *, lines: bool = True, previous: Sequence[CartLine] | None = None
    ) -> bool:
        values = {f"new_{k}": v for k, v in self._row(cart).items()}
        result = await self.conn.execute(
            _UPDATE_CART, {"cart_id": cart.id, "expected_version": expected_version, **values}
        )
        if result.rowcount != 1:
            return False
        if lines:
            await self._write_lines(cart, previous)
        return True

    async def open_for_customer(self, customer_id: str) -> Cart | None:
        cart_id = await self.conn.scalar(
            select(t.carts.c.id)
            .where(t.carts.c.customer_id == customer_id, t.carts.c.status == CartStatus.OPEN.value)
            .order_by(t.carts.c.updated_at.desc())
            .limit(1)
        )
        return await self.get(cart_id) if cart_id else None

    async def create_handoff(self, code: str, cart_id: str, channel: str, now: datetime, expires_at: datetime) -> bool:
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(
                    insert(t.cart_handoffs).values(
                        code=code, cart_id=cart_id, channel=channel, created_at=now, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        return True

    async def claim_handoff(self, code: str, channel: str, now: datetime) -> str | None:
        h = t.cart_handoffs
        result = await self.conn.execute(
            update(h)
            .where(h.c.code == code, h.c.claimed_at.is_(None), h.c.expires_at > now)
            .values(claimed_at=now, claimed_channel=channel)
            .returning(h.c.cart_id)
        )
        cart_id: str | None = result.scalar()
        return cart_id

    async def handoff(self, code: str) -> tuple[str, str, datetime, datetime | None] | None:
        h = t.cart_handoffs
        row = (
            await self.conn.execute(
                select(h.c.cart_id, h.c.channel, h.c.expires_at, h.c.claimed_at).where(h.c.code == code)
            )
        ).first()
        return (row[0], row[1], row[2], row[3]) if row else None


class SqlOrders:
    def __init__(self, conn: DbConnection, pending: PendingWrites) -> None:
        self.conn = conn
        self._pending = pending  # order lines are written with the transaction's events

    async def _load(self, rows: Sequence[Any]) -> list[Order]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        lines: dict[str, list[OrderLine]] = {i: [] for i in ids}
        ol = t.order_lines
        for x in await self.conn.execute(
            select(ol).where(ol.c.order_id.in_(ids)).order_by(ol.c.order_id, ol.c.line_no)
        ):
            lines[x.order_id].append(
                OrderLine(
                    line_no=x.line_no,
                    sku=x.sku,
                    title=x.title,
                    quantity=x.quantity,
                    unit_price=x.unit_price,
                    total=x.total,
                    location_id=x.location_id,
                    quantity_returned=x.quantity_returned,
                    quantity_refunded=x.quantity_refunded,
                )
            )
        payments = await load_payments(self.conn, ids)
        return [
            Order(
                id=r.id,
                number=r.number,
                channel=r.channel,
                external_ref=r.external_ref,
                customer_id=r.customer_id,
                status=OrderStatus(r.status),
                fulfilment=Fulfilment(r.fulfilment),
                pickup_location_id=r.pickup_location_id,
                ready_by=r.ready_by,
                currency=r.currency,
                subtotal=r.subtotal,
                discount=r.discount,
                total=r.total,
                lines=tuple(lines[r.id]),
                email=r.email,
                phone=r.phone,
                cart_id=r.cart_id,
                attribution=_str_dict.decode(r.attribution),
                created_at=r.created_at,
                updated_at=r.updated_at,
                payments=tuple(payments.get(r.id, ())),
            )
            for r in rows
        ]

    async def _one(self, *cond: Any) -> Order | None:
        rows = (await self.conn.execute(select(t.orders).where(*cond))).all()
        found = await self._load(rows)
        return found[0] if found else None

    async def get(self, order_id: str) -> Order | None:
        return await self._one(t.orders.c.id == order_id)

    async def get_by_number(self, number: str) -> Order | None:
        return await self._one(t.orders.c.number == number)

    async def get_by_cart(self, cart_id: str) -> Order | None:
        return await self._one(t.orders.c.cart_id == cart_id)

    async def get_by_external_ref(self, channel: str, external_ref: str) -> Order | None:
        return await self._one(t.orders.c.channel == channel, t.orders.c.external_ref == external_ref)

    async def insert(self, order: Order) -> bool:
        result = await self.conn.execute(
            insert_or_ignore(self.conn, t.orders),
            {
                "id": order.id,
                "number": order.number,
                "channel": order.channel,
                "external_ref": order.external_ref,
                "customer_id": order.customer_id,
                "status": order.status.value,
                "fulfilment": order.fulfilment.value,
                "pickup_location_id": order.pickup_location_id,
                "ready_by": order.ready_by,
                "currency": order.currency,
                "subtotal": order.subtotal,
                "discount": order.discount,
                "total": order.total,
                "email": order.email,
                "phone": order.phone,
                "cart_id": order.cart_id,
                "attribution": _json.encode(order.attribution).decode(),
                "created_at": order.created_at,
                "updated_at": order.updated_at,
            },
        )
        if result.rowcount != 1:  # this cart or external reference has its order already
            return False
        await self._pending.insert_many(
            t.order_lines,
            [
                {
                    "order_id": order.id,
                    "line_no": x.line_no,
                    "sku": x.sku,
                    "title": x.title,
                    "quantity": x.quantity,
                    "unit_price": x.unit_price,
                    "total": x.total,
                    "location_id": x.location_id,
                    "quantity_returned": x.quantity_returned,
                    "quantity_refunded": x.quantity_refunded,
                }
                for x in order.lines
            ],
        )
        return True

    async def set_status(self, order_id: str, expected: OrderStatus, new: OrderStatus, now: datetime) -> bool:
        result = await self.conn.execute(
            update(t.orders)
            .where(t.orders.c.id == order_id, t.orders.c.status == expected.value)
            .values(status=new.value, updated_at=now)
        )
        return result.rowcount == 1

    async def add_returned(self, order_id: str, line_no: int, quantity: int) -> bool:
        ol = t.order_lines
        result = await self.conn.execute(
            update(ol)
            .where(
                ol.c.order_id == order_id,
                ol.c.line_no == line_no,
                ol.c.quantity_returned + quantity <= ol.c.quantity,
            )
            .values(quantity_returned=ol.c.quantity_returned + quantity)
        )
        return result.rowcount == 1

    async def add_refunded(self, order_id: str, line_no: int, quantity: int) -> bool:
        ol = t.order_lines
        result = await self.conn.execute(
            update(ol)
            .where(
                ol.c.order_id == order_id,
                ol.c.line_no == line_no,
                ol.c.quantity_refunded + quantity <= ol.c.quantity,
            )
            .values(quantity_refunded=ol.c.quantity_refunded + quantity)
        )
        return result.rowcount == 1

    async def for_customer(self, customer_id: str, *, after: str | None, limit: int) -> list[Order]:
        stmt = select(t.orders).where(t.orders.c.customer_id == customer_id)
        if after:
            stmt = stmt.where(t.orders.c.id < after)
        rows = (await self.conn.execute(stmt.order_by(t.orders.c.id.desc()).limit(limit))).all()
        return await self._load(rows)

    async def page(
        self, *, after: str | None, limit: int, channel: str | None = None, status: str | None = None
    ) -> list[Order]:
        stmt = select(t.orders)
        if after:
            stmt = stmt.where(t.orders.c.id < after)
        if channel:
            stmt = stmt.where(t.orders.c.channel == channel)
        if status:
            stmt = stmt.where(t.orders.c.status == status)
        rows = (await self.conn.execute(stmt.order_by(t.orders.c.id.desc()).limit(limit))).all()
        return await self._load(rows)


class SqlCustomers:
    def __init__(self, conn: DbConnection, pending: PendingWrites | None = None) -> None:
        self.conn = conn
        self._pending = pending  # pending events are written before a merge moves events

    async def get(self, customer_id: str) -> Customer | None:
        row = (await self.conn.execute(_SELECT_CUSTOMER, {"customer_id": customer_id})).first()
        if row is None:
            return None
        ids = await self.conn.execute(_SELECT_IDENTITIES, {"customer_id": customer_id})
        return Customer(
            id=row.id,
            name=row.name,
            tier=row.tier,
            created_at=row.created_at,
            merged_into=row.merged_into,
            identities=tuple(Identity(kind=IdentityKind(k), value=v, namespace=n) for k, v, n in ids),
        )

    async def standing(self, customer_id: str) -> tuple[str | None, str | None] | None:
        row = (await self.conn.execute(_CUSTOMER_STANDING, {"customer_id": customer_id})).first()
        return (row[0], row[1]) if row is not None else None

    async def insert(self, customer: Customer) -> None:
        await self.conn.execute(
            _INSERT_CUSTOMER,
            {"id": customer.id, "name": customer.name, "tier": customer.tier, "created_at": customer.created_at},
        )

    async def find(self, identity: Identity) -> str | None:
        return await self.conn.scalar(
            _FIND_IDENTITY, {"kind": identity.kind.value, "namespace": identity.namespace, "value": identity.value}
        )

    async def link(self, identity: Identity, customer_id: str, channel: str, now: datetime) -> bool:
        result = await self.conn.execute(
            insert_or_ignore(self.conn, t.identities),
            {
                "kind": identity.kind.value,
                "namespace": identity.namespace,
                "value": identity.value,
                "customer_id": customer_id,
                "linked_at": now,
                "channel": channel,
            },
        )
        if result.rowcount == 1:
            return True
        return await self.find(identity) == customer_id  # already linked: to this customer?

    async def _merge_wallet(self, source_id: str, target_id: str) -> None:
        """Fold the source's stored value, points and spend into the target's wallet, with a
        ledger entry on each side (the balance stays conserved and never negative)."""
        wallets = SqlWallets(self.conn)
        source = await wallets.get(source_id)
        if source is None or not (source.balance or source.points or source.lifetime_spend):
            return
        now = _now()
        out = await wallets.change(
            source_id, amount=-source.balance, points=-source.points, spend=-source.lifetime_spend, now=now
        )
        await wallets.ensure(target_id, source.currency, now)
        into = await wallets.change(
            target_id, amount=source.balance, points=source.points, spend=source.lifetime_spend, now=now
        )
        assert out is not None and into is not None
        for customer_id, sign, after, other in ((source_id, -1, out, target_id), (target_id, 1, into, source_id)):
            await wallets.append(
                LedgerEntry(
                    seq=0,
                    customer_id=customer_id,
                    kind=LedgerKind.ADJUSTMENT,
                    amount=sign * source.balance,
                    points=sign * source.points,
                    balance_after=after[0],
                    points_after=after[1],
                    reference=f"merge:{source_id}:{'out' if sign < 0 else 'in'}",
                    channel="admin",
                    actor="system",
                    note=f"customer records merged ({'into' if sign < 0 else 'from'} {other})",
                    created_at=now,
                )
            )

    async def set_tier(self, customer_id: str, tier: str | None) -> None:
        await self.conn.execute(update(t.customers).where(t.customers.c.id == customer_id).values(tier=tier))

    async def set_name(self, customer_id: str, name: str) -> None:
        await self.conn.execute(update(t.customers).where(t.customers.c.id == customer_id).values(name=name))

    async def password_hash(self, customer_id: str) -> str | None:
        return await self.conn.scalar(select(t.customers.c.password_hash).where(t.customers.c.id == customer_id))

    async def set_password_hash(self, customer_id: str, password_hash: str) -> None:
        await self.conn.execute(
            update(t.customers).where(t.customers.c.id == customer_id).values(password_hash=password_hash)
        )

    async def merge(self, source_id: str, target_id: str) -> tuple[int, int, int]:
        if self._pending is not None:
            await self._pending.flush()
        moved = []
        for table in (t.orders, t.carts, t.identities):
            result = await self.conn.execute(
                update(table).where(table.c.customer_id == source_id).values(customer_id=target_id)
            )
            moved.append(result.rowcount)
        for table in (t.events, t.customer_sessions, t.payments, t.checkout_attempts):
            await self.conn.execute(update(table).where(table.c.customer_id == source_id).values(customer_id=target_id))
        await self._merge_wallet(source_id, target_id)
        await self.conn.execute(
            update(t.customers).where(t.customers.c.id == source_id).values(merged_into=target_id, password_hash=None)
        )
        # Anything merged into the source earlier now points at the survivor too.
        await self.conn.execute(
            update(t.customers).where(t.customers.c.merged_into == source_id).values(merged_into=target_id)
        )
        return moved[0], moved[1], moved[2]


class SqlEventLog:
    """The transaction's events go to its :class:`PendingWrites`, written together (a checkout
    records three: one by one they would cost three INSERTs on PostgreSQL, a round trip each,
    and six on SQLite)."""

    def __init__(self, conn: DbConnection, pending: PendingWrites) -> None:
        self.conn = conn
        self._pending = pending

    async def record(self, event: Event) -> None:
        self._pending.events.append(event)

    async def flush(self) -> None:
        await self._pending.flush()

    async def _list(self, *cond: Any, after: int | None = None, limit: int = 1000) -> list[tuple[int, Event]]:
        await self.flush()
        stmt = select(t.events.c.seq, t.events.c.type, t.events.c.payload).where(*cond)
        if after is not None:
            stmt = stmt.where(t.events.c.seq > after)
        rows = await self.conn.execute(stmt.order_by(t.events.c.seq).limit(limit))
        return [(seq, decode_event(payload, typ)) for seq, typ, payload in rows]

    async def for_customer(
        self,
        customer_id: str,
        *,
        after: int | None = None,
        limit: int = 50,
        types: Sequence[str] = (),
        channels: Sequence[str] = (),
    ) -> list[tuple[int, Event]]:
        cond: list[Any] = [t.events.c.customer_id == customer_id]
        if types:
            cond.append(or_(*[t.events.c.type == x if "." in x else t.events.c.type.like(f"{x}.%") for x in types]))
        if channels:
            cond.append(t.events.c.channel.in_(list(channels)))
        return await self._list(and_(*cond), after=after, limit=limit)

    async def for_order(self, order_id: str) -> list[tuple[int, Event]]:
        return await self._list(t.events.c.order_id == order_id)

    async def for_cart(self, cart_id: str) -> list[tuple[int, Event]]:
        return await self._list(t.events.c.cart_id == cart_id)

    async def adopt_cart(self, cart_id: str, customer_id: str) -> None:
        await self._pending.adopt(cart_id, customer_id)


class SqlTransaction:
    def __init__(self, conn: DbConnection, *, writes: bool = True) -> None:
        self.pending = PendingWrites(conn)
        if writes and self.pending.postgres:  # rows may be pending: written before any statement
            conn = cast(DbConnection, _AutoFlush(conn, self.pending))
        self.conn = conn
        self.products = SqlProducts(conn)
        self.stock = SqlStock(conn)
        self.carts = SqlCarts(conn, self.pending)
        self.orders = SqlOrders(conn, self.pending)
        self.events = SqlEventLog(conn, self.pending)
        self.customers = SqlCustomers(conn, self.pending)
        self.payments = SqlPayments(conn)
        self.attempts = SqlCheckoutAttempts(conn)
        self.wallets = SqlWallets(conn)


class SqlUnitOfWork:
    """``UnitOfWork`` over a ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlTransaction]:
        async with self.db.write() as conn:
            tx = SqlTransaction(conn)
            yield tx
            await tx.pending.flush(last=True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlTransaction]:
        async with self.db.read() as conn:
            yield SqlTransaction(conn, writes=False)
