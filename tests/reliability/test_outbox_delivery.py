"""The outbox end to end: thousands of events to a webhook receiver on loopback that fails 30 % of
deliveries, with the `omniretail worker` process killed (-9) mid-batch and another worker finishing.

* Every event is delivered: the set of webhook-ids answered 2xx equals the set of event ids (the
  receiver deduplicates on webhook-id, so redeliveries after the kill are harmless), every request
  is correctly signed, and the delivery log (``GET /v1/admin/webhooks/{id}/deliveries``) says
  ``delivered`` for each, with attempts matching what the receiver saw.
* Retries back off with full jitter and stop at the configured limits: a receiver that always
  fails gets exactly ``worker.max_attempts`` requests per event, spaced by growing, spread-out
  waits, then the log says ``failed``; with a tiny ``worker.retry_horizon_hours`` retries stop at
  the horizon.

The killed worker leaves outbox rows and webhook deliveries leased (60 s and 80 s). The worker
that finishes runs in this process (the same `OutboxWorker` and `WebhookDeliverer` loops the CLI
runs) with its clock 2 minutes ahead, as if it had started after the leases ran out.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from omniretail.domain.events import StockAdjusted
from omniretail.domain.ids import new_id
from omniretail.gateway.app import create_app
from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft
from omniretail.storage import tables as t
from omniretail.webhooks import WebhookDeliverer
from omniretail.worker import OutboxWorker
from tests.reliability.support import WAREHOUSE, Store, quick_store

SEED = 20260108
FAIL_RATE = 0.3
#: A receiver fails one event at most this often, so no event reaches max_attempts (12).
MAX_FAILURES_PER_EVENT = 3
FAST_WORKER = {"poll_seconds": 0.05, "batch_size": 500, "backoff_seconds": 0.01}


# -- a receiver --------------------------------------------------------------------------------


@dataclass
class Hit:
    at: float
    status: int


@dataclass
class Receiver:
    """A raw HTTP/1.1 receiver on 127.0.0.1 that verifies Standard Webhooks signatures and fails
    a seeded 30 % of deliveries (decided per webhook-id and attempt number, so deterministic)."""

    secret: str = ""
    fail_rate: float = FAIL_RATE
    max_failures: int = MAX_FAILURES_PER_EVENT
    hits: dict[str, list[Hit]] = field(default_factory=lambda: defaultdict(list))
    bad: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> set[str]:
        return {i for i, hits in self.hits.items() if any(h.status < 300 for h in hits)}

    def failures(self, webhook_id: str) -> int:
        return sum(h.status >= 300 for h in self.hits[webhook_id])

    def _status(self, webhook_id: str) -> int:
        n = len(self.hits[webhook_id])
        if self.fail_rate >= 1:
            return 500
        if n < self.max_failures and random.Random(f"{SEED}:{webhook_id}:{n}").random() < self.fail_rate:
            return 500
        return 204

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                webhook_id = headers.get("webhook-id", "")
                try:
                    payload = Webhook(self.secret).verify(body, headers)
                    if payload["data"]["id"] != webhook_id:
                        self.bad.append(f"{webhook_id}: body is for {payload['data']['id']}")
                except WebhookVerificationError as exc:
                    self.bad.append(f"{webhook_id}: {exc}")
                status = self._status(webhook_id)
                self.hits[webhook_id].append(Hit(time.monotonic(), status))
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


# -- helpers -----------------------------------------------------------------------------------


class WorkerProcess:
    """`omniretail worker` in its own process group (so kill -9 leaves nothing behind)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: asyncio.subprocess.Process | None = None
        self.log = folder / f"worker-{time.monotonic_ns()}.log"

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "omniretail",
                "worker",
                cwd=self.folder,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def running(self) -> None:
        """Until the worker says it runs (its start-up takes seconds on a loaded machine)."""
        await until(lambda: " running " in self.output(), 60, "worker start-up", self)

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()


