"""Idempotency storm: 100 concurrent checkouts of one cart with ONE Idempotency-Key make exactly one
order. Every answer is the identical 201 (the original or a replay) or a 409 "in flight"; a retry
after the storm replays the same 201.

Without the idempotency layer the same storm gives one 201 and 99 ``cart-closed`` conflicts, and
the retry after it a 409 rather than the order: the assertions below fail on that, and on any
second order, a different body, a 5xx, or a storm that never overlapped (no 409 at all).
Run in-process (the ``api`` fixture) and against a served gateway, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from omniretail.storage import tables as t
from tests.integration.gateway_fixtures import Api
from tests.reliability.support import channel_keys, gateways, idem_key, problem_type, quick_store, stock_of

STORM = 100


class Peak:
    """How many storm requests were in flight at once, seen from the client."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0


async def storm(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, peak: Peak | None = None
) -> list[httpx.Response]:
    gauge = peak or Peak()

    async def one() -> httpx.Response:
        gauge.now += 1
        gauge.peak = max(gauge.peak, gauge.now)
        try:
            return await client.post(url, content=body, headers=headers)
        finally:
            gauge.now -= 1

    return list(await asyncio.gather(*(one() for _ in range(STORM))))


def check_storm(
    responses: list[httpx.Response], after: httpx.Response, *, require_overlap: bool = True
) -> dict[str, object]:
    """The storm's answers are one order's 201 (once original, then replays) or 409 in flight."""
    created = [r for r in responses if r.status_code == 201]
    in_flight = [r for r in responses if r.status_code == 409]
    others = sorted({(r.status_code, problem_type(r)) for r in responses if r.status_code not in (201, 409)})
    assert not others, f"unexpected answers in the storm: {others}"
    assert {problem_type(r) for r in in_flight} <= {"idempotency-in-flight"}, {r.text for r in in_flight}
    assert all(r.headers.get("retry-after") == "1" for r in in_flight)
    assert created, "no 201 at all"
    if require_overlap:
        assert in_flight, "the storm never overlapped (no 409 in flight): the test proved nothing"
    assert len({r.content for r in created}) == 1, "different bodies for one Idempotency-Key"
    originals = [r for r in created if r.headers.get("idempotent-replayed") != "true"]
    assert len(originals) == 1, f"{len(originals)} requests ran the checkout"
    # After the storm: the same 201, replayed.
    assert after.status_code == 201, after.text
    assert after.content == created[0].content and after.headers["idempotent-replayed"] == "true"
    order: dict[str, object] = json.loads(after.content)
    order["_overlapped"] = bool(in_flight)
    return order


async def test_idempotency_storm_in_process(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = api.kernel
    r = await api.client.post("/v1/carts", headers=api.h())
    cart_id = r.json()["id"]
    r = await api.client.post(f"/v1/carts/{cart_id}/lines", json={"sku": "ESPRESSO", "quantity": 2}, headers=api.h())
    assert r.status_code == 200, r.text
    before = sum(level.on_hand for level in await kernel.inventory.levels(["ESPRESSO"]))
    headers = api.h(**{"Idempotency-Key": idem_key(), "Content-Type": "application/json"})
    body = b'{"email": "storm@example.com"}'
    url = f"/v1/carts/{cart_id}/checkout"
    if kernel.db.is_sqlite:
        # On SQLite a checkout never yields the event loop (statements run inline), and in-process
        # the client hands each request straight to the app: the storm would run one request after
        # another. A checkout that takes a moment, as one calling a payment provider does, lets
        # the others arrive while it is in flight.
        checkout = kernel.orders.checkout

        async def slow_checkout(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.005)
            return await checkout(*args, **kwargs)

        monkeypatch.setattr(kernel.orders, "checkout", slow_checkout)
    responses = await storm(api.client, url, headers, body)
    order = check_storm(responses, await api.client.post(url, content=body, headers=headers))
    async with kernel.db.read() as conn:
        orders = (await conn.scalars(select(t.orders.c.id).where(t.orders.c.cart_id == cart_id))).all()
        keys = await conn.scalar(select(func.count()).select_from(t.idempotency_keys))
    assert orders == [order["id"]]
    assert keys == 1  # one stored response, no in-flight leftovers
    after = sum(level.on_hand for level in await kernel.inventory.levels(["ESPRESSO"]))
    assert before - after == 2  # the stock was taken once


async def test_idempotency_storm_served(tmp_path: Path, db_url: str, backend: str) -> None:
    store = await quick_store(
        tmp_path, db_url if backend == "postgres" else None, tables={"gateway": {"rate_limit_per_minute": 0}}
    )
    limits = httpx.Limits(max_connections=STORM + 10, max_keepalive_connections=STORM + 10)
    with gateways(tmp_path) as (gateway,):
        async with httpx.AsyncClient(base_url=gateway.base, timeout=60, limits=limits) as client:
            await channel_keys(client, store, ["kiosk"])
            before = (await stock_of(client, store, "CROISSANT"))["store-downtown"]["on_hand"]
            orders: list[dict[str, object]] = []
            peak = Peak()
            # Open the connections first, so the storm's requests leave together.
            await asyncio.gather(*(client.get("/health") for _ in range(STORM)))
            # A served storm on a loaded machine may serialise by chance (a checkout takes a few
            # ms): each storm is checked in full, and up to eight run until one of them did
            # overlap (else the test proved nothing).
            for attempt in range(8):
                r = await client.post("/v1/carts", headers=store.h("kiosk"))
                cart_id = r.json()["id"]
                r = await client.post(
                    f"/v1/carts/{cart_id}/lines", json={"sku": "CROISSANT", "quantity": 3}, headers=store.h("kiosk")
                )
                assert r.status_code == 200, r.text
                headers = store.h("kiosk", **{"Idempotency-Key": idem_key(), "Content-Type": "application/json"})
                body = f'{{"email": "served-storm-{attempt}@example.com"}}'.encode()
                url = f"/v1/carts/{cart_id}/checkout"
                responses = await storm(client, url, headers, body, peak)
                orders.append(
                    check_storm(responses, await client.post(url, content=body, headers=headers), require_overlap=False)
                )
                if orders[-1]["_overlapped"]:
                    break
            listed = await client.get("/v1/admin/orders", params={"limit": 100}, headers=store.h())
            after = (await stock_of(client, store, "CROISSANT"))["store-downtown"]["on_hand"]
    # Not vacuous: on PostgreSQL a storm overlaps in the server (some answers are 409 in flight).
    # On SQLite one process runs a checkout without ever yielding the event loop (statements run
    # inline), so the server answers the storm one request after another: the first runs the
    # checkout, the rest replay it. There the proof of a storm is that the client had them all
    # in flight together.
    if backend == "postgres":
        assert any(o["_overlapped"] for o in orders), "no storm overlapped (no 409 in flight): the test proved nothing"
    else:
        assert any(o["_overlapped"] for o in orders) or peak.peak >= STORM // 2, f"only {peak.peak} requests at once"
    assert sorted(o["id"] for o in listed.json()["items"]) == sorted(str(o["id"]) for o in orders)  # one each
    assert before - after == 3 * len(orders)  # the kiosk sells from its own store first: taken once per storm
