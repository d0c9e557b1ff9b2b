"""Attacks on a served gateway (`omniretail serve`), each checking the refusal and that nothing was
stored (rows counted in the database before and after):

* another customer's cart, order, order events and timeline: 404, exactly like an unknown id;
* a channel's key on another channel's routes (every protected ``/channels/<name>/`` operation in
  the OpenAPI document) and a storefront key on every admin operation: 403;
* a client sending a price or a total: 422 naming the field;
* signed webhooks tampered with, signed with another secret, stale, from the future or replayed:
  401 (marketplace: Standard Webhooks, signed with the ``standardwebhooks`` library; social:
  ``X-Hub-Signature-256``); a replay inside the freshness window is answered as a duplicate and
  processed once;
* a body over ``gateway.max_body_bytes``: 413; a page size over the limit on every list: 400;
  more than ``gateway.rate_limit_per_minute`` requests: 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from omniretail.storage import tables as t
from tests.conftest import BACKENDS, reset_postgres
from tests.reliability.support import Gateway, Store, channel_keys, idem_key, problem_type, quick_store

MP_SECRET = "whsec_" + base64.b64encode(b"reliability-marketplace-secret!!").decode()
META_SECRET = "reliability-meta-app-secret"
MAX_BODY = 4096
#: High enough for the attacks below (counted per key, per process), low enough to reach.
RATE_LIMIT = 300
#: Tables an attack must leave as they were.
COUNTED = (
    t.carts,
    t.cart_lines,
    t.orders,
    t.order_lines,
    t.customers,
    t.identities,
    t.events,
    t.inbound_deliveries,
    t.reservations,
    t.api_keys,
    t.webhook_subscriptions,
)


@dataclass
class Served:
    store: Store
    base: str
    spec: dict[str, Any]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=30)

    async def counts(self) -> dict[str, int]:
        db = self.store.database()
        try:
            async with db.read() as conn:
                counts = {
                    table.name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
                    for table in COUNTED
                }
                stock = await conn.scalar(select(func.sum(t.stock_levels.c.on_hand)))
        finally:
            await db.dispose()
        return {**counts, "units on hand": int(stock or 0)}


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One gateway per backend for the module, with the marketplace and social secrets set."""
    folder = tmp_path_factory.mktemp(f"security-{request.param}")
    db_url = None
    if request.param == "postgres":
        db_url = request.getfixturevalue("postgres_url")
        asyncio.run(reset_postgres(db_url))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELIABILITY_MP_SECRET", MP_SECRET)
        mp.setenv("RELIABILITY_META_SECRET", META_SECRET)
        store = asyncio.run(
            quick_store(
                folder,
                db_url,
                tables={
                    "gateway": {
                        "rate_limit_per_minute": RATE_LIMIT,
                        "max_body_bytes": MAX_BODY,
                        "embedded_worker": False,
                    }
                },
                channels={
                    "marketplace": {"webhook_secret": "env:RELIABILITY_MP_SECRET"},
                    "social": {"app_secret": "env:RELIABILITY_META_SECRET"},
                },
            )
        )
        gateway = Gateway(folder)
        gateway.spawn()
        try:
            gateway.wait_ready()
            spec = httpx.get(f"{gateway.base}/schema/openapi.json", timeout=30).json()
            yield Served(store, gateway.base, spec)
        finally:
            gateway.stop()


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served.client() as c:
        if not served.store.keys:
            await channel_keys(c, served.store)
        yield c