async def until(condition: Any, timeout: float, what: str, proc: WorkerProcess | None = None) -> None:
    """Poll ``condition`` (a plain or an async callable) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        done = condition()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if proc is not None and proc.proc is not None and proc.proc.returncode is not None:
            raise AssertionError(f"the worker exited: {proc.output()}")
        assert time.monotonic() < deadline, f"{what}: not done after {timeout:g} s"
        await asyncio.sleep(0.05)


async def make_events(kernel: Kernel, count: int, sku: str = "EVENTS-1") -> None:
    """``count`` real stock receipts of one unit, each with its ``stock.adjusted`` event in the
    outbox, in transactions of 500 (what ``kernel.inventory.adjust`` does one transaction each,
    which would take minutes here)."""
    if sku not in (await kernel.catalog.snapshot()).by_sku:
        variant = {"sku": sku, "prices": [{"amount": 100, "currency": "EUR"}]}
        draft = {"handle": sku.lower(), "title": sku, "variants": [variant]}
        await kernel.catalog.create(msgspec.convert(draft, ProductDraft))
    for start in range(0, count, 500):
        async with kernel.uow.write() as tx:
            for _ in range(min(500, count - start)):
                level = await tx.stock.adjust(sku, WAREHOUSE, 1)
                assert level is not None
                await tx.events.record(
                    StockAdjusted(
                        id=new_id("evt"),
                        occurred_at=kernel.clock(),
                        channel="admin",
                        actor="reliability",
                        sku=sku,
                        location_id=WAREHOUSE,
                        delta=1,
                        on_hand=level.on_hand,
                        reason="delivery",
                    )
                )


async def event_ids(kernel: Kernel, event_type: str, after: int = 0) -> set[str]:
    e = t.events
    async with kernel.db.read() as conn:
        return set((await conn.scalars(select(e.c.id).where(e.c.type == event_type, e.c.seq > after))).all())


async def leased(kernel: Kernel) -> int:
    """Outbox rows and webhook deliveries a worker holds a lease on."""
    o, d = t.outbox, t.webhook_deliveries
    async with kernel.db.read() as conn:
        rows = await conn.scalar(
            select(func.count()).select_from(o).where(o.c.status == "pending", o.c.locked_until.is_not(None))
        )
        deliveries = await conn.scalar(select(func.count()).select_from(d).where(d.c.locked_until.is_not(None)))
    return int(rows or 0) + int(deliveries or 0)


async def last_seq(kernel: Kernel) -> int:
    async with kernel.db.read() as conn:
        return int(await conn.scalar(select(func.max(t.events.c.seq))) or 0)


async def subscribe(client: httpx.AsyncClient, store: Store, url: str, types: list[str]) -> tuple[str, str]:
    r = await client.post("/v1/admin/webhooks", json={"url": url, "event_types": types}, headers=store.h())
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


async def delivery_log(client: httpx.AsyncClient, store: Store, sub_id: str) -> list[dict[str, Any]]:
    """The whole log, page by page, through the admin API."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        r = await client.get(f"/v1/admin/webhooks/{sub_id}/deliveries", params=params, headers=store.h())
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items


@dataclass
class Shifted:
    """The wall clock, ``ahead`` in the future."""

    ahead: timedelta

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


async def opened(store: Store, *, ahead: timedelta = timedelta()) -> Kernel:
    return await Kernel.from_path(store.folder / "omniretail.toml", clock=Shifted(ahead)).start()


def api_client(kernel: Kernel) -> httpx.AsyncClient:
    app = create_app(kernel, run_worker=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=60)


# -- every event delivered, through a crash ----------------------------------------------------


