"""The outbox worker: delivers committed events to the plugins' notification hooks, and queues
them for outbound webhooks (sent by :class:`omniretail.webhooks.WebhookDeliverer`).

``omniretail worker`` runs it (any number, on PostgreSQL); on the embedded SQLite default the
gateway runs one in-process. Delivery is at least once and in commit order within a batch; a
failing hook implementation is retried with exponential backoff and full jitter until
``worker.max_attempts`` or ``worker.retry_horizon_hours``, then the row is marked ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from datetime import datetime, timedelta

from omniretail.domain.events import Event, OrderPlaced, OrderStatusChanged
from omniretail.host import call_notification
from omniretail.kernel import Kernel
from omniretail.storage.outbox import OutboxStore

log = logging.getLogger("omniretail.worker")


def backoff_delay(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, base * 2**attempt], capped at one hour."""
    ceiling = min(base * (2 ** min(attempt, 20)), 3600.0)
    return (rng or random).uniform(0, ceiling)


class OutboxWorker:
    def __init__(self, kernel: Kernel, *, name: str | None = None, lease_seconds: float = 60.0) -> None:
        self.kernel = kernel
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.store = OutboxStore(kernel.db)
        self.lease_seconds = lease_seconds
        self.settings = kernel.config.worker
        from omniretail.webhooks import WebhookStore  # here: omniretail.webhooks imports this module

        self.webhooks = WebhookStore(kernel.db)

    async def dispatch(self, event: Event, subscriptions: list[tuple[str, list[str]]] | None = None) -> None:
        # Outbound webhook rows first (unique per subscription and event, so a retry of this
        # event after a failing plugin does not fan out twice), then the plugins' hooks.
        await self.webhooks.fan_out(event, self.kernel.clock(), subscriptions)
        hook = self.kernel.hook
        await call_notification(hook.event_committed, event=event, kernel=self.kernel)
        if isinstance(event, OrderPlaced):
            await call_notification(hook.order_placed, event=event, kernel=self.kernel)
        elif isinstance(event, OrderStatusChanged):
            await call_notification(hook.order_status_changed, event=event, kernel=self.kernel)

    def _next_attempt(self, event: Event, attempts: int, now: datetime) -> datetime | None:
        horizon = event.occurred_at + timedelta(hours=self.settings.retry_horizon_hours)
        if attempts >= self.settings.max_attempts or now >= horizon:
            return None
        return min(now + timedelta(seconds=backoff_delay(attempts, self.settings.backoff_seconds)), horizon)

    async def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many events were handled."""
        now = self.kernel.clock()
        batch = await self.store.claim(self.name, now, limit=self.settings.batch_size, lease_seconds=self.lease_seconds)
        if not batch:
            return 0
        subscriptions = await self.webhooks.active_subscriptions()  # read once per batch
        done: list[int] = []
        for seq, attempts, event in batch:
            # On SQLite nothing in a dispatch waits (statements run inline): let the requests
            # this process serves run between events, not only between batches.
            await asyncio.sleep(0)
            try:
                await self.dispatch(event, subscriptions)
            except Exception as exc:
                log.warning("event %s (%s) failed in a plugin: %r", seq, event.type, exc)
                at = self._next_attempt(event, attempts + 1, self.kernel.clock())
                await self.store.retry(self.name, seq, attempts=attempts + 1, at=at, error=repr(exc))
            else:
                done.append(seq)
        await self.store.done(self.name, done)
        return len(batch)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Deliver until nothing is due (tests, ``omniretail worker --once``)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            total += n
            if n == 0:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("outbox worker round failed; retrying")
                handled = 0
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_seconds)
