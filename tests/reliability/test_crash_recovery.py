"""Crash: kill -9 the gateway during a checkout load, restart `omniretail serve` on the same
database, retry every attempt with its Idempotency-Key and body until it has a final answer.

No committed order is lost (every order in the database is known to a client after the retries),
none is doubled (one order per cart, one per key), and stock and orders reconcile (initial stock =
on hand + units sold; exactly as many orders as units when more buyers than units came). A
request in flight at the kill leaves its key "in flight": retries get 409 until the 30 s lease
runs out, then take the key over (the checkout route finishes an order the dead request had
committed). The kill is timed to fall while a key is in flight (see `kill_in_flight`), and the
test checks that it did interrupt requests and leave such keys, so the recovery paths really ran.

SQLite and PostgreSQL run at the same time in one test, so the 30 s lease is waited out once.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from omniretail.services.clock import FakeClock
from omniretail.storage import tables as t
from tests.conftest import reset_postgres
from tests.integration.gateway_fixtures import Api
from tests.reliability.support import (
    CHANNELS,
    WAREHOUSE,
    Gateway,
    Store,
    bounded,
    channel_keys,
    create_product,
    db_counts,
    idem_key,
    load_client,
    problem_type,
    quick_store,
    stock_of,
)

SKU = "CRASH-1"
UNITS = 50
BUYERS = 80
CONCURRENCY = 16
#: Checkouts answered before the kill.
KILL_AFTER = 20
#: How long a retry keeps trying: the in-flight lease (30 s) and a margin for a loaded machine.
RETRY_FOR = 75.0


@dataclass
class Attempt:
    channel: str
    cart_id: str
    key: str
    body: bytes
    first: httpx.Response | None = None
    final: httpx.Response | None = None
    in_flight_seen: int = 0

    @property
    def path(self) -> str:
        return f"/v1/carts/{self.cart_id}/checkout"


def is_final(r: httpx.Response) -> bool:
    return r.status_code == 201 or (r.status_code == 409 and problem_type(r) == "out-of-stock")


async def kill_in_flight(gateway: Gateway, store: Store, rng: random.Random) -> None:
    """kill -9 at a moment a checkout is in flight: an Idempotency-Key begun and not completed.

    On SQLite a request runs from its key's begin to its completion without giving the event loop
    up, so a kill at a random moment often falls between requests, leaving no key in flight. Instead, the gateway is
    frozen (SIGSTOP), the database is asked whether a key is in flight, and the gateway is killed
    while still frozen if one is, or thawed for a few milliseconds and frozen again if not."""
    ik = t.idempotency_keys
    db = store.database()

    async def in_flight_keys() -> int:
        async with db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(ik).where(ik.c.status == "in_flight")) or 0)

    try:
        for _ in range(500):
            gateway.freeze()
            try:
                in_flight = await asyncio.wait_for(in_flight_keys(), 10)
            except TimeoutError:  # the frozen gateway holds a lock this read needs: try another moment
                in_flight = 0
            if in_flight:
                break
            gateway.thaw()
            await asyncio.sleep(rng.uniform(0.001, 0.01))
    finally:
        gateway.kill()
        await db.dispose()


async def scenario(folder: Path, db_url: str | None) -> None:
    store: Store = await quick_store(folder, db_url, tables={"gateway": {"rate_limit_per_minute": 0}})
    rng = random.Random(8)
    first = Gateway(folder)
    first.spawn()
    second: Gateway | None = None
    try:
        await asyncio.to_thread(first.wait_ready)
        async with load_client(CONCURRENCY, timeout=30) as client:
            client.base_url = httpx.URL(first.base)
            await channel_keys(client, store)
            await create_product(client, store, SKU, UNITS, bases=[first.base])
            attempts = []
            for i in range(BUYERS):
                channel = CHANNELS[i % len(CHANNELS)]
                r = await client.post("/v1/carts", headers=store.h(channel))
                cart_id = r.json()["id"]
                r = await client.post(f"/v1/carts/{cart_id}/lines", json={"sku": SKU}, headers=store.h(channel))
                assert r.status_code == 200, r.text
                body = f'{{"email": "crash{i}@example.com"}}'.encode()
                attempts.append(Attempt(channel, cart_id, idem_key(), body))

            answered = 0
            kill_now = asyncio.Event()

            async def checkout(i: int) -> None:
                nonlocal answered
                a = attempts[i]
                headers = store.h(a.channel, **{"Idempotency-Key": a.key, "Content-Type": "application/json"})
                try:
                    a.first = await client.post(a.path, content=a.body, headers=headers)
                except httpx.TransportError:
                    return  # the gateway died under this request: no answer
                answered += 1
                if answered >= KILL_AFTER:
                    kill_now.set()

            async def killer() -> None:
                await kill_now.wait()
                await kill_in_flight(first, store, rng)

            kill_task = asyncio.create_task(killer())
            await bounded(BUYERS, CONCURRENCY, checkout)
            await kill_task
            interrupted = [a for a in attempts if a.first is None]
            assert interrupted, "the kill interrupted no request: nothing was tested"
            assert all(a.first is None or a.first.status_code < 500 for a in attempts)

            second = Gateway(folder)
            second.spawn()
            await asyncio.to_thread(second.wait_ready)
            client.base_url = httpx.URL(second.base)

            async def settle(i: int) -> None:
                a = attempts[i]
                headers = store.h(a.channel, **{"Idempotency-Key": a.key, "Content-Type": "application/json"})
                delay = 0.5
                deadline = time.monotonic() + RETRY_FOR
                while True:
                    try:
                        r = await client.post(a.path, content=a.body, headers=headers)
                    except httpx.TransportError:
                        r = None
                    if r is not None:
                        assert r.status_code < 500, r.text
                        if is_final(r):
                            a.final = r
                            return
                        assert (r.status_code, problem_type(r)) == (409, "idempotency-in-flight"), r.text
                        a.in_flight_seen += 1
                    assert time.monotonic() < deadline, f"no final answer for {a.cart_id} in {RETRY_FOR:g} s"
                    await asyncio.sleep(delay * (0.5 + rng.random()))  # backoff with jitter
                    delay = min(delay * 2, 4.0)

            await bounded(BUYERS, CONCURRENCY, settle)
            levels = await stock_of(client, store, SKU)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # Answers given before the kill are given again, the same, replayed from the store: the
    # middleware stores an answer before it sends it, so a key whose answer a client saw is never
    # left in flight.
    for a in attempts:
        assert a.final is not None
        if a.first is not None:
            assert (a.final.status_code, a.final.content) == (a.first.status_code, a.first.content)
            assert not a.in_flight_seen and a.final.headers.get("idempotent-replayed") == "true"
    print(
        f"{store.url.split(':')[0]}: {len(interrupted)} interrupted by the kill, "
        f"{sum(a.in_flight_seen > 0 for a in attempts)} left in flight"
    )
    # The recovery paths ran: keys left in flight by the kill were retried (409) and taken over.
    assert sum(a.in_flight_seen > 0 for a in attempts) >= 1
    placed = {a.final.json()["id"]: a for a in attempts if a.final is not None and a.final.status_code == 201}
    out = [a for a in attempts if a.final is not None and a.final.status_code == 409]
    assert len(placed) == UNITS and len(out) == BUYERS - UNITS
    found = await db_counts(store.url, SKU)
    # No lost order: every committed order is known to a client, and nothing else was committed.
    assert sorted(found["order_ids"]) == sorted(placed)
    # No duplicate: one order per cart, the cart of the attempt that was told about it.
    assert all(found["orders"][oid] == a.cart_id for oid, a in placed.items())
    # Stock reconciles: initial = on hand + sold; nothing left held or below zero.
    assert found["on_hand"] + found["sold"] == UNITS and found["sold"] == len(placed)
    assert found["min_on_hand"] >= 0 and found["reserved"] == 0
    assert levels[WAREHOUSE]["on_hand"] == 0
    db = store.database()
    try:
        async with db.read() as conn:
            left = await conn.scalar(
                select(func.count()).select_from(t.idempotency_keys).where(t.idempotency_keys.c.status != "done")
            )
    finally:
        await db.dispose()
    assert left == 0, "keys still in flight after every attempt got its answer"


async def test_kill_9_during_checkouts_loses_and_doubles_nothing(tmp_path: Path, postgres_url: str | None) -> None:
    runs = [scenario(tmp_path / "sqlite", None)]
    if postgres_url is not None:
        await reset_postgres(postgres_url)
        runs.append(scenario(tmp_path / "postgres", postgres_url))
    results = await asyncio.gather(*runs, return_exceptions=True)
    failures = {name: r for name, r in zip(("sqlite", "postgres"), results, strict=False) if r is not None}
    for name, error in failures.items():
        traceback.print_exception(error)
        print(f"^ {name}")
    assert not failures, "; ".join(f"{name}: {error!r}" for name, error in failures.items())


# -- the window between a handler's commit and the stored answer --------------------------------


@pytest.mark.parametrize("operation", ["stock adjustment", "cart line"])
async def test_a_retry_after_a_crash_between_commit_and_stored_answer_applies_once(
    api: Api, clock: FakeClock, operation: str
) -> None:
    """The crash above shows the state is real: an answer was committed (and even sent), the
    process died before the middleware stored it, and the key stayed "in flight". A retry after
    the lease takes the key over and runs the handler again. Checkout finishes the first attempt's
    order (its takeover path); other idempotent POSTs must not apply their change a second time.

    The state a crash leaves is made here exactly (the stored answer reset to in flight) rather
    than by killing a process at the right microsecond."""
    if operation == "stock adjustment":
        path, headers = "/v1/admin/stock/adjustments", api.h("admin")
        body = {"sku": "ESPRESSO", "location_id": "wh", "delta": 10, "reason": "delivery"}
    else:
        cart_id = (await api.client.post("/v1/carts", headers=api.h())).json()["id"]
        path, headers = f"/v1/carts/{cart_id}/lines", api.h()
        body = {"sku": "ESPRESSO", "quantity": 1}

    async def state() -> int:
        if operation == "stock adjustment":
            return sum(level.on_hand for level in await api.kernel.inventory.levels(["ESPRESSO"], ["wh"]))
        return (await api.kernel.carts.get(cart_id)).quantity_of("ESPRESSO")

    before = await state()
    key = {"Idempotency-Key": idem_key()}
    first = await api.client.post(path, json=body, headers={**headers, **key})
    assert first.status_code in (200, 201), first.text
    assert await state() == before + body.get("delta", 1)
    ik = t.idempotency_keys
    async with api.kernel.db.write() as conn:  # the answer was never stored: the process died
        reset = await conn.execute(
            update(ik)
            .where(ik.c.key == key["Idempotency-Key"].strip('"'))
            .values(status="in_flight", response_status=None, response_headers=None, response_body=None)
        )
        assert reset.rowcount == 1
    retry = await api.client.post(path, json=body, headers={**headers, **key})
    assert retry.status_code == 409 and problem_type(retry) == "idempotency-in-flight"
    clock.advance(seconds=31)  # the in-flight lease runs out: the next retry takes the key over
    retry = await api.client.post(path, json=body, headers={**headers, **key})
    # Only checkout can finish an interrupted attempt; here the honest answer is a stored 409
    # "outcome unknown" (look at the resource, retry with a new key), never a second application.
    assert retry.status_code == 409 and problem_type(retry) == "idempotency-outcome-unknown", retry.text
    again = await api.client.post(path, json=body, headers={**headers, **key})
    assert again.status_code == 409 and again.headers.get("idempotent-replayed") == "true"
    assert await state() == before + body.get("delta", 1), f"the {operation} was applied twice"