async def deliver_through_a_crash(tmp_path: Path, receiver: Receiver, count: int) -> None:
    store = await quick_store(
        tmp_path, None, tables={"gateway": {"embedded_worker": False}, "worker": {**FAST_WORKER, "max_attempts": 12}}
    )
    kernel = await opened(store)
    try:
        async with api_client(kernel) as client:
            sub_id, receiver.secret = await subscribe(client, store, receiver.url, ["stock.adjusted"])
            await make_events(kernel, count)
            expected = await event_ids(kernel, "stock.adjusted")
            assert len(expected) >= count

            worker = WorkerProcess(tmp_path)
            started = time.monotonic()
            await worker.start()
            try:
                # Kill it mid-batch: some deliveries done, most not.
                await until(lambda: len(receiver.delivered()) >= count // 4, 240, "first quarter", worker)
                await worker.kill()
            finally:
                await worker.stop()
            before_kill = len(receiver.delivered())
            assert before_kill < len(expected), "the worker finished before it was killed"
            assert await leased(kernel), "the kill left nothing leased: it did not happen mid-batch"
    finally:
        await kernel.close()

    # Another worker, after the leases ran out (its clock is 2 minutes ahead).
    later = await opened(store, ahead=timedelta(minutes=2))
    try:
        stop = asyncio.Event()
        await asyncio.sleep(0.2)  # requests the dead worker had fully sent are recorded by now
        finisher_started = time.monotonic()
        loops = [
            asyncio.create_task(OutboxWorker(later, name="finisher").run(stop)),
            asyncio.create_task(WebhookDeliverer(later, name="finisher").run(stop)),
        ]
        try:
            await until(lambda: receiver.delivered() >= expected, 600, "all delivered")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*loops), 30)
        elapsed = time.monotonic() - started
        async with api_client(later) as client:
            log = await delivery_log(client, store, sub_id)
    finally:
        await later.close()

    assert receiver.bad == []  # every request signed, and webhook-id is the event in the body
    assert receiver.delivered() == expected  # every event delivered; the receiver deduplicates
    assert set(receiver.hits) == expected  # and nothing else was sent
    requests = sum(len(h) for h in receiver.hits.values())
    failed = sum(receiver.failures(i) for i in expected)
    assert 0.2 < failed / requests < 0.4, (failed, requests)  # the receiver did fail ~30 %
    redelivered = [i for i in expected if sum(h.status < 300 for h in receiver.hits[i]) > 1]

    # The delivery log: one row per event, delivered, attempts as the receiver saw them.
    assert sorted(row["event_id"] for row in log) == sorted(expected)
    assert Counter(row["status"] for row in log) == {"delivered": len(expected)}
    by_id = {row["event_id"]: row for row in log}
    retried_once_or_more = 0
    for event_id, hits in receiver.hits.items():
        row = by_id[event_id]
        by_finisher = sum(h.at > finisher_started for h in hits)
        # The finisher recorded every attempt it made; the killed worker at most all of its own.
        assert by_finisher <= row["attempts"] <= len(hits), (event_id, row, hits)
        assert row["delivered_at"] and row["next_attempt_at"] is None and row["last_status_code"] == 204
        if receiver.failures(event_id):
            retried_once_or_more += row["attempts"] > 1
    failing_events = sum(1 for i in expected if receiver.failures(i))
    # A failed attempt is retried: attempts > 1, except in the killed worker's unsettled batch
    # (a deliverer claims at most 4 x its concurrency of 10 at a time).
    assert retried_once_or_more >= failing_events - 40, (retried_once_or_more, failing_events)
    print(
        f"{len(expected)} events, {requests} requests ({failed} failed), {before_kill} delivered before the kill, "
        f"{len(redelivered)} delivered twice, {elapsed:.1f} s"
    )


async def test_every_event_is_delivered_through_failures_and_a_killed_worker(
    tmp_path: Path, receiver: Receiver
) -> None:
    await deliver_through_a_crash(tmp_path, receiver, 2000)


@pytest.mark.heavy
async def test_ten_thousand_events_through_failures_and_a_killed_worker(tmp_path: Path, receiver: Receiver) -> None:
    await deliver_through_a_crash(tmp_path, receiver, 10_000)


# -- backoff with jitter, and giving up ----------------------------------------------------------


