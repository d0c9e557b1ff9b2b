"""API keys and customer sessions, stored hashed.

A key is ``omr_`` + 43 url-safe characters (256 random bits). Only its SHA-256 is stored: with
that much entropy a slow hash adds nothing but latency to every request. Passwords, which people
choose, are hashed with argon2 (``omniretail.services.customers``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import insert, select, update

from omniretail.domain.ids import new_id
from omniretail.storage import tables as t
from omniretail.storage.database import Database

SCOPES = frozenset({"storefront", "admin"})
KEY_PREFIX = "omr_"
SESSION_PREFIX = "oms_"
#: Seconds a looked-up key or session is cached in this process (a revocation takes this long).
CACHE_SECONDS = 5.0


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the API key (bound to one channel and scopes) and, optionally, the
    signed-in customer."""

    key_id: str
    channel: str
    scopes: frozenset[str]
    customer_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def owner(self) -> str:
        """Idempotency keys are kept per key owner."""
        return f"{self.key_id}:{self.customer_id or ''}"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    prefix: str
    channel: str
    scopes: tuple[str, ...]
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._keys: dict[str, tuple[float, Principal | None]] = {}
        self._sessions: dict[str, tuple[float, str | None]] = {}

    async def create(
        self, channel: str, scopes: tuple[str, ...], *, name: str = "", now: datetime
    ) -> tuple[ApiKey, str]:
        """A new key; the secret is returned once and never stored."""
        bad = set(scopes) - SCOPES
        if bad or not scopes:
            raise ValueError(f"unknown scope(s) {sorted(bad)}; use {sorted(SCOPES)}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id("key"),
            prefix=secret[:12],
            channel=channel,
            scopes=tuple(sorted(scopes)),
            name=name,
            created_at=now,
        )
        async with self.db.write() as conn:
            await conn.execute(
                insert(t.api_keys).values(
                    id=key.id,
                    key_hash=digest(secret),
                    prefix=key.prefix,
                    channel=channel,
                    scopes=" ".join(key.scopes),
                    name=name,
                    created_at=now,
                )
            )
        return key, secret

    async def list(self) -> list[ApiKey]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_at))
            return [
                ApiKey(
                    id=r.id,
                    prefix=r.prefix,
                    channel=r.channel,
                    scopes=tuple(r.scopes.split()),
                    name=r.name,
                    created_at=r.created_at,
                    revoked_at=r.revoked_at,
                )
                for r in rows
            ]

    async def revoke(self, key_id: str, now: datetime) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                update(t.api_keys)
                .where(t.api_keys.c.id == key_id, t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        self._keys.clear()
        return result.rowcount == 1

    async def principal(self, secret: str) -> Principal | None:
        if not secret.startswith(KEY_PREFIX) or len(secret) > 100:
            return None
        hashed = digest(secret)
        hit = self._keys.get(hashed)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(t.api_keys.c.id, t.api_keys.c.channel, t.api_keys.c.scopes).where(
                        t.api_keys.c.key_hash == hashed, t.api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        found = Principal(key_id=row.id, channel=row.channel, scopes=frozenset(row.scopes.split())) if row else None
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[hashed] = (time.monotonic(), found)
        return found

    # -- customer sessions ---------------------------------------------------------------------

    async def open_session(self, customer_id: str, channel: str, *, now: datetime, hours: int) -> str:
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            await conn.execute(
                insert(t.customer_sessions).values(
                    token_hash=digest(token),
                    customer_id=customer_id,
                    channel=channel,
                    created_at=now,
                    expires_at=now + timedelta(hours=hours),
                )
            )
        return token

    async def session_customer(self, token: str, now: datetime) -> str | None:
        if not token.startswith(SESSION_PREFIX) or len(token) > 100:
            return None
        hashed = digest(token)
        hit = self._sessions.get(hashed)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self.db.read() as conn:
            customer_id = await conn.scalar(
                select(t.customer_sessions.c.customer_id).where(
                    t.customer_sessions.c.token_hash == hashed, t.customer_sessions.c.expires_at > now
                )
            )
        if len(self._sessions) > 10_000:
            self._sessions.clear()
        self._sessions[hashed] = (time.monotonic(), customer_id)
        return customer_id

    async def close_session(self, token: str) -> None:
        from sqlalchemy import delete

        async with self.db.write() as conn:
            await conn.execute(delete(t.customer_sessions).where(t.customer_sessions.c.token_hash == digest(token)))
        self._sessions.pop(digest(token), None)
