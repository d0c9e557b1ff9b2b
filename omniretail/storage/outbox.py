"""Outbox rows: claimed in batches by workers, then marked done or rescheduled.

Claiming is one UPDATE over a ``SELECT ... FOR UPDATE SKIP LOCKED`` sub-select on PostgreSQL, so
several workers take disjoint batches; on SQLite the clause compiles away and ``BEGIN IMMEDIATE``
serialises claimers instead. A claim is a lease: a worker killed mid-batch leaves rows whose lease
runs out, and another worker takes them again (delivery is at least once).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from omniretail.domain.events import Event, decode_event
from omniretail.storage import tables as t
from omniretail.storage.database import Database


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self, worker: str, now: datetime, *, limit: int, lease_seconds: float
    ) -> list[tuple[int, int, Event]]:
        """Lease up to ``limit`` due rows; returns (seq, attempts so far, event) in seq order."""
        o = t.outbox
        due = (
            select(o.c.event_seq)
            .where(
                o.c.status == "pending",
                o.c.available_at <= now,
                or_(o.c.locked_until.is_(None), o.c.locked_until < now),
            )
            .order_by(o.c.event_seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.db.write() as conn:
            result = await conn.execute(
                update(o)
                .where(o.c.event_seq.in_(due.scalar_subquery()))
                .values(locked_until=now + timedelta(seconds=lease_seconds), locked_by=worker)
                .returning(o.c.event_seq, o.c.attempts)
            )
            claimed = {seq: attempts for seq, attempts in result}
            if not claimed:
                return []
            rows = await conn.execute(
                select(t.events.c.seq, t.events.c.type, t.events.c.payload)
                .where(t.events.c.seq.in_(list(claimed)))
                .order_by(t.events.c.seq)
            )
            return [(seq, claimed[seq], decode_event(payload, typ)) for seq, typ, payload in rows]

    async def done(self, worker: str, seqs: list[int]) -> None:
        if not seqs:
            return
        async with self.db.write() as conn:
            await conn.execute(
                update(t.outbox)
                .where(t.outbox.c.event_seq.in_(seqs), t.outbox.c.locked_by == worker)
                .values(status="done", locked_until=None, last_error=None)
            )

    async def retry(self, worker: str, seq: int, *, attempts: int, at: datetime | None, error: str) -> None:
        """Reschedule at ``at``, or give up (status ``failed``) when ``at`` is None."""
        values: dict[str, object] = {"attempts": attempts, "locked_until": None, "last_error": error[:2000]}
        if at is None:
            values["status"] = "failed"
        else:
            values["available_at"] = at
        async with self.db.write() as conn:
            await conn.execute(
                update(t.outbox).where(t.outbox.c.event_seq == seq, t.outbox.c.locked_by == worker).values(**values)
            )

    async def counts(self) -> dict[str, int]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(t.outbox.c.status, func.count()).group_by(t.outbox.c.status))
            return {status: int(n) for status, n in rows}
