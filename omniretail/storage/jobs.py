"""A small job queue (background work asked for through the API) and periodic task leases.

Jobs are claimed one at a time with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (serialised by
``BEGIN IMMEDIATE`` on SQLite) and leased, so a worker that dies gives its job back.
Periodic tasks are claimed by one conditional UPDATE on their ``task_state`` row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from omniretail.domain.ids import new_id
from omniretail.storage import tables as t
from omniretail.storage.database import Database


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


_payload = msgspec.json.Decoder(dict[str, Any])


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        payload=_payload.decode(row.payload),
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        finished_at=row.finished_at,
        result=_payload.decode(row.result) if row.result else None,
        error=row.error,
    )


class JobQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, kind: str, payload: dict[str, Any], now: datetime) -> Job:
        job_id = new_id("job")
        async with self.db.write() as conn:
            await conn.execute(
                insert(t.jobs).values(
                    id=job_id,
                    kind=kind,
                    payload=msgspec.json.encode(payload).decode(),
                    status="queued",
                    attempts=0,
                    created_at=now,
                    available_at=now,
                )
            )
        return Job(id=job_id, kind=kind, payload=payload, status="queued", attempts=0, created_at=now)

    async def get(self, job_id: str) -> Job | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).first()
        return _job(row) if row else None

    async def claim(self, worker: str, now: datetime, lease_seconds: float) -> Job | None:
        j = t.jobs
        due = (
            select(j.c.id)
            .where(
                or_(j.c.status == "queued", (j.c.status == "running") & (j.c.locked_until < now)),
                j.c.available_at <= now,
            )
            .order_by(j.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        async with self.db.write() as conn:
            result = await conn.execute(
                update(j)
                .where(j.c.id.in_(due.scalar_subquery()))
                .values(
                    status="running",
                    locked_by=worker,
                    locked_until=now + timedelta(seconds=lease_seconds),
                    attempts=j.c.attempts + 1,
                )
                .returning(j.c.id)
            )
            job_id = result.scalar()
            if job_id is None:
                return None
            row = (await conn.execute(select(j).where(j.c.id == job_id))).first()
        return _job(row)

    async def finish(
        self,
        job_id: str,
        worker: str,
        now: datetime,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"locked_until": None, "error": error}
        if error and retry_at is not None:
            values.update(status="queued", available_at=retry_at)
        else:
            values.update(
                status="failed" if error else "done",
                finished_at=now,
                result=msgspec.json.encode(result).decode() if result is not None else None,
            )
        async with self.db.write() as conn:
            await conn.execute(
                update(t.jobs).where(t.jobs.c.id == job_id, t.jobs.c.locked_by == worker).values(**values)
            )


class TaskLeases:
    """Claim a periodic task for one run: only one worker gets it until it is due again."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, name: str, worker: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        """The task's saved state if this worker may run it now, else None."""
        s = t.task_state
        async with self.db.write() as conn:
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(s).values(name=name, next_run_at=now, state="{}"))
            except IntegrityError:
                pass
            result = await conn.execute(
                update(s)
                .where(
                    s.c.name == name, s.c.next_run_at <= now, or_(s.c.locked_until.is_(None), s.c.locked_until < now)
                )
                .values(locked_until=now + timedelta(seconds=lease_seconds), locked_by=worker)
                .returning(s.c.state)
            )
            state = result.scalar()
        return _payload.decode(state) if state is not None else None

    async def release(
        self,
        name: str,
        worker: str,
        now: datetime,
        *,
        next_run_at: datetime,
        state: dict[str, Any],
        error: str | None = None,
    ) -> None:
        s = t.task_state
        async with self.db.write() as conn:
            await conn.execute(
                update(s)
                .where(s.c.name == name, s.c.locked_by == worker)
                .values(
                    locked_until=None,
                    last_run_at=now,
                    next_run_at=next_run_at,
                    last_error=error,
                    state=msgspec.json.encode(state).decode(),
                )
            )
