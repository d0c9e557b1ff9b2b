"""Publication records: the current listing per (channel, product), its history, the runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, func, insert, or_, select, update

from omniretail.storage import tables as t
from omniretail.storage.database import Database, dialect_insert


class Current(msgspec.Struct, frozen=True):
    status: str
    input_hash: str
    content_hash: str | None
    reason: str | None


class PublicationRecord(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    product_id: str
    status: str
    input_hash: str
    content_hash: str | None
    content: bytes | None
    reason: str | None
    product_revision: int
    run_id: str
    updated_at: datetime


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    run_id: str
    channel: str
    product_id: str
    action: str
    content_hash: str | None
    reason: str | None
    product_revision: int
    at: datetime


class Watermark(msgspec.Struct, frozen=True):
    """What a finished run saw: the next run renders only what moved since."""

    run_id: str
    catalog_revision: int
    stock_mark_us: int
    settings_hash: str
    started_at: datetime


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    channel: str
    status: str
    trigger: str
    mode: str | None
    total: int
    rendered: int
    unchanged: int
    created: int
    updated: int
    rejected: int
    withdrawn: int
    failed: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None


_CHUNK = 500
#: A run still marked running after this long is taken for dead (its process was killed).
OVERLAP_HORIZON = timedelta(hours=1)

_RUN_COUNTS = ("total", "rendered", "unchanged", "created", "updated", "rejected", "withdrawn", "failed")


class PublicationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def current(self, channel: str, product_ids: Sequence[str] | None = None) -> dict[str, Current]:
        """The current record per product of a channel: all of them, or those of ``product_ids``."""
        p = t.publications
        columns = (p.c.product_id, p.c.status, p.c.input_hash, p.c.content_hash, p.c.reason)
        found: dict[str, Current] = {}
        async with self.db.read() as conn:
            if product_ids is None:
                rows = await conn.execute(select(*columns).where(p.c.channel == channel))
                return {pid: Current(status, ih, ch, reason) for pid, status, ih, ch, reason in rows}
            ids = list(product_ids)
            for start in range(0, len(ids), _CHUNK):
                rows = await conn.execute(
                    select(*columns).where(p.c.channel == channel, p.c.product_id.in_(ids[start : start + _CHUNK]))
                )
                found.update((pid, Current(status, ih, ch, reason)) for pid, status, ih, ch, reason in rows)
        return found

    async def product_ids(self, channel: str, status: str) -> list[str]:
        p = t.publications
        async with self.db.read() as conn:
            return list(await conn.scalars(select(p.c.product_id).where(p.c.channel == channel, p.c.status == status)))

    async def watermark(self, channel: str) -> Watermark | None:
        """Where the next incremental run starts looking: the marks of the channel's latest
        finished run, pulled back to those of any run that started before it and was still
        writing when it started (finished later, failed later, or still running if younger than
        :data:`OVERLAP_HORIZON`): such a run may have written older listings over newer ones, so
        what it saw is looked at again. None when there is no finished run with marks."""
        r = t.publication_runs
        columns = (r.c.id, r.c.catalog_revision, r.c.stock_mark_us, r.c.settings_hash, r.c.started_at)
        async with self.db.read() as conn:
            last = (
                await conn.execute(
                    select(*columns)
                    .where(r.c.channel == channel, r.c.status == "done", r.c.catalog_revision.is_not(None))
                    .order_by(r.c.started_at.desc(), r.c.id.desc())
                    .limit(1)
                )
            ).first()
            if last is None or last.stock_mark_us is None or last.settings_hash is None:
                return None
            overlapping = (
                await conn.execute(
                    select(*columns).where(
                        r.c.channel == channel,
                        r.c.id != last.id,
                        r.c.catalog_revision.is_not(None),
                        r.c.started_at < last.started_at,
                        or_(
                            r.c.finished_at >= last.started_at,
                            and_(r.c.finished_at.is_(None), r.c.started_at >= last.started_at - OVERLAP_HORIZON),
                        ),
                    )
                )
            ).all()
        runs = [last, *overlapping]
        return Watermark(
            last.id,
            min(x.catalog_revision for x in runs),
            min(x.stock_mark_us for x in runs if x.stock_mark_us is not None),
            last.settings_hash,
            min(x.started_at for x in runs),
        )

    async def write_batch(self, rows: Sequence[dict[str, Any]], log: Sequence[dict[str, Any]]) -> None:
        """Upsert publication rows and append their log entries, in one transaction."""
        if not rows and not log:
            return
        async with self.db.write() as conn:
            if rows:
                stmt = dialect_insert(conn, t.publications)
                keys = ("channel", "product_id")
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(keys),
                    set_={c: stmt.excluded[c] for c in rows[0] if c not in keys},
                )
                await conn.execute(stmt, list(rows))
            if log:
                await conn.execute(insert(t.publication_log), list(log))

    async def start_run(
        self, run_id: str, channel: str, trigger: str, now: datetime, *, marks: tuple[int, int, str] | None = None
    ) -> None:
        """Record a run as running, with ``marks`` (catalog revision, wall-clock stock mark,
        settings hash): what it reads is at least that fresh."""
        catalog_revision, stock_mark_us, settings_hash = marks or (None, None, None)
        async with self.db.write() as conn:
            await conn.execute(
                insert(t.publication_runs).values(
                    id=run_id,
                    channel=channel,
                    status="running",
                    trigger=trigger,
                    started_at=now,
                    catalog_revision=catalog_revision,
                    stock_mark_us=stock_mark_us,
                    settings_hash=settings_hash,
                    **dict.fromkeys(_RUN_COUNTS, 0),
                )
            )

    async def finish_run(
        self,
        run_id: str,
        counts: dict[str, int],
        now: datetime,
        error: str | None = None,
        *,
        mode: str | None = None,
    ) -> None:
        """Close a run with its counts (done, or failed with ``error``)."""
        async with self.db.write() as conn:
            await conn.execute(
                update(t.publication_runs)
                .where(t.publication_runs.c.id == run_id)
                .values(
                    status="failed" if error else "done",
                    finished_at=now,
                    error=error,
                    mode=mode,
                    **{k: counts.get(k, 0) for k in _RUN_COUNTS},
                )
            )

    async def run(self, run_id: str) -> RunRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(t.publication_runs).where(t.publication_runs.c.id == run_id))).first()
        return _run(row) if row else None

    async def runs(self, *, channel: str | None = None, limit: int = 20) -> list[RunRecord]:
        r = t.publication_runs
        stmt = select(r).order_by(r.c.started_at.desc(), r.c.id.desc()).limit(limit)
        if channel:
            stmt = stmt.where(r.c.channel == channel)
        async with self.db.read() as conn:
            return [_run(row) for row in await conn.execute(stmt)]

    async def record(self, channel: str, product_id: str) -> PublicationRecord | None:
        p = t.publications
        async with self.db.read() as conn:
            row = (await conn.execute(select(p).where(p.c.channel == channel, p.c.product_id == product_id))).first()
        return PublicationRecord(**row._asdict()) if row else None

    async def records(
        self, channel: str, *, status: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[PublicationRecord]:
        p = t.publications
        stmt = select(p).where(p.c.channel == channel).order_by(p.c.product_id).limit(limit)
        if status:
            stmt = stmt.where(p.c.status == status)
        if after:
            stmt = stmt.where(p.c.product_id > after)
        async with self.db.read() as conn:
            return [PublicationRecord(**row._asdict()) for row in await conn.execute(stmt)]

    async def history(
        self,
        *,
        channel: str | None = None,
        product_id: str | None = None,
        run_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[LogEntry]:
        lg = t.publication_log
        stmt = select(lg).order_by(lg.c.seq).limit(limit)
        if channel:
            stmt = stmt.where(lg.c.channel == channel)
        if product_id:
            stmt = stmt.where(lg.c.product_id == product_id)
        if run_id:
            stmt = stmt.where(lg.c.run_id == run_id)
        if after is not None:
            stmt = stmt.where(lg.c.seq > after)
        async with self.db.read() as conn:
            return [LogEntry(**row._asdict()) for row in await conn.execute(stmt)]

    async def listings(self, channel: str, *, chunk: int = 1000) -> AsyncIterator[bytes]:
        """The published listings of a channel (their rendered content), in product order, read
        in chunks so a feed of any size streams in bounded memory."""
        p = t.publications
        after = ""
        while True:
            async with self.db.read() as conn:
                rows = (
                    await conn.execute(
                        select(p.c.product_id, p.c.content)
                        .where(p.c.channel == channel, p.c.status == "published", p.c.product_id > after)
                        .order_by(p.c.product_id)
                        .limit(chunk)
                    )
                ).all()
            for _pid, content in rows:
                yield content
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    async def counts(self, channel: str) -> dict[str, int]:
        p = t.publications
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(p.c.status, func.count()).where(p.c.channel == channel).group_by(p.c.status)
            )
            return {status: int(n) for status, n in rows}


def _run(row: Any) -> RunRecord:
    data = row._asdict()
    return RunRecord(**{name: data[name] for name in RunRecord.__struct_fields__})