def assert_problem(r: httpx.Response, status: int, *, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def operations(spec: dict[str, Any], prefix: str) -> list[tuple[str, str, str]]:
    """(method, concrete path, operationId) of every operation under ``prefix``."""
    found = []
    for path, ops in spec["paths"].items():
        if not path.startswith(prefix):
            continue
        concrete = path
        while "{" in concrete:
            start = concrete.index("{")
            concrete = concrete[:start] + "x" + concrete[concrete.index("}", start) + 1 :]
        for method, op in ops.items():
            if method in {"get", "post", "put", "delete", "patch"}:
                found.append((method.upper(), concrete, op.get("operationId", "")))
    return found


async def sign_up(client: httpx.AsyncClient, served: Served, email: str, channel: str) -> str:
    r = await client.post(
        "/v1/customers", json={"email": email, "password": "correct horse battery"}, headers=served.store.h(channel)
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


# -- other people's things -----------------------------------------------------------------------


async def test_another_customers_cart_order_and_timeline_are_404(served: Served, client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    ana = await sign_up(client, served, f"ana-{tag}@example.com", "webshop")
    bob = await sign_up(client, served, f"bob-{tag}@example.com", "kiosk")
    as_ana = served.store.h("webshop", **{"Customer-Token": ana})
    as_bob = served.store.h("kiosk", **{"Customer-Token": bob})
    cart = (await client.post("/v1/carts", headers=as_ana)).json()["id"]
    r = await client.post(f"/v1/carts/{cart}/lines", json={"sku": "ESPRESSO", "quantity": 1}, headers=as_ana)
    assert r.status_code == 200, r.text
    open_cart = (await client.post("/v1/carts", headers=as_ana)).json()["id"]
    await client.post(f"/v1/carts/{open_cart}/lines", json={"sku": "CROISSANT"}, headers=as_ana)
    r = await client.post(f"/v1/carts/{cart}/checkout", json={}, headers={**as_ana, "Idempotency-Key": idem_key()})
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    assert (await client.get(f"/v1/orders/{order}", headers=as_ana)).status_code == 200  # control
    before = await served.counts()

    unknown = await client.get("/v1/orders/ord_doesnotexist", headers=as_bob)
    for who in (as_bob, served.store.h("voice")):  # another customer, and a caller signed in as nobody
        for path in (f"/v1/orders/{order}", f"/v1/orders/{order}/events", f"/v1/carts/{open_cart}"):
            body = assert_problem(await client.get(path, headers=who), 404)
            assert (body["type"], body["title"]) == (unknown.json()["type"], unknown.json()["title"])
        writes = [
            ("POST", f"/v1/carts/{open_cart}/lines", {"sku": "ESPRESSO"}),
            ("PUT", f"/v1/carts/{open_cart}/lines/CROISSANT", {"quantity": 5}),
            ("DELETE", f"/v1/carts/{open_cart}/lines/CROISSANT", None),
            ("PUT", f"/v1/carts/{open_cart}/coupon", {"code": "FREE"}),
            ("POST", f"/v1/carts/{open_cart}/handoff", {}),
            ("POST", f"/v1/carts/{open_cart}/checkout", {"email": "thief@example.com"}),
            (
                "POST",
                f"/v1/carts/{open_cart}/checkout",
                {"email": "thief@example.com", "payment": {"provider": "pickup"}},
            ),
        ]
        for method, path, data in writes:
            r = await client.request(method, path, json=data, headers={**who, "Idempotency-Key": idem_key()})
            assert_problem(r, 404)
    r = await client.post(f"/v1/carts/{open_cart}/customer", headers=as_bob)
    assert_problem(r, 404)
    # Bob's own timeline shows none of Ana's doings; the admin timeline is not for storefront keys.
    timeline = (await client.get("/v1/customers/me/timeline", params={"limit": 100}, headers=as_bob)).json()
    assert {e.get("data", {}).get("cart_id") for e in timeline["items"]}.isdisjoint({cart, open_cart})
    assert "order.placed" not in {e["type"] for e in timeline["items"]}
    customer = (await client.get("/v1/customers/me", headers=as_ana)).json()["id"]
    assert_problem(await client.get(f"/v1/admin/customers/{customer}/timeline", headers=as_bob), 403)
    assert_problem(await client.get("/v1/customers/me", headers={**as_bob, "Customer-Token": "oms_forged"}), 401)
    assert await served.counts() == before
    lines = (await client.get(f"/v1/carts/{open_cart}", headers=as_ana)).json()["lines"]
    assert [(x["sku"], x["quantity"]) for x in lines] == [("CROISSANT", 1)]


# -- keys on routes that are not theirs ------------------------------------------------------------


async def test_a_channel_key_on_another_channels_routes_is_403(served: Served, client: httpx.AsyncClient) -> None:
    before = await served.counts()
    checked = 0
    for method, path, op_id in operations(served.spec, "/channels/"):
        owner = path.split("/")[2]
        stranger = "voice" if owner != "voice" else "webshop"
        data = {} if method in {"POST", "PUT", "PATCH"} else None
        extra = {"Idempotency-Key": idem_key()} if method == "POST" else {}
        anonymous = await client.request(method, path, json=data, headers=extra)
        if anonymous.status_code != 401 or "www-authenticate" not in anonymous.headers:
            continue  # a public route (signed webhooks, QR codes): no key involved
        r = await client.request(method, path, json=data, headers=served.store.h(stranger, **extra))
        assert r.status_code == 403, (op_id, method, path, stranger, r.status_code, r.text)
        if method == "GET":  # feeds also take ?token=<key>: another channel's key is refused there too
            r = await client.get(path, params={"token": served.store.keys[stranger]})
            assert r.status_code in (401, 403), (op_id, path, r.status_code)
            own = await client.get(path, headers=served.store.h(owner))
            assert own.status_code not in (401, 403), (op_id, path, own.status_code, own.text)  # control
        checked += 1
    assert checked >= 10
    assert await served.counts() == before


async def test_a_storefront_key_on_every_admin_route_is_403(served: Served, client: httpx.AsyncClient) -> None:
    before = await served.counts()
    admin_ops = operations(served.spec, "/v1/admin")
    assert len(admin_ops) >= 20
    for method, path, op_id in admin_ops:
        data = {} if method in {"POST", "PUT", "PATCH"} else None
        for channel in ("webshop", "kiosk"):
            r = await client.request(method, path, json=data, headers=served.store.h(channel))
            assert r.status_code == 403, (op_id, channel, r.status_code, r.text)
    assert await served.counts() == before


# -- prices and totals are the server's --------------------------------------------------------------


async def test_a_client_sent_price_or_total_is_422_and_changes_nothing(
    served: Served, client: httpx.AsyncClient
) -> None:
    h = served.store.h("webshop")
    cart = (await client.post("/v1/carts", headers=h)).json()["id"]
    assert (await client.post(f"/v1/carts/{cart}/lines", json={"sku": "ESPRESSO"}, headers=h)).status_code == 200
    before = await served.counts()
    attempts = [
        ("POST", "/v1/carts", {"total": 1}, "total"),
        ("POST", f"/v1/carts/{cart}/lines", {"sku": "ESPRESSO", "quantity": 1, "price": 1}, "price"),
        ("POST", f"/v1/carts/{cart}/lines", {"sku": "ESPRESSO", "unit_price": 1}, "unit_price"),
        ("PUT", f"/v1/carts/{cart}/lines/ESPRESSO", {"quantity": 3, "total": 1}, "total"),
        ("POST", f"/v1/carts/{cart}/checkout", {"email": "p@example.com", "total": 1}, "total"),
        ("POST", f"/v1/carts/{cart}/checkout", {"email": "p@example.com", "subtotal": 0}, "subtotal"),
        ("POST", f"/v1/carts/{cart}/checkout", {"email": "p@example.com", "discount": 280}, "discount"),
        (
            "POST",
            f"/v1/carts/{cart}/checkout",
            {"email": "p@example.com", "payment": {"provider": "wallet", "amount": 1}},
            "payment.amount",
        ),
    ]
    for method, path, data, field in attempts:
        r = await client.request(method, path, json=data, headers={**h, "Idempotency-Key": idem_key()})
        assert_problem(r, 422, field=field)
    assert await served.counts() == before
    cart_now = (await client.get(f"/v1/carts/{cart}", headers=h)).json()
    assert cart_now["status"] == "open" and [(x["sku"], x["quantity"]) for x in cart_now["lines"]] == [("ESPRESSO", 1)]


# -- signed webhooks -------------------------------------------------------------------------------


def amazon_order(order_id: str, sku: str = "BEANS-250-WHOLE") -> bytes:
    stamp = "2026-01-01T00:00:00Z"
    return json.dumps(
        {
            "AmazonOrderId": order_id,
            "PurchaseDate": stamp,
            "LastUpdateDate": stamp,
            "OrderStatus": "Unshipped",
            "FulfillmentChannel": "MFN",
            "OrderTotal": {"CurrencyCode": "EUR", "Amount": "12.90"},
            "BuyerInfo": {"BuyerEmail": f"{order_id}@marketplace.example"},
            "OrderItems": [
                {
                    "ASIN": "B0RELIABLE",
                    "SellerSKU": sku,
                    "OrderItemId": "1",
                    "QuantityOrdered": 1,
                    "ItemPrice": {"CurrencyCode": "EUR", "Amount": "12.90"},
                }
            ],
        }
    ).encode()


def standard(body: bytes, msg_id: str, at: datetime, secret: str = MP_SECRET) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body.decode()),
        "content-type": "application/json",
    }


async def test_marketplace_webhooks_tampered_stale_or_replayed_are_refused(
    served: Served, client: httpx.AsyncClient
) -> None:
    hook = "/channels/marketplace/webhooks"
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:10]
    body = amazon_order(f"111-{tag}")
    # A genuine delivery, captured by an attacker, who replays it later and edits it.
    genuine = standard(body, f"msg_{tag}", now)
    first = await client.post(hook, content=body, headers=genuine)
    assert first.status_code == 200 and first.json()["result"] == "created", first.text
    before = await served.counts()
    other = "whsec_" + base64.b64encode(b"not-the-merchants-secret-at-all").decode()
    refused = {
        "tampered body": (body.replace(b'"QuantityOrdered": 1', b'"QuantityOrdered": 9'), genuine),
        "tampered id": (body, {**genuine, "webhook-id": f"msg_{tag}_2"}),
        "another secret": (amazon_order(f"222-{tag}"), standard(amazon_order(f"222-{tag}"), f"a{tag}", now, other)),
        "stale (replayed after the window)": (body, standard(body, f"msg_{tag}", now - timedelta(minutes=6))),
        "stale new delivery": (
            amazon_order(f"333-{tag}"),
            standard(amazon_order(f"333-{tag}"), f"s{tag}", now - timedelta(minutes=6)),
        ),
        "from the future": (
            amazon_order(f"444-{tag}"),
            standard(amazon_order(f"444-{tag}"), f"f{tag}", now + timedelta(minutes=6)),
        ),
        "unsigned": (amazon_order(f"555-{tag}"), {"content-type": "application/json"}),
        "signature stripped": (body, {k: v for k, v in genuine.items() if k != "webhook-signature"}),
    }
    for name, (content, headers) in refused.items():
        r = await client.post(hook, content=content, headers=headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert problem_type(r) == "signature-invalid", name
    assert await served.counts() == before
    # Replayed as is, inside the window: the same answer, marked duplicate, processed once.
    again = await client.post(hook, content=body, headers=genuine)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["order_id"] == first.json()["order_id"]
    assert await served.counts() == before


def meta_comment(comment_id: str, text: str) -> bytes:
    return json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": "17841400000000000",
                    "time": 1767225600,
                    "changes": [
                        {
                            "field": "comments",
                            "value": {"from": {"id": "4242", "username": "eve"}, "id": comment_id, "text": text},
                        }
                    ],
                }
            ],
        }
    ).encode()


