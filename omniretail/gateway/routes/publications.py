"""Back office: publish the catalog to channels as a background job, and read the records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from omniretail.domain.errors import NotFound
from omniretail.gateway.present import decode_cursor, encode_cursor
from omniretail.gateway.routes.common import KernelDep, errors
from omniretail.gateway.schemas import Page, Request
from omniretail.gateway.security import ADMIN
from omniretail.reporting import Report, build_report, chart_svg
from omniretail.storage.jobs import JobQueue
from omniretail.storage.publications import LogEntry, PublicationStore, RunRecord

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]


class PublishBody(Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: One channel, or every enabled channel when omitted.
    channel: str | None = None
    #: Look at every product, not only what changed since each channel's last run.
    full: bool = False


class JobOut(msgspec.Struct, frozen=True):
    id: str
    kind: str
    status: str
    attempts: int
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class PublicationOut(msgspec.Struct, frozen=True):
    channel: str
    product_id: str
    status: str
    content_hash: str | None
    reason: str | None
    product_revision: int
    run_id: str
    updated_at: datetime
    #: The rendered listing, on the single-record endpoint only.
    listing: Any = None


class PublicationsController(Controller):
    path = "/v1/admin"
    tags = ["publications"]
    opt = ADMIN

    @post(
        "/publications",
        operation_id="adminPublish",
        status_code=HTTP_202_ACCEPTED,
        responses=errors(),
        opt={"idempotency": "optional"},
        summary="Publish the catalog (to one channel or all) as a background job run by the worker",
    )
    async def publish(self, kernel: KernelDep, data: JSONBody[PublishBody | None] = None) -> JobOut:
        channel = data.channel if data else None
        if channel is not None and channel not in kernel.channels:
            raise NotFound(f"no enabled channel {channel!r}", field="channel")
        payload = {"channel": channel, "full": bool(data and data.full)}
        job = await JobQueue(kernel.db).enqueue("publish", payload, kernel.clock())
        return JobOut(job.id, job.kind, job.status, job.attempts, job.created_at, None, None, None)

    @get("/jobs/{job_id:str}", operation_id="adminGetJob", responses=errors(), summary="A background job")
    async def job(self, kernel: KernelDep, job_id: FromPath[str]) -> JobOut:
        job = await JobQueue(kernel.db).get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", field="job_id")
        return JobOut(
            job.id, job.kind, job.status, job.attempts, job.created_at, job.finished_at, job.result, job.error
        )

    @get(
        "/publications/runs",
        operation_id="adminListPublicationRuns",
        responses=errors(),
        summary="Publication runs, newest first",
    )
    async def runs(
        self, kernel: KernelDep, channel: FromQuery[str | None] = None, limit: Limit = 20
    ) -> list[RunRecord]:
        return await PublicationStore(kernel.db).runs(channel=channel, limit=limit)

    @get(
        "/publications/runs/{run_id:str}",
        operation_id="adminGetPublicationRun",
        responses=errors(),
        summary="One publication run with its counts",
    )
    async def run(self, kernel: KernelDep, run_id: FromPath[str]) -> RunRecord:
        run = await PublicationStore(kernel.db).run(run_id)
        if run is None:
            raise NotFound(f"no publication run {run_id!r}", field="run_id")
        return run

    @get(
        "/publications/history",
        operation_id="adminPublicationHistory",
        responses=errors(),
        summary="What changed on which channel: created, updated, rejected (with reason), withdrawn",
    )
    async def history(
        self,
        kernel: KernelDep,
        channel: FromQuery[str | None] = None,
        product_id: FromQuery[str | None] = None,
        run_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = 100,
    ) -> Page[LogEntry]:
        raw = decode_cursor(cursor)
        after = int(raw) if raw and raw.isdigit() else None
        entries = await PublicationStore(kernel.db).history(
            channel=channel, product_id=product_id, run_id=run_id, after=after, limit=limit + 1
        )
        more = len(entries) > limit
        entries = entries[:limit]
        return Page(items=entries, next_cursor=encode_cursor(entries[-1].seq) if more and entries else None)

    @get(
        "/publications/{channel:str}",
        operation_id="adminListPublications",
        responses=errors(),
        summary="Current publication record of every product on a channel",
    )
    async def records(
        self,
        kernel: KernelDep,
        channel: FromPath[str],
        status: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = 100,
    ) -> Page[PublicationOut]:
        found = await PublicationStore(kernel.db).records(
            channel, status=status, after=decode_cursor(cursor), limit=limit + 1
        )
        more = len(found) > limit
        found = found[:limit]
        items = [
            PublicationOut(
                r.channel, r.product_id, r.status, r.content_hash, r.reason, r.product_revision, r.run_id, r.updated_at
            )
            for r in found
        ]
        return Page(items=items, next_cursor=encode_cursor(found[-1].product_id) if more and found else None)

    @get(
        "/publications/{channel:str}/{product_id:str}",
        operation_id="adminGetPublication",
        responses=errors(),
        summary="A product's listing on a channel, as last published",
    )
    async def record(self, kernel: KernelDep, channel: FromPath[str], product_id: FromPath[str]) -> PublicationOut:
        r = await PublicationStore(kernel.db).record(channel, product_id)
        if r is None:
            raise NotFound(f"{product_id!r} was never published to {channel!r}", field="product_id")
        listing = msgspec.json.decode(r.content) if r.content else None
        return PublicationOut(
            r.channel,
            r.product_id,
            r.status,
            r.content_hash,
            r.reason,
            r.product_revision,
            r.run_id,
            r.updated_at,
            listing,
        )


class ReportController(Controller):
    path = "/v1/admin/report"
    tags = ["admin"]
    opt = ADMIN

    @get(
        "/",
        operation_id="adminReport",
        responses=errors(),
        summary="Sales and orders per channel, cross-channel journeys, handoff conversion",
    )
    async def report(self, kernel: KernelDep) -> Report:
        return await build_report(kernel)

    @get(
        "/chart.svg",
        operation_id="adminReportChart",
        responses=errors(),
        media_type="image/svg+xml",
        summary="The report as an SVG bar chart",
    )
    async def chart(self, kernel: KernelDep) -> Response[str]:
        return Response(chart_svg(await build_report(kernel)), media_type="image/svg+xml")
