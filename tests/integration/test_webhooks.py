"""Outbound webhooks: fan-out per subscription, Standard Webhooks signatures, retries with backoff,
give-up, 410 Gone, filtering and the delivery log, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, insert, select
from standardwebhooks import Webhook, WebhookVerificationError

from omniretail.domain.events import CustomerCreated, decode_event
from omniretail.domain.ids import new_id
from omniretail.domain.order import OrderStatus
from omniretail.services.clock import FakeClock
from omniretail.storage import tables as t
from omniretail.storage.database import Database, normalize_url
from omniretail.webhooks import WebhookDeliverer, WebhookStore, envelope, matches, retry_after_seconds
from omniretail.worker import OutboxWorker
from tests.integration.gateway_fixtures import Api
from tests.integration.helpers import buy, draft

# -- a tiny HTTP/1.1 receiver ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int


@dataclass
class Endpoint:
    secret: str = ""
    #: Answer 500 to this many requests before answering ``status``.
    fail_first: int = 0
    status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: Sleep this long before answering (timeouts).
    delay: float = 0.0


class Receiver:
    """Verifies each request with the reference ``standardwebhooks`` library and records it."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.received: list[Received] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def ids(self, path: str) -> list[str]:
        return [r.headers["webhook-id"] for r in self.at(path) if r.status < 300]

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: serve requests until the client closes
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                endpoint = self.endpoints.get(path, Endpoint())
                try:
                    Webhook(endpoint.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                if endpoint.delay:
                    await asyncio.sleep(endpoint.delay)
                if endpoint.fail_first > 0:
                    endpoint.fail_first -= 1
                    status = 500
                else:
                    status = endpoint.status if verified else 401
                self.received.append(Received(path, headers, body, verified, status))
                reply = b"nope" if status >= 300 else b"ok"
                extra = "".join(f"{k}: {v}\r\n" for k, v in endpoint.extra_headers.items() if status >= 300)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: {len(reply)}\r\n{extra}\r\n".encode() + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class Hooks:
    api: Api
    receiver: Receiver
    clock: FakeClock
    worker: OutboxWorker
    deliverer: WebhookDeliverer
    #: The last event before the test's own (the sample catalog's).
    since: int

    async def subscribe(self, path: str, event_types: list[str], **behaviour: Any) -> str:
        r = await self.api.client.post(
            "/v1/admin/webhooks",
            json={"url": self.receiver.url(path), "event_types": event_types},
            headers=self.api.h("admin"),
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["secret"].startswith("whsec_")
        self.receiver.endpoints[path] = Endpoint(secret=body["secret"], **behaviour)
        return str(body["id"])

    async def deliveries(self, sub_id: str, **params: Any) -> list[dict[str, Any]]:
        r = await self.api.client.get(
            f"/v1/admin/webhooks/{sub_id}/deliveries", params={"limit": 100, **params}, headers=self.api.h("admin")
        )
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def event_ids(self, prefix: str = "") -> list[str]:
        """Ids of the events stored since the fixture started, oldest first."""
        async with self.api.kernel.db.read() as conn:
            rows = await conn.execute(
                select(t.events.c.id, t.events.c.type).where(t.events.c.seq > self.since).order_by(t.events.c.seq)
            )
            return [i for i, typ in rows if typ.startswith(prefix)]


@pytest.fixture
async def hooks(api: Api, clock: FakeClock) -> AsyncIterator[Hooks]:
    receiver = Receiver()
    await receiver.start()
    worker = OutboxWorker(api.kernel)
    await worker.drain()  # the sample catalog's events go out before any subscription exists
    async with api.kernel.db.read() as conn:
        since = await conn.scalar(select(func.max(t.events.c.seq))) or 0
    try:
        yield Hooks(api, receiver, clock, worker, WebhookDeliverer(api.kernel, timeout_seconds=2.0), since)
    finally:
        await receiver.stop()


async def activity(kernel: Any, sku: str) -> None:
    """A product, stock, a checkout and a status change: product.*, stock.*, cart.*, order.* events."""
    await kernel.catalog.create(draft(sku))
    await kernel.inventory.adjust(sku, "wh", 5)
    order = await buy(kernel, {sku: 1})
    await kernel.orders.transition(order.id, OrderStatus.PAID, channel="admin", actor="staff:test")


def delays(rows: list[dict[str, Any]], now: datetime) -> list[float]:
    return [(datetime.fromisoformat(r["next_attempt_at"]) - now).total_seconds() for r in rows]


class MaxRandom(random.Random):
    """Jitter pinned to its ceiling: the backoff's growth without the noise."""

    def uniform(self, a: float, b: float) -> float:
        return b


# -- tests -------------------------------------------------------------------------------------


def test_type_prefix_and_wildcard_matching() -> None:
    assert matches(["*"], "order.placed")
    assert matches(["order"], "order.placed") and matches(["order.*"], "order.status_changed")
    assert matches(["order.placed"], "order.placed")
    assert not matches(["order.placed"], "order.status_changed")
    assert not matches(["order"], "orders.placed") and not matches(["ord"], "order.placed")
    assert matches(["cart", "order.placed"], "order.placed") and not matches([], "order.placed")


def test_retry_after_is_read_as_seconds_or_http_date() -> None:
    now = datetime.fromisoformat("2026-01-01T12:00:00+00:00")
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60.0
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None


async def test_every_event_reaches_each_matching_subscription_once_signed(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    everything = await hooks.subscribe("/all", ["*"])
    orders = await hooks.subscribe("/orders", ["order"])
    placed = await hooks.subscribe("/placed", ["order.placed"])
    carts = await hooks.subscribe("/carts", ["cart.*", "stock.adjusted"])
    await activity(kernel, "WH-1")
    await activity(kernel, "WH-2")
    assert await hooks.worker.drain() > 0
    assert hooks.receiver.received == []  # fan-out only queues
    assert await hooks.deliverer.drain() > 0
    assert await hooks.deliverer.drain() == 0

    all_ids = await hooks.event_ids()
    assert hooks.receiver.ids("/all") == all_ids  # once each, in order (one batch, sent by seq)
    assert sorted(hooks.receiver.ids("/orders")) == sorted(await hooks.event_ids("order."))
    assert sorted(hooks.receiver.ids("/placed")) == sorted(await hooks.event_ids("order.placed"))
    assert len(hooks.receiver.ids("/placed")) == 2
    want = set(await hooks.event_ids("cart.")) | set(await hooks.event_ids("stock.adjusted"))
    assert set(hooks.receiver.ids("/carts")) == want and len(hooks.receiver.ids("/carts")) == len(want)
    assert all(r.verified and r.status == 200 for r in hooks.receiver.received)

    # The body is Standard Webhooks' envelope around the stored event; webhook-id is the event id.
    first = hooks.receiver.at("/placed")[0]
    body = json.loads(first.body)
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "order.placed" and body["data"]["id"] == first.headers["webhook-id"]
    assert body["data"]["number"] and body["data"]["currency"] == "EUR"
    assert body["timestamp"].endswith("Z")
    assert first.headers["content-type"] == "application/json"
    assert first.headers["webhook-signature"].startswith("v1,")
    # Control: the same headers over a tampered body, or another secret, do not verify.
    secret = hooks.receiver.endpoints["/placed"].secret
    tampered = first.body.replace(b'"currency":"EUR"', b'"currency":"USD"')
    assert tampered != first.body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(hooks.receiver.endpoints["/all"].secret).verify(first.body, first.headers)
    assert Webhook(secret).verify(first.body, first.headers) == body

    # The delivery log says the same.
    for sub_id, path in ((everything, "/all"), (orders, "/orders"), (placed, "/placed"), (carts, "/carts")):
        log = await hooks.deliveries(sub_id)
        assert sorted(d["event_id"] for d in log) == sorted(hooks.receiver.ids(path))
        assert {d["status"] for d in log} == {"delivered"}
        assert all(d["attempts"] == 1 and d["last_status_code"] == 200 and d["delivered_at"] for d in log)
        assert all(d["next_attempt_at"] is None and d["last_error"] is None for d in log)


async def test_fan_out_happens_once_per_event_even_when_dispatch_is_retried(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    await hooks.subscribe("/all", ["*"])
    await kernel.catalog.create(draft("WH-3"))
    async with kernel.db.read() as conn:
        payload, typ = (
            await conn.execute(select(t.events.c.payload, t.events.c.type).order_by(t.events.c.seq.desc()).limit(1))
        ).one()
    event = decode_event(payload, typ)
    store = WebhookStore(kernel.db)
    assert await store.fan_out(event, hooks.clock()) == 1
    assert await store.fan_out(event, hooks.clock()) == 0  # a retried outbox row
    await hooks.worker.dispatch(event)  # and the worker's own dispatch
    await hooks.worker.drain()
    async with kernel.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(t.webhook_deliveries)) == 1
    await hooks.deliverer.drain()
    await hooks.deliverer.drain()
    assert hooks.receiver.ids("/all") == [event.id]
    # An event that is not stored (no sequence number) has nothing to key a delivery on.
    ghost = CustomerCreated(id=new_id("evt"), occurred_at=hooks.clock(), channel="system")
    assert await store.fan_out(ghost, hooks.clock()) == 0


async def test_failures_are_retried_with_growing_jittered_backoff(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    base = kernel.config.worker.backoff_seconds
    paths = [f"/flaky/{i}" for i in range(8)]
    subs = [await hooks.subscribe(p, ["product"], fail_first=2) for p in paths]
    await kernel.catalog.create(draft("WH-4"))
    await hooks.worker.drain()

    jittered = WebhookDeliverer(kernel, rng=random.Random(7), timeout_seconds=2.0)
    assert await jittered.run_once() == 8
    now = hooks.clock()
    rows = [(await hooks.deliveries(s))[0] for s in subs]
    assert all(r["status"] == "pending" and r["attempts"] == 1 and r["last_status_code"] == 500 for r in rows)
    assert all(r["last_error"] == "HTTP 500: nope" and r["delivered_at"] is None for r in rows)
    first = delays(rows, now)
    assert all(0 <= d <= base * 2 for d in first)  # full jitter under the first ceiling
    assert len(set(first)) == len(first)  # jittered: no two the same
    assert await jittered.run_once() == 0  # nothing is due before its time

    hooks.clock.advance(seconds=base * 2)
    assert await jittered.run_once() == 8
    now = hooks.clock()
    second = delays([(await hooks.deliveries(s))[0] for s in subs], now)
    assert all(0 <= d <= base * 4 for d in second) and len(set(second)) == len(second)

    hooks.clock.advance(seconds=base * 4)
    assert await jittered.run_once() == 8
    for s, p in zip(subs, paths, strict=True):
        row = (await hooks.deliveries(s))[0]
        assert row["status"] == "delivered" and row["attempts"] == 3 and row["last_status_code"] == 200
        assert row["last_error"] is None and row["next_attempt_at"] is None
        assert datetime.fromisoformat(row["delivered_at"]) == hooks.clock()
        # Three requests, one webhook-id: the receiver deduplicates to one delivery.
        assert len(hooks.receiver.at(p)) == 3 and len({r.headers["webhook-id"] for r in hooks.receiver.at(p)}) == 1
        assert all(r.verified for r in hooks.receiver.at(p))


async def test_the_backoff_ceiling_doubles_with_each_attempt(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    base = kernel.config.worker.backoff_seconds
    # With the jitter pinned to its ceiling, the wait doubles each attempt.
    sub = await hooks.subscribe("/growing", ["product"], fail_first=4)
    await kernel.catalog.create(draft("WH-5"))
    await hooks.worker.drain()
    pinned = WebhookDeliverer(kernel, rng=MaxRandom(), timeout_seconds=2.0)
    waits = []
    for _ in range(4):
        assert await pinned.run_once() == 1
        row = (await hooks.deliveries(sub))[0]
        (wait,) = delays([row], hooks.clock())
        waits.append(wait)
        hooks.clock.advance(seconds=wait)
    assert waits == [base * 2, base * 4, base * 8, base * 16]
    assert await pinned.run_once() == 1
    assert (await hooks.deliveries(sub))[0]["status"] == "delivered"


async def test_gives_up_after_max_attempts_and_past_the_horizon(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    settings = kernel.config.worker
    sub = await hooks.subscribe("/down", ["product.changed"], status=503)
    await kernel.catalog.create(draft("WH-6"))
    await hooks.worker.drain()
    for attempt in range(1, settings.max_attempts + 1):
        assert await hooks.deliverer.run_once() == 1
        row = (await hooks.deliveries(sub))[0]
        assert row["attempts"] == attempt and row["last_status_code"] == 503
        hooks.clock.advance(hours=1)  # the backoff is capped at one hour
    assert row["status"] == "failed" and row["next_attempt_at"] is None
    assert await hooks.deliverer.run_once() == 0
    assert len(hooks.receiver.at("/down")) == settings.max_attempts
    assert (await hooks.deliveries(sub, status="failed"))[0]["id"] == row["id"]
    assert await hooks.deliveries(sub, status="pending") == []

    # Past retry_horizon_hours after the event, the next failure is the last one.
    sub2 = await hooks.subscribe("/late", ["stock"], status=500)
    await kernel.inventory.adjust("WH-6", "wh", 1)
    await hooks.worker.drain()
    hooks.clock.advance(hours=settings.retry_horizon_hours + 1)
    assert await hooks.deliverer.run_once() == 1
    row = (await hooks.deliveries(sub2))[0]
    assert row["status"] == "failed" and row["attempts"] == 1 and row["last_status_code"] == 500


async def test_retry_after_is_honoured(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    sub = await hooks.subscribe("/busy", ["product"], status=429, extra_headers={"Retry-After": "120"})
    await kernel.catalog.create(draft("WH-8"))
    await hooks.worker.drain()
    assert await hooks.deliverer.run_once() == 1
    row = (await hooks.deliveries(sub))[0]
    assert row["status"] == "pending" and row["last_status_code"] == 429
    assert datetime.fromisoformat(row["next_attempt_at"]) == hooks.clock() + timedelta(seconds=120)
    hooks.clock.advance(seconds=119)
    assert await hooks.deliverer.run_once() == 0
    hooks.receiver.endpoints["/busy"].status = 200
    hooks.clock.advance(seconds=1)
    assert await hooks.deliverer.run_once() == 1
    assert (await hooks.deliveries(sub))[0]["status"] == "delivered"


async def test_410_gone_disables_the_subscription(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    gone = await hooks.subscribe("/gone", ["product"], status=410)
    kept = await hooks.subscribe("/kept", ["product"])
    await kernel.catalog.create(draft("WH-9"))
    await kernel.catalog.create(draft("WH-10"))
    await hooks.worker.drain()
    one = WebhookDeliverer(kernel, concurrency=1, timeout_seconds=2.0, lease_seconds=60)
    one.batch_size = 1
    while await one.run_once():
        pass
    assert len(hooks.receiver.at("/gone")) == 1  # the second delivery was not attempted
    log = await hooks.deliveries(gone)
    assert [d["status"] for d in log] == ["failed", "failed"]
    assert sorted((d["attempts"], d["last_status_code"]) for d in log) == [(0, None), (1, 410)]
    assert any("410" in (d["last_error"] or "") for d in log)
    r = await hooks.api.client.get("/v1/admin/webhooks", headers=hooks.api.h("admin"))
    assert {w["id"]: w["active"] for w in r.json()} == {gone: False, kept: True}
    assert len(hooks.receiver.ids("/kept")) == 2

    await kernel.catalog.create(draft("WH-11"))  # later events skip the disabled subscription
    await hooks.worker.drain()
    await hooks.deliverer.drain()
    assert len(await hooks.deliveries(gone)) == 2 and len(hooks.receiver.ids("/kept")) == 3


async def test_timeouts_and_refused_connections_are_retried(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    slow = await hooks.subscribe("/slow", ["product"], delay=1.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    r = await hooks.api.client.post(
        "/v1/admin/webhooks",
        json={"url": f"http://127.0.0.1:{closed_port}/x", "event_types": ["product"]},
        headers=hooks.api.h("admin"),
    )
    refused = r.json()["id"]
    await kernel.catalog.create(draft("WH-12"))
    await hooks.worker.drain()
    quick = WebhookDeliverer(kernel, timeout_seconds=0.3)
    assert await quick.run_once() == 2
    for sub, words in ((slow, "timed out"), (refused, "ConnectError")):
        row = (await hooks.deliveries(sub))[0]
        assert row["status"] == "pending" and row["attempts"] == 1 and row["last_status_code"] is None
        assert words in row["last_error"]
        assert datetime.fromisoformat(row["next_attempt_at"]) > hooks.clock() - timedelta(seconds=1)


async def test_an_inactive_subscription_gets_nothing_queued_sent(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    sub = await hooks.subscribe("/stopped", ["*"])
    await kernel.catalog.create(draft("WH-13"))
    await hooks.worker.drain()
    r = await hooks.api.client.delete(f"/v1/admin/webhooks/{sub}", headers=hooks.api.h("admin"))
    assert r.status_code == 204
    assert await hooks.deliverer.drain() == 1
    assert hooks.receiver.received == []
    (row,) = await hooks.deliveries(sub)
    assert row["status"] == "failed" and row["attempts"] == 0 and "no longer active" in row["last_error"]


async def test_concurrent_deliverers_send_each_delivery_once(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    for i in range(6):
        await hooks.subscribe(f"/c/{i}", ["*"])
    for i in range(3):
        await kernel.catalog.create(draft(f"WH-C{i}"))
    await hooks.worker.drain()
    deliverers = [WebhookDeliverer(kernel, concurrency=3, timeout_seconds=2.0) for _ in range(3)]
    counts = await asyncio.gather(*(d.drain() for d in deliverers))
    assert sum(counts) == 18
    assert len(hooks.receiver.received) == 18
    for i in range(6):
        assert len(hooks.receiver.ids(f"/c/{i}")) == len(set(hooks.receiver.ids(f"/c/{i}"))) == 3


async def test_a_lost_lease_does_not_overwrite_the_new_holder(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    await hooks.subscribe("/lease", ["product"])
    await kernel.catalog.create(draft("WH-14"))
    await hooks.worker.drain()
    store = WebhookStore(kernel.db)
    (claimed,) = await store.claim(hooks.clock(), limit=10, lease_seconds=30)
    assert await store.claim(hooks.clock(), limit=10, lease_seconds=30) == []  # leased
    hooks.clock.advance(seconds=31)
    (again,) = await store.claim(hooks.clock(), limit=10, lease_seconds=30)
    assert again.id == claimed.id and again.lease != claimed.lease
    assert not await store.settle(claimed, status="delivered", attempts=1, status_code=200, error=None)
    assert await store.settle(again, status="delivered", attempts=1, status_code=200, error=None)


async def test_the_delivery_log_pages_and_validates(hooks: Hooks) -> None:
    kernel = hooks.api.kernel
    sub = await hooks.subscribe("/log", ["product.changed"])
    for i in range(5):
        await kernel.catalog.create(draft(f"WH-L{i}"))
    await hooks.worker.drain()
    await hooks.deliverer.drain()
    admin = hooks.api.h("admin")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await hooks.api.client.get(f"/v1/admin/webhooks/{sub}/deliveries", params=params, headers=admin)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen += [d["event_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == list(reversed(await hooks.event_ids("product.changed")))  # newest first
    item = (await hooks.deliveries(sub))[0]
    assert set(item) == {
        "id",
        "event_id",
        "event_type",
        "occurred_at",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    }
    assert item["event_type"] == "product.changed"
    for bad, code in (({"limit": 101}, 400), ({"cursor": "!!"}, 400), ({"status": "lost"}, 400)):
        r = await hooks.api.client.get(f"/v1/admin/webhooks/{sub}/deliveries", params=bad, headers=admin)
        assert r.status_code == code, (bad, r.text)
    r = await hooks.api.client.get("/v1/admin/webhooks/whk_nope/deliveries", headers=admin)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await hooks.api.client.get(f"/v1/admin/webhooks/{sub}/deliveries", headers=hooks.api.h("webshop"))
    assert r.status_code in (401, 403)
    r = await hooks.api.client.get("/schema/openapi.json")
    assert "adminListWebhookDeliveries" in r.text


def test_the_envelope_is_stable_across_attempts() -> None:
    at = datetime.fromisoformat("2026-01-01T12:00:00+00:00")
    payload = msgspec.json.encode({"type": "x.y", "id": "evt_1"})
    one = envelope("x.y", at, payload)
    assert one == envelope("x.y", at, payload)
    assert json.loads(one) == {
        "type": "x.y",
        "timestamp": "2026-01-01T12:00:00Z",
        "data": {"type": "x.y", "id": "evt_1"},
    }


async def test_embedded_gateway_worker_delivers(hooks: Hooks) -> None:
    """The deliverer's run loop (as the gateway and ``omniretail worker`` run it) sends and stops."""
    kernel = hooks.api.kernel
    await hooks.subscribe("/loop", ["product"])
    await kernel.catalog.create(draft("WH-15"))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(OutboxWorker(kernel).run(stop)), asyncio.create_task(hooks.deliverer.run(stop))]
    try:
        for _ in range(100):
            if hooks.receiver.ids("/loop"):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert len(hooks.receiver.ids("/loop")) == 1


async def test_410_voids_deliveries_leased_by_another_deliverer(hooks: Hooks) -> None:
    """Disabling on 410 also voids deliveries another deliverer holds a lease on."""
    kernel = hooks.api.kernel
    sub = await hooks.subscribe("/race", ["product"], status=410)
    await kernel.catalog.create(draft("WH-16"))
    await kernel.catalog.create(draft("WH-17"))
    await hooks.worker.drain()
    store = WebhookStore(kernel.db)
    first, second = await store.claim(hooks.clock(), limit=10, lease_seconds=30)
    assert await store.settle(first, status="failed", attempts=1, status_code=410, error="x", disable_subscription=True)
    assert not await store.settle(second, status="delivered", attempts=1, status_code=200, error=None)
    async with kernel.db.read() as conn:
        statuses = (
            await conn.scalars(
                select(t.webhook_deliveries.c.status).where(t.webhook_deliveries.c.subscription_id == sub)
            )
        ).all()
        active = await conn.scalar(select(t.webhook_subscriptions.c.active).where(t.webhook_subscriptions.c.id == sub))
    assert statuses == ["failed", "failed"] and active is False


async def test_worker_once_also_sends_due_webhooks(tmp_path: Path) -> None:
    """``omniretail worker --once`` fans out and sends what is due, then exits."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    async def omni(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "omniretail",
            *args,
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, out.decode()

    code, out = await omni("init")
    assert code == 0, out
    receiver = Receiver()
    await receiver.start()
    try:
        secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
        receiver.endpoints["/cli"] = Endpoint(secret=secret)
        db = Database(normalize_url(f"sqlite:///{tmp_path / 'omniretail.db'}"))
        async with db.write() as conn:
            await conn.execute(
                insert(t.webhook_subscriptions).values(
                    id=new_id("whk"),
                    url=receiver.url("/cli"),
                    event_types="product",
                    secret=secret,
                    active=True,
                    created_at=datetime.now(UTC),
                )
            )
            products = await conn.scalar(
                select(func.count()).select_from(t.events).where(t.events.c.type == "product.changed")
            )
        await db.dispose()
        code, out = await omni("worker", "--once")
        assert code == 0, out
        assert products and f"sent {products} webhook delivery attempt(s)" in out
        assert len(receiver.ids("/cli")) == products and all(r.verified for r in receiver.received)
    finally:
        await receiver.stop()


async def test_the_verification_example_in_the_docs_works(hooks: Hooks) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Verifying in Python") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```", section.index("```python"))]
    await hooks.subscribe("/doc", ["product.changed"])
    await hooks.api.kernel.catalog.create(draft("WH-DOC"))
    await hooks.worker.drain()
    await hooks.deliverer.drain()
    (request,) = hooks.receiver.at("/doc")
    enqueued: list[tuple[str, dict[str, Any]]] = []
    namespace: dict[str, Any] = {"enqueue": lambda typ, data: enqueued.append((typ, data))}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)
    namespace["WEBHOOK_SECRET"] = hooks.receiver.endpoints["/doc"].secret
    receive = namespace["receive"]
    assert receive(request.body, request.headers) == 204
    assert receive(request.body, request.headers) == 200  # the same webhook-id again
    assert receive(request.body + b" ", request.headers) == 400
    assert enqueued == [("product.changed", json.loads(request.body)["data"])]
