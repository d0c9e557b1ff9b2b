"""Outbound webhooks: committed events POSTed to subscribed URLs, signed with Standard Webhooks v1.

Two steps, both at least once:

* **Fan-out.** When the outbox worker handles an event (:class:`omniretail.worker.OutboxWorker`)
  it writes one ``webhook_deliveries`` row per active subscription whose ``event_types`` match:
  an exact type (``order.placed``), a prefix (``order`` or ``order.*`` match every ``order.``
  type) or ``*``. The row is unique per (subscription, event), so a retried outbox row does not
  fan out twice.
* **Delivery.** :class:`WebhookDeliverer` claims due rows (a lease on ``locked_until``; on
  PostgreSQL ``FOR UPDATE SKIP LOCKED`` so several deliverers take disjoint rows, on SQLite
  ``BEGIN IMMEDIATE`` serialises them) and POSTs the Standard Webhooks envelope
  ``{"type", "timestamp", "data"}`` with ``webhook-id`` (the event id, the same on every retry and
  for every subscription, so a receiver deduplicates on it), ``webhook-timestamp`` and
  ``webhook-signature``. A 2xx is delivered; ``410 Gone`` disables the subscription; anything else
  (other statuses, timeouts, connection errors) is retried with exponential backoff and full
  jitter, or after ``Retry-After`` when the receiver sends one, until ``worker.max_attempts`` or
  ``worker.retry_horizon_hours`` after the event, then the row is ``failed``.

Scheduling uses the kernel clock. The signature timestamp is wall-clock time: receivers compare
it with their own clock (the reference library allows five minutes either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import os
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import and_, or_, select, update
from standardwebhooks import Webhook

from omniretail import __version__
from omniretail.domain.events import Event
from omniretail.domain.ids import new_id
from omniretail.kernel import Kernel
from omniretail.services.clock import Clock, system_clock
from omniretail.storage import tables as t
from omniretail.storage.database import Database, dialect_insert, prepared
from omniretail.worker import backoff_delay

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("omniretail.webhooks")

#: Longest ``last_error`` kept, and how much of a failing receiver's body goes into it.
_ERROR_CHARS = 2000
_BODY_SNIPPET = 300
#: Read once per outbox batch: prepared (on PostgreSQL one round trip, outside a transaction).
_ACTIVE_SUBSCRIPTIONS = prepared(
    select(t.webhook_subscriptions.c.id, t.webhook_subscriptions.c.event_types).where(
        t.webhook_subscriptions.c.active.is_(True)
    )
)


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription's ``event_types`` select ``event_type``.

    ``*`` selects everything; ``order.placed`` only that type; ``order`` (or ``order.*``) every
    type under ``order.``.
    """
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        prefix = pattern[:-2] if pattern.endswith(".*") else pattern
        if prefix and event_type.startswith(prefix + "."):
            return True
    return False


class _Envelope(msgspec.Struct, frozen=True):
    """Standard Webhooks' recommended payload shape; ``data`` is the stored event, verbatim."""

    type: str
    timestamp: datetime
    data: msgspec.Raw


_encode = msgspec.json.Encoder().encode


def envelope(event_type: str, occurred_at: datetime, payload: bytes) -> bytes:
    """The request body for one event (identical on every attempt, so the signature input is too)."""
    return _encode(_Envelope(type=event_type, timestamp=occurred_at, data=msgspec.Raw(payload)))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Claimed:
    """One leased delivery with what is needed to send it."""

    id: str
    subscription_id: str
    event_seq: int
    attempts: int
    #: The lease this claimer holds: results are written only while it is still ours.
    lease: datetime
    url: str | None
    secret: str | None
    active: bool
    event_id: str
    event_type: str
    occurred_at: datetime
    payload: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