def hub(body: bytes, secret: str = META_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "content-type": "application/json"}


async def test_social_webhooks_tampered_or_replayed_store_nothing(served: Served, client: httpx.AsyncClient) -> None:
    hook = "/channels/social/webhooks"
    tag = uuid.uuid4().hex[:10]
    body = meta_comment(f"c-{tag}", "buy 2 latte")
    first = await client.post(hook, content=body, headers=hub(body))
    assert first.status_code == 200 and first.json()["replies"][0].get("cart_id"), first.text
    before = await served.counts()
    refused = {
        "tampered body": (body.replace(b"buy 2", b"buy 9"), hub(body)),
        "tampered id": (meta_comment(f"d-{tag}", "buy 2 latte"), hub(body)),
        "another secret": (body, hub(body, "not-the-app-secret")),
        "no signature": (body, {"content-type": "application/json"}),
        "sha1": (
            body,
            {**hub(body), "X-Hub-Signature-256": hub(body)["X-Hub-Signature-256"].replace("sha256", "sha1")},
        ),
    }
    for name, (content, headers) in refused.items():
        r = await client.post(hook, content=content, headers=headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert problem_type(r) == "signature-invalid", name
    assert await served.counts() == before
    # Meta redelivers: the replay is acknowledged and makes no second cart.
    again = await client.post(hook, content=body, headers=hub(body))
    assert again.status_code == 200 and again.json()["duplicates"] == 1 and again.json()["replies"] == []
    assert await served.counts() == before


# -- limits ----------------------------------------------------------------------------------------


async def test_an_oversized_body_is_413_and_stores_nothing(served: Served, client: httpx.AsyncClient) -> None:
    before = await served.counts()
    big = {"attribution": {f"k{i}": "x" * 100 for i in range(60)}}
    assert len(json.dumps(big)) > MAX_BODY
    h = served.store.h("webshop")
    assert_problem(await client.post("/v1/carts", json=big, headers=h), 413)
    assert_problem(await client.post("/v1/carts", json=big, headers={**h, "Idempotency-Key": idem_key()}), 413)
    padded = amazon_order("999-oversized")[:-1] + b',"Pad": "' + b"x" * MAX_BODY + b'"}'
    now = datetime.now(UTC)
    r = await client.post("/channels/marketplace/webhooks", content=padded, headers=standard(padded, "big", now))
    assert_problem(r, 413)
    r = await client.post("/channels/social/webhooks", content=padded, headers=hub(padded))
    assert_problem(r, 413)
    assert await served.counts() == before


async def test_a_page_size_over_the_limit_is_400_on_every_list(served: Served, client: httpx.AsyncClient) -> None:
    lists = [
        (path, op["operationId"])
        for path, ops in served.spec["paths"].items()
        for method, op in ops.items()
        if method == "get"
        and any(p.get("name") == "limit" and p.get("in") == "query" for p in op.get("parameters", []))
    ]
    assert len(lists) >= 5
    ana = await sign_up(client, served, f"pager-{uuid.uuid4().hex[:8]}@example.com", "webshop")
    for path, op_id in lists:
        concrete = path
        while "{" in concrete:
            start = concrete.index("{")
            concrete = concrete[:start] + "x" + concrete[concrete.index("}", start) + 1 :]
        for limit in ("101", "1000000", "0", "-1", "ten"):
            r = await client.get(
                concrete, params={"limit": limit}, headers=served.store.h("admin", **{"Customer-Token": ana})
            )
            assert r.status_code == 400, (op_id, limit, r.status_code, r.text)
            assert "query.limit" in [e["field"] for e in r.json().get("errors", [])], (op_id, r.text)


async def test_too_many_requests_is_429_with_retry_after(served: Served, client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/admin/keys", json={"channel": "voice"}, headers=served.store.h())
    key = {"Authorization": f"Bearer {r.json()['secret']}"}
    # Fixed one-minute windows: 2 x limit + 1 requests meet the limit even across a window edge.
    codes = await asyncio.gather(*(client.get("/v1/channels", headers=key) for _ in range(2 * RATE_LIMIT + 1)))
    statuses = [c.status_code for c in codes]
    assert set(statuses) == {200, 429} and statuses.count(200) <= 2 * RATE_LIMIT
    limited = next(c for c in codes if c.status_code == 429)
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    # Another key is not limited by this one.
    assert (await client.get("/v1/channels", headers=served.store.h("kiosk"))).status_code == 200


async def test_forbidden_requests_count_against_the_rate_limit(served: Served, client: httpx.AsyncClient) -> None:
    """A key hammering a route it may not call gets 403s, then 429s: being refused costs the
    gateway a key lookup, so refusals are rate-limited too."""
    r = await client.post("/v1/admin/keys", json={"channel": "voice"}, headers=served.store.h())
    key = {"Authorization": f"Bearer {r.json()['secret']}"}
    codes = await asyncio.gather(*(client.get("/v1/admin/orders", headers=key) for _ in range(2 * RATE_LIMIT + 1)))
    statuses = [c.status_code for c in codes]
    assert set(statuses) == {403, 429} and statuses.count(403) <= 2 * RATE_LIMIT
    assert_problem(next(c for c in codes if c.status_code == 403), 403)
