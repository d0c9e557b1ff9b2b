"""Customers: one record across channels, identities, sign-up/sign-in, merge, timeline."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from omniretail.domain.customer import Customer, Identity, IdentityKind
from omniretail.domain.errors import Conflict, IdentityConflict, InvalidValue, NotFound
from omniretail.domain.events import (
    CustomerCreated,
    CustomersMerged,
    Event,
    IdentityLinked,
)
from omniretail.domain.ids import new_id
from omniretail.services.clock import Clock
from omniretail.services.protocols import Transaction, UnitOfWork

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the customer has no password, so both answers take as long. Made
    at the first sign-in, not at import (hashing takes 64 MiB and ~0.1 s of CPU)."""
    return _hasher.hash("omniretail-timing-equaliser")


class AuthenticationFailed(Conflict):
    code = "authentication-failed"


class CustomerService:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    async def get(self, customer_id: str) -> Customer:
        """The customer; a merged id resolves to the surviving record."""
        async with self.uow.read() as tx:
            customer = await tx.customers.get(customer_id)
            if customer is not None and customer.merged_into:
                customer = await tx.customers.get(customer.merged_into)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}", field="customer_id")
        return customer

    async def find(self, identity: Identity) -> Customer | None:
        async with self.uow.read() as tx:
            customer_id = await tx.customers.find(identity.normalized())
        return await self.get(customer_id) if customer_id else None

    async def resolve(
        self, identities: Sequence[Identity], *, channel: str, name: str = "", actor: str = "system"
    ) -> Customer:
        """The one customer these identities belong to, created if none matches.

        The same e-mail, phone or loyalty card arriving from any channel resolves to the same
        record; identities not yet linked are linked to it. An identity already owned by another
        customer is left where it is (two records for one person are joined by ``merge``).
        """
        normalized = [i.normalized() for i in identities]
        if not normalized:
            raise InvalidValue("at least one identity is needed", field="identities")
        async with self.uow.write() as tx:
            customer_id = await self.resolve_in(tx, normalized, channel=channel, name=name, actor=actor)
        return await self.get(customer_id)

    async def resolve_in(
        self, tx: Transaction, identities: Sequence[Identity], *, channel: str, name: str, actor: str
    ) -> str:
        """The customer these identities belong to, created (and linked) if none; its id."""
        owner, _ = await self.resolve_or_create_in(tx, identities, channel=channel, name=name, actor=actor)
        return owner

    async def resolve_or_create_in(
        self, tx: Transaction, identities: Sequence[Identity], *, channel: str, name: str, actor: str
    ) -> tuple[str, Customer | None]:
        """Like :meth:`resolve_in`, also giving the record when it was created here (so the
        caller need not read back what it just wrote); None for an existing customer."""
        now = self.clock()
        created: Customer | None = None
        linked: list[Identity] = []
        owner: str | None = None
        absent: set[Identity] = set()  # looked up in this transaction and linked to nobody
        for identity in identities:
            owner = await tx.customers.find(identity)
            if owner:
                break
            absent.add(identity)
        if owner is None:
            owner = new_id("cus")
            created = Customer(id=owner, name=name, created_at=now)
            await tx.customers.insert(created)
            await tx.events.record(
                CustomerCreated(id=new_id("evt"), occurred_at=now, channel=channel, actor=actor, customer_id=owner)
            )
        else:
            current = await tx.customers.get(owner)
            if current is not None and current.merged_into:
                owner = current.merged_into
            if name and current is not None and not current.name:
                await tx.customers.set_name(owner, name)
        for identity in identities:
            if identity not in absent and await tx.customers.find(identity) is not None:
                continue
            if await tx.customers.link(identity, owner, channel, now):
                linked.append(identity)
                await tx.events.record(
                    IdentityLinked(
                        id=new_id("evt"),
                        occurred_at=now,
                        channel=channel,
                        actor=actor,
                        customer_id=owner,
                        kind=identity.kind.value,
                        value=identity.value,
                    )
                )
        if created is not None:
            created = msgspec.structs.replace(created, identities=tuple(linked))
        return owner, created

    async def link(self, customer_id: str, identity: Identity, *, channel: str, actor: str = "customer") -> Customer:
        """Link an identity (a loyalty card, a voice account) to a known customer."""
        identity = identity.normalized()
        customer = await self.get(customer_id)
        async with self.uow.write() as tx:
            owner = await tx.customers.find(identity)
            if owner is not None and owner != customer.id:
                raise IdentityConflict(
                    f"this {identity.kind.value} belongs to another customer; merge the records instead",
                    field=identity.kind.value,
                )
            if owner is None:
                await tx.customers.link(identity, customer.id, channel, self.clock())
                await tx.events.record(
                    IdentityLinked(
                        id=new_id("evt"),
                        occurred_at=self.clock(),
                        channel=channel,
                        actor=actor,
                        customer_id=customer.id,
                        kind=identity.kind.value,
                        value=identity.value,
                    )
                )
        return await self.get(customer.id)

    async def set_tier(self, customer_id: str, tier: str | None) -> Customer:
        customer = await self.get(customer_id)
        async with self.uow.write() as tx:
            await tx.customers.set_tier(customer.id, tier)
        return await self.get(customer.id)

    async def sign_up(self, email: str, password: str, *, name: str = "", channel: str) -> Customer:
        if len(password) < 8:
            raise InvalidValue("password must have at least 8 characters", field="password")
        identity = Identity(kind=IdentityKind.EMAIL, value=email).normalized()
        async with self.uow.write() as tx:
            owner = await tx.customers.find(identity)
            if owner is not None and await tx.customers.password_hash(owner):
                raise Conflict("an account with this e-mail exists; sign in instead", field="email")
            customer_id = await self.resolve_in(tx, [identity], channel=channel, name=name, actor="customer")
            await tx.customers.set_password_hash(customer_id, _hasher.hash(password))
        return await self.get(customer_id)

    async def authenticate(self, email: str, password: str) -> Customer:
        try:
            identity = Identity(kind=IdentityKind.EMAIL, value=email).normalized()
        except InvalidValue:
            identity = None
        stored: str | None = None
        customer_id: str | None = None
        if identity is not None:
            async with self.uow.read() as tx:
                customer_id = await tx.customers.find(identity)
                if customer_id:
                    stored = await tx.customers.password_hash(customer_id)
        try:
            _hasher.verify(stored or _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            raise AuthenticationFailed("e-mail or password is wrong") from None
        if stored is None or customer_id is None:
            raise AuthenticationFailed("e-mail or password is wrong")
        return await self.get(customer_id)

    async def merge(self, source_id: str, target_id: str, *, actor: str = "admin", channel: str = "admin") -> Customer:
        """Fold ``source`` into ``target``: orders, carts, identities and timeline move; the
        merge itself is an event on the survivor's timeline."""
        if source_id == target_id:
            raise InvalidValue("cannot merge a customer into itself", field="source_id")
        source = await self.get(source_id)
        target = await self.get(target_id)
        if source.id == target.id:
            raise InvalidValue("these records are already one customer", field="source_id")
        async with self.uow.write() as tx:
            orders, carts, identities = await tx.customers.merge(source.id, target.id)
            if target.tier is None and source.tier is not None:
                await tx.customers.set_tier(target.id, source.tier)
            await tx.events.record(
                CustomersMerged(
                    id=new_id("evt"),
                    occurred_at=self.clock(),
                    channel=channel,
                    actor=actor,
                    customer_id=target.id,
                    merged_customer_id=source.id,
                    orders_moved=orders,
                    carts_moved=carts,
                    identities_moved=identities,
                )
            )
        return await self.get(target.id)

    async def timeline(
        self,
        customer_id: str,
        *,
        after: int | None = None,
        limit: int = 50,
        types: Sequence[str] = (),
        channels: Sequence[str] = (),
    ) -> list[tuple[int, Event]]:
        customer = await self.get(customer_id)
        async with self.uow.read() as tx:
            return await tx.events.for_customer(customer.id, after=after, limit=limit, types=types, channels=channels)