async def test_retries_back_off_with_jitter_and_stop_at_the_limits(tmp_path: Path, receiver: Receiver) -> None:
    """A receiver that always fails: ``max_attempts`` requests per event, growing and jittered
    waits between them, then ``failed``; with a tiny horizon, retries stop at the horizon."""
    base, attempts, events = 0.2, 4, 20
    worker_settings = {"poll_seconds": 0.02, "batch_size": 500, "backoff_seconds": base, "max_attempts": attempts}
    store = await quick_store(tmp_path, None, tables={"gateway": {"embedded_worker": False}, "worker": worker_settings})
    receiver.fail_rate = 1.0
    kernel = await opened(store)
    try:
        async with api_client(kernel) as client:
            sub_id, receiver.secret = await subscribe(client, store, receiver.url, ["stock.adjusted"])
            await make_events(kernel, events)
            expected = await event_ids(kernel, "stock.adjusted")
            worker = WorkerProcess(tmp_path)
            await worker.start()
            try:

                async def all_failed() -> bool:
                    async with kernel.db.read() as conn:
                        n = await conn.scalar(
                            select(func.count())
                            .select_from(t.webhook_deliveries)
                            .where(t.webhook_deliveries.c.status == "failed")
                        )
                    return n == len(expected)

                await until(all_failed, 120, "given up", worker)
            finally:
                await worker.stop()
            log = await delivery_log(client, store, sub_id)
    finally:
        await kernel.close()

    assert receiver.bad == []
    assert {i: len(h) for i, h in receiver.hits.items()} == dict.fromkeys(expected, attempts)
    assert {(r["status"], r["attempts"], r["last_status_code"]) for r in log} == {("failed", attempts, 500)}
    assert all(r["delivered_at"] is None and r["last_error"].startswith("HTTP 500") for r in log)
    # The wait before retry k is uniform in [0, base * 2**k] (full jitter), plus the polling.
    slack = 1.0  # polling, and a loaded machine
    for k in range(1, attempts):
        waits = [hits[k].at - hits[k - 1].at for hits in receiver.hits.values()]
        ceiling = base * 2**k
        assert max(waits) <= ceiling + slack, (k, waits)
        assert max(waits) - min(waits) > ceiling / 4, f"retry {k}: waits are not spread: {waits}"
    first = statistics.mean(hits[1].at - hits[0].at for hits in receiver.hits.values())
    last = statistics.mean(hits[-1].at - hits[-2].at for hits in receiver.hits.values())
    assert last > first, "the waits do not grow"
    print(json.dumps({"mean wait before retry 1": first, f"before retry {attempts - 1}": last}))


async def test_retries_stop_at_the_horizon(tmp_path: Path, receiver: Receiver) -> None:
    horizon = 3.0  # seconds
    worker_settings = {
        "poll_seconds": 0.02,
        "batch_size": 500,
        "backoff_seconds": 0.05,
        "max_attempts": 1000,
        "retry_horizon_hours": horizon / 3600,
    }
    store = await quick_store(tmp_path, None, tables={"gateway": {"embedded_worker": False}, "worker": worker_settings})
    receiver.fail_rate = 1.0
    kernel = await opened(store)
    try:
        await OutboxWorker(kernel).drain()  # the sample catalog's events, before any subscription
        async with api_client(kernel) as client:
            sub_id, receiver.secret = await subscribe(client, store, receiver.url, ["stock.adjusted"])
            worker = WorkerProcess(tmp_path)
            await worker.start()
            try:
                await worker.running()  # the horizon starts with the events: make them now
                since = await last_seq(kernel)
                made = time.monotonic()
                await make_events(kernel, 10)
                expected = await event_ids(kernel, "stock.adjusted", after=since)

                async def settled() -> bool:
                    log = await delivery_log(client, store, sub_id)
                    return len(log) == len(expected) and all(r["status"] == "failed" for r in log)

                await until(settled, 60, "given up at the horizon", worker)
            finally:
                await worker.stop()
            log = await delivery_log(client, store, sub_id)
    finally:
        await kernel.close()
    assert receiver.bad == []
    assert set(receiver.hits) == expected and {r["event_id"] for r in log} == expected
    # Several attempts, far fewer than max_attempts: the horizon stopped them.
    assert all(r["status"] == "failed" and 2 <= r["attempts"] < 50 for r in log), log
    assert all(len(receiver.hits[r["event_id"]]) == r["attempts"] for r in log)
    last_request = max(h.at for hits in receiver.hits.values() for h in hits)
    assert last_request - made < horizon + 2.0, "requests went on past the horizon"