class WebhookStore:
    """``webhook_deliveries`` rows: written by the fan-out, leased and settled by deliverers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def active_subscriptions(self) -> list[tuple[str, list[str]]]:
        """(id, event type patterns) of every active subscription."""
        async with self.db.read() as conn:
            rows = (await conn.execute(_ACTIVE_SUBSCRIPTIONS)).all()
        return [(sub_id, types.split()) for sub_id, types in rows]

    async def fan_out(
        self, event: Event, now: datetime, subscriptions: list[tuple[str, list[str]]] | None = None
    ) -> int:
        """One pending delivery per matching active subscription; returns how many rows are new.
        ``subscriptions`` (from :meth:`active_subscriptions`) saves the read when a caller fans
        out a batch of events."""
        subs = subscriptions if subscriptions is not None else await self.active_subscriptions()
        targets = sorted(sub_id for sub_id, types in subs if matches(types, event.type))
        if not targets:
            return 0
        async with self.db.write() as conn:
            seq = await conn.scalar(select(t.events.c.seq).where(t.events.c.id == event.id))
            if seq is None:  # not a stored event (a plugin called dispatch by hand): nothing to key on
                return 0
            stmt = (
                dialect_insert(conn, t.webhook_deliveries)
                .values(
                    [
                        {
                            "id": new_id("whd"),
                            "subscription_id": sub_id,
                            "event_seq": seq,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                        }
                        for sub_id in targets
                    ]
                )
                .on_conflict_do_nothing(index_elements=["subscription_id", "event_seq"])
            )
            result = await conn.execute(stmt)
            return max(int(result.rowcount or 0), 0)

    @staticmethod
    def _due(now: datetime) -> Any:
        d = t.webhook_deliveries
        return select(d.c.id).where(
            d.c.status == "pending",
            d.c.next_attempt_at <= now,
            or_(d.c.locked_until.is_(None), d.c.locked_until < now),
        )

    async def any_due(self, now: datetime) -> bool:
        """A cheap read first, so an idle deliverer does not open a write transaction every poll."""
        async with self.db.read() as conn:
            return (await conn.scalar(self._due(now).limit(1))) is not None

    async def claim(self, now: datetime, *, limit: int, lease_seconds: float) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries, oldest due first."""
        d = t.webhook_deliveries
        due = self._due(now).order_by(d.c.next_attempt_at, d.c.event_seq).limit(limit).with_for_update(skip_locked=True)
        lease = now + timedelta(seconds=lease_seconds)
        async with self.db.write() as conn:
            result = await conn.execute(
                update(d)
                .where(d.c.id.in_(due.scalar_subquery()))
                .values(locked_until=lease)
                .returning(d.c.id, d.c.subscription_id, d.c.event_seq, d.c.attempts)
            )
            leased = result.all()
            if not leased:
                return []
            s, e = t.webhook_subscriptions, t.events
            subs = {
                r.id: r
                for r in await conn.execute(
                    select(s.c.id, s.c.url, s.c.secret, s.c.active).where(s.c.id.in_({r[1] for r in leased}))
                )
            }
            events = {
                r.seq: r
                for r in await conn.execute(
                    select(e.c.seq, e.c.id, e.c.type, e.c.occurred_at, e.c.payload).where(
                        e.c.seq.in_({r[2] for r in leased})
                    )
                )
            }
        claimed = []
        for delivery_id, sub_id, seq, attempts in leased:
            sub, ev = subs.get(sub_id), events[seq]
            claimed.append(
                Claimed(
                    id=delivery_id,
                    subscription_id=sub_id,
                    event_seq=seq,
                    attempts=attempts,
                    lease=lease,
                    url=sub.url if sub else None,
                    secret=sub.secret if sub else None,
                    active=bool(sub.active) if sub else False,
                    event_id=ev.id,
                    event_type=ev.type,
                    occurred_at=ev.occurred_at,
                    payload=bytes(ev.payload),
                )
            )
        claimed.sort(key=lambda c: c.event_seq)
        return claimed

    async def settle(
        self,
        claimed: Claimed,
        *,
        status: str,
        attempts: int,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None = None,
        delivered_at: datetime | None = None,
        disable_subscription: bool = False,
    ) -> bool:
        """Write one attempt's result, if the lease is still ours; False when it was lost."""
        d = t.webhook_deliveries
        values: dict[str, Any] = {
            "status": status,
            "attempts": attempts,
            "locked_until": None,
            "last_status_code": status_code,
            "last_error": error[:_ERROR_CHARS] if error else None,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if delivered_at is not None:
            values["delivered_at"] = delivered_at
        async with self.db.write() as conn:
            result = await conn.execute(
                update(d).where(d.c.id == claimed.id, d.c.locked_until == claimed.lease).values(**values)
            )
            if result.rowcount != 1:
                return False
            if disable_subscription:
                s = t.webhook_subscriptions
                await conn.execute(update(s).where(s.c.id == claimed.subscription_id).values(active=False))
                # Nothing else queued for it will be sent; in-flight leases are voided with it.
                await conn.execute(
                    update(d)
                    .where(and_(d.c.subscription_id == claimed.subscription_id, d.c.status == "pending"))
                    .values(
                        status="failed",
                        locked_until=None,
                        last_error="subscription disabled: the receiver answered 410 Gone",
                    )
                )
        return True


class WebhookDeliverer:
    """Sends due webhook deliveries. ``run(stop)`` loops like the outbox worker; ``run_once()``
    claims and sends one batch; ``drain()`` sends until nothing is due (``omniretail worker --once``).
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        name: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout_seconds: float = 10.0,
        concurrency: int = 10,
        lease_seconds: float | None = None,
        rng: random.Random | None = None,
        signing_clock: Clock = system_clock,
    ) -> None:
        self.kernel = kernel
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.store = WebhookStore(kernel.db)
        self.settings = kernel.config.worker
        self.timeout_seconds = timeout_seconds
        self.concurrency = max(1, concurrency)
        # A batch is at most a few waves of concurrent requests: its lease outlives them all.
        self.batch_size = min(self.settings.batch_size, self.concurrency * 4)
        waves = math.ceil(self.batch_size / self.concurrency)
        self.lease_seconds = lease_seconds if lease_seconds is not None else max(60.0, 2 * waves * timeout_seconds)
        self.rng = rng
        self.signing_clock = signing_clock
        self._client = client
        self._owns_client = False  # run() keeps one client open once there is something to send

    def _new_client(self) -> httpx.AsyncClient:
        import httpx  # here, not at import: a process with no webhook to send never loads it

        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_seconds),
            follow_redirects=False,
            headers={"user-agent": f"omniretail/{__version__} (Standard Webhooks)"},
            limits=httpx.Limits(max_connections=self.concurrency * 2),
        )

    def next_attempt(
        self, occurred_at: datetime, attempts: int, now: datetime, retry_after: float | None = None
    ) -> datetime | None:
        """When to try again after ``attempts`` failed attempts, or None to give up."""
        horizon = occurred_at + timedelta(hours=self.settings.retry_horizon_hours)
        if attempts >= self.settings.max_attempts or now >= horizon:
            return None
        if retry_after is not None:  # the receiver said when: not before, and not past the horizon
            at = now + timedelta(seconds=retry_after)
            return at if at <= horizon else None
        delay = backoff_delay(attempts, self.settings.backoff_seconds, self.rng)
        return min(now + timedelta(seconds=delay), horizon)

    async def _post(self, client: httpx.AsyncClient, claimed: Claimed) -> Outcome:
        import httpx

        assert claimed.url is not None and claimed.secret is not None
        body = envelope(claimed.event_type, claimed.occurred_at, claimed.payload)
        sent_at = self.signing_clock()
        signature = Webhook(claimed.secret).sign(claimed.event_id, sent_at, body.decode())
        headers = {
            "content-type": "application/json",
            "webhook-id": claimed.event_id,
            "webhook-timestamp": str(math.floor(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            async with (
                asyncio.timeout(self.timeout_seconds),
                client.stream("POST", claimed.url, content=body, headers=headers) as response,
            ):
                code = response.status_code
                if 200 <= code < 300:
                    return Outcome(status_code=code)
                snippet = b""
                if code != 410:
                    async for chunk in response.aiter_bytes():
                        snippet += chunk
                        if len(snippet) >= _BODY_SNIPPET:
                            break
                text = snippet[:_BODY_SNIPPET].decode("utf-8", "replace").strip()
                return Outcome(
                    status_code=code,
                    error=f"HTTP {code}" + (f": {text}" if text else ""),
                    retry_after=retry_after_seconds(response.headers.get("retry-after"), self.signing_clock()),
                )
        except TimeoutError:
            return Outcome(error=f"timed out after {self.timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def _deliver(self, client: httpx.AsyncClient, claimed: Claimed) -> None:
        if not claimed.active or claimed.url is None:
            await self.store.settle(
                claimed,
                status="failed",
                attempts=claimed.attempts,
                status_code=None,
                error="subscription is no longer active",
            )
            return
        try:
            outcome = await self._post(client, claimed)
        except Exception as exc:  # a bug or a bad secret: recorded and retried like a failure
            log.exception("webhook delivery %s could not be sent", claimed.id)
            outcome = Outcome(error=repr(exc))
        attempts = claimed.attempts + 1
        now = self.kernel.clock()
        if outcome.delivered:
            await self.store.settle(
                claimed,
                status="delivered",
                attempts=attempts,
                status_code=outcome.status_code,
                error=None,
                delivered_at=now,
            )
        elif outcome.gone:
            log.warning("webhook %s answered 410 Gone: subscription disabled", claimed.subscription_id)
            await self.store.settle(
                claimed,
                status="failed",
                attempts=attempts,
                status_code=410,
                error=outcome.error,
                disable_subscription=True,
            )
        else:
            at = self.next_attempt(claimed.occurred_at, attempts, now, outcome.retry_after)
            log.info(
                "webhook delivery %s (%s to %s) failed: %s; %s",
                claimed.id,
                claimed.event_type,
                claimed.subscription_id,
                outcome.error,
                f"retry at {at.isoformat()}" if at else "giving up",
            )
            await self.store.settle(
                claimed,
                status="pending" if at else "failed",
                attempts=attempts,
                status_code=outcome.status_code,
                error=outcome.error,
                next_attempt_at=at,
            )

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and send them; returns how many were claimed."""
        now = self.kernel.clock()
        if not await self.store.any_due(now):
            return 0
        batch = await self.store.claim(now, limit=self.batch_size, lease_seconds=self.lease_seconds)
        if not batch:
            return 0
        if self._client is None and self._owns_client:
            self._client = self._new_client()  # made when there is something to send
        if self._client is not None:
            await self._send_all(self._client, batch)
        else:
            async with self._new_client() as client:
                await self._send_all(client, batch)
        return len(batch)

    async def _send_all(self, client: httpx.AsyncClient, batch: list[Claimed]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(claimed: Claimed) -> None:
            async with gate:
                await self._deliver(client, claimed)

        results = await asyncio.gather(*(one(c) for c in batch), return_exceptions=True)
        for claimed, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                # Its lease runs out and another round takes it again.
                log.error("webhook delivery %s: recording the result failed: %r", claimed.id, result)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Send until nothing is due; returns how many deliveries were attempted."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            total += n
            if n == 0:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        owned = self._client is None
        self._owns_client = owned
        try:
            while not stop.is_set():
                try:
                    handled = await self.run_once()
                except Exception:
                    log.exception("webhook deliverer %s: round failed; retrying", self.name)
                    handled = 0
                if handled == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_seconds)
        finally:
            if owned and self._client is not None:
                await self._client.aclose()
                self._client = None
            self._owns_client = False
