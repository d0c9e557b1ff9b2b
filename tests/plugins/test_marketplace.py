"""Marketplace channel: the Amazon listings feed, signed order webhooks, the order poller against a
fake Orders API on loopback, and shipment confirmation through the outbox."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from omniretail.background import TaskRunner
from omniretail.channel import Capability
from omniretail.config import ConfigError
from omniretail.domain.order import OrderStatus
from omniretail.gateway.app import create_app
from omniretail.gateway.keys import KeyStore
from omniretail.kernel import Kernel
from omniretail.publishing import Publisher
from omniretail.services.clock import FakeClock
from omniretail.starter import load_catalog, sample_catalog
from omniretail.storage import tables as t
from omniretail.storage.publications import PublicationStore
from omniretail.worker import OutboxWorker
from tests.conftest import store_config
from tests.integration.gateway_fixtures import Api
from tests.integration.helpers import buy, draft, on_hand
from tests.plugins.fake_marketplace import FakeMarketplace

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"
WHSEC = "whsec_" + base64.b64encode(b"marketplace-test-secret-0123456789").decode()
SHOPIFY_SECRET = "shopify-app-secret"
OLD_SHOPIFY_SECRET = "shopify-app-secret-before-rotation"
API_TOKEN = "Atza|test-access-token"
HOOK = "/channels/marketplace/webhooks"
FEED = "/channels/marketplace/feeds/listings.json"


def feed_schema() -> dict[str, Any]:
    path = SCHEMAS / "amazon-listings-feed-schema-v2.json"
    assert path.exists(), f"Amazon's listings feed schema is missing: expected {path} (shared/ beside the clone)"
    return dict(json.loads(path.read_text(encoding="utf-8")))


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def market() -> AsyncIterator[FakeMarketplace]:
    async with FakeMarketplace(page_size=2, token=API_TOKEN) as fake:
        yield fake


LISTING_SETTINGS = {"seller_id": "A2SELLER", "marketplace_id": "A1PA6795UKMFR9", "language_tag": "de_DE"}


async def gateway(db_url: str, tmp_path: Path, clock: FakeClock, settings: dict[str, Any]) -> AsyncIterator[Api]:
    """The gateway over a stocked store, the marketplace channel configured with ``settings``."""
    config = store_config(db_url)
    config["channels"]["marketplace"] = {"locations": ["wh"], **LISTING_SETTINGS, **settings}
    config["gateway"] = {"embedded_worker": False}
    kernel = Kernel.from_config(config, base_dir=str(tmp_path), clock=clock)
    await kernel.start()
    data = sample_catalog()
    rename = {"store-downtown": "store-a", "store-riverside": "store-b", "wh-central": "wh"}
    for row in data["stock"]:
        row["location_id"] = rename[row["location_id"]]
    await load_catalog(kernel, data)
    store = KeyStore(kernel.db)
    keys = {name: (await store.create(name, ("storefront",), now=clock()))[1] for name in ("marketplace", "webshop")}
    keys["admin"] = (await store.create("admin", ("admin",), now=clock()))[1]
    app = create_app(kernel, run_worker=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield Api(client=client, kernel=kernel, keys=keys, app=app)
    await kernel.close()


@pytest.fixture
async def lister(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """A marketplace channel that only lists products."""
    async for api in gateway(db_url, tmp_path, clock, {}):
        yield api


@pytest.fixture
async def mp(
    db_url: str, tmp_path: Path, clock: FakeClock, market: FakeMarketplace, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Api]:
    """A marketplace channel that verifies webhooks, polls the fake Orders API and confirms."""
    monkeypatch.setenv("MP_WEBHOOK_SECRET", WHSEC)
    monkeypatch.setenv("MP_HMAC_SECRET", SHOPIFY_SECRET)
    monkeypatch.setenv("MP_HMAC_OLD_SECRET", OLD_SHOPIFY_SECRET)
    monkeypatch.setenv("MP_API_TOKEN", API_TOKEN)
    settings = {
        "webhook_secret": "env:MP_WEBHOOK_SECRET",
        "hmac_secret": "env:MP_HMAC_SECRET",
        "hmac_previous_secret": "env:MP_HMAC_OLD_SECRET",
        "orders_api_url": market.url,
        "orders_api_token": "env:MP_API_TOKEN",
    }
    async for api in gateway(db_url, tmp_path, clock, settings):
        yield api


# -- helpers -------------------------------------------------------------------------------------


def standard_headers(body: bytes, msg_id: str, at: datetime, secret: str = WHSEC) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def shopify_headers(body: bytes, event_id: str, at: datetime, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {
        "X-Shopify-Hmac-SHA256": digest,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": at.isoformat().replace("+00:00", "Z"),
        "content-type": "application/json",
    }


def amazon_order(
    order_id: str = "028-1234567-1234567",
    *,
    status: str = "Unshipped",
    lines: list[tuple[str, int, str]] | None = None,
    email: str = "k3x9p2@marketplace.amazon.de",
    at: datetime | None = None,
) -> dict[str, Any]:
    stamp = (at or datetime(2026, 1, 1, tzinfo=UTC)).isoformat().replace("+00:00", "Z")
    lines = lines if lines is not None else [("BEANS-250-WHOLE", 2, "25.80")]
    return {
        "AmazonOrderId": order_id,
        "PurchaseDate": stamp,
        "LastUpdateDate": stamp,
        "OrderStatus": status,
        "FulfillmentChannel": "MFN",
        "SalesChannel": "Amazon.de",
        "IsBusinessOrder": False,
        "OrderTotal": {"CurrencyCode": "EUR", "Amount": "30.75"},
        "BuyerInfo": {"BuyerEmail": email, "BuyerName": "Ana Buyer", "PurchaseOrderNumber": None},
        "ShippingAddress": {"Name": "Ana", "City": "Berlin", "CountryCode": "DE"},
        "OrderItems": [
            {
                "ASIN": f"B0TEST000{n}",
                "SellerSKU": sku,
                "OrderItemId": f"7000000000000{n}",
                "QuantityOrdered": qty,
                "ItemPrice": {"CurrencyCode": "EUR", "Amount": amount},
                "ProductInfo": {"NumberOfItems": "1"},
            }
            for n, (sku, qty, amount) in enumerate(lines, start=1)
        ],
    }


def gtin(body: str) -> str:
    """``body`` with its GS1 check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


async def send(api: Api, data: Any, msg_id: str, *, at: datetime | None = None) -> httpx.Response:
    body = data if isinstance(data, bytes) else encode(data)
    return await api.client.post(HOOK, content=body, headers=standard_headers(body, msg_id, at or api.kernel.clock()))


async def count(api: Api, table: Any) -> int:
    async with api.kernel.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def marketplace_orders(api: Api) -> list[Any]:
    return await api.kernel.orders.page(channel="marketplace", limit=100)


async def task_state(api: Api) -> dict[str, Any]:
    async with api.kernel.db.read() as conn:
        raw = await conn.scalar(select(t.task_state.c.state).where(t.task_state.c.name == "marketplace.poll_orders"))
    return dict(json.loads(raw)) if raw else {}


async def poll(api: Api, clock: FakeClock) -> None:
    runner = TaskRunner(api.kernel)
    runner.tasks = [task for task in runner.tasks if task.name.startswith("marketplace.")]
    assert [task.name for task in runner.tasks] == ["marketplace.poll_orders"]
    assert await runner.run_due() == 1
    clock.advance(seconds=61)


# -- channel ---------------------------------------------------------------------------------------


async def test_capabilities_are_what_the_marketplace_carries(kernel: Kernel) -> None:
    spec = kernel.channels["marketplace"].spec
    assert spec.capabilities == {Capability.BROWSE, Capability.CHECKOUT, Capability.TRACK}


# -- listings ------------------------------------------------------------------------------------


async def test_listings_feed_is_valid_against_amazons_schema(lister: Api) -> None:
    run = await Publisher(lister.kernel).publish("marketplace")
    assert (run.failed, run.rejected) == (0, 0)
    r = await lister.client.get(f"{FEED}?token={lister.keys['marketplace']}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    feed = r.json()
    jsonschema.Draft7Validator(feed_schema()).validate(feed)
    assert feed["header"] == {"sellerId": "A2SELLER", "version": "2.0", "issueLocale": "en_US"}
    snapshot = await lister.kernel.catalog.snapshot()
    skus = {v.sku for p in snapshot.products for v in p.variants}
    messages = feed["messages"]
    assert {m["sku"] for m in messages} == skus
    assert [m["messageId"] for m in messages] == list(range(1, len(messages) + 1))
    assert {m["operationType"] for m in messages} == {"UPDATE"}
    assert {m["productType"] for m in messages} == {"PRODUCT"}

    by_sku = {m["sku"]: m["attributes"] for m in json.loads(r.content, parse_float=Decimal)["messages"]}
    latte = by_sku["LATTE-REG"]
    market = "A1PA6795UKMFR9"
    assert latte["item_name"] == [{"value": "Caffè Latte - Regular", "language_tag": "de_DE", "marketplace_id": market}]
    assert latte["brand"] == [{"value": "Riverside Roasters", "language_tag": "de_DE", "marketplace_id": market}]
    assert latte["externally_assigned_product_identifier"] == [
        {"type": "ean", "value": "4006381330015", "marketplace_id": market}
    ]
    offer = latte["purchasable_offer"][0]
    assert (offer["currency"], offer["marketplace_id"]) == ("EUR", market)
    price = offer["our_price"][0]["schedule"][0]["value_with_tax"]
    assert price == Decimal("4.50") and str(price) == "4.50"  # the exact decimal, a JSON number
    assert latte["fulfillment_availability"] == [{"fulfillment_channel_code": "DEFAULT", "quantity": 0}]
    assert latte["condition_type"] == [{"value": "new_new", "marketplace_id": market}]
    assert latte["product_description"][0]["language_tag"] == "de_DE"
    assert latte["main_product_image_locator"][0]["media_location"].startswith("http")
    assert by_sku["BEANS-250-WHOLE"]["fulfillment_availability"][0]["quantity"] == 150  # stock at "wh" only

    assert (await lister.client.get(FEED)).status_code == 401
    assert (await lister.client.get(f"{FEED}?token={lister.keys['webshop']}")).status_code == 403
    assert (await lister.client.get(FEED, headers=lister.h("admin"))).status_code == 200


async def test_withdrawn_products_become_delete_messages(lister: Api) -> None:
    await Publisher(lister.kernel).publish("marketplace")
    mug = (await lister.kernel.catalog.snapshot()).by_handle["travel-mug"]
    await lister.kernel.catalog.set_status(mug.id, "archived")
    run = await Publisher(lister.kernel).publish("marketplace")
    assert run.withdrawn == 1
    feed = (await lister.client.get(FEED, headers=lister.h("marketplace"))).json()
    jsonschema.Draft7Validator(feed_schema()).validate(feed)
    deletes = [m for m in feed["messages"] if m["operationType"] == "DELETE"]
    assert deletes == [{"messageId": len(feed["messages"]), "sku": "MUG-TRAVEL-BLK", "operationType": "DELETE"}]
    assert "MUG-TRAVEL-BLK" not in {m["sku"] for m in feed["messages"] if m["operationType"] == "UPDATE"}
    # Listed again: an UPDATE, and no DELETE any more.
    await lister.kernel.catalog.set_status(mug.id, "active")
    await Publisher(lister.kernel).publish("marketplace")
    feed = (await lister.client.get(FEED, headers=lister.h("marketplace"))).json()
    assert [m["operationType"] for m in feed["messages"] if m["sku"] == "MUG-TRAVEL-BLK"] == ["UPDATE"]


async def test_products_amazon_cannot_list_are_rejected_with_the_field_named(lister: Api) -> None:
    kernel = lister.kernel
    no_brand = await kernel.catalog.create(
        draft("NOBRAND-1", variants=[{"sku": "NOBRAND-1", "gtin": gtin("400638133009")}])
    )
    no_gtin = await kernel.catalog.create(draft("NOGTIN-1", brand="Acme"))
    typed = await kernel.catalog.create(
        draft(
            "TYPED-1",
            brand="Acme",
            variants=[
                {"sku": "TYPED-1", "gtin": gtin("01234567890"), "prices": [{"amount": 1999, "currency": "EUR"}]},
                {"sku": "TYPED-1B", "gtin": gtin("0400638133010"), "prices": [{"amount": 5, "currency": "EUR"}]},
            ],
            channel_content={"extra": {"marketplace": {"product_type": "COFFEE_MAKER"}}},
            condition="refurbished",
        )
    )
    no_price = await kernel.catalog.create(
        draft("NOPRICE-1", brand="Acme", variants=[{"sku": "NOPRICE-1", "gtin": gtin("400638133011")}])
    )
    run = await Publisher(kernel).publish("marketplace")
    assert run.rejected == 3
    store = PublicationStore(kernel.db)
    reasons = {}
    for product in (no_brand, no_gtin, no_price):
        record = await store.record("marketplace", product.id)
        assert record is not None and record.status == "rejected"
        reasons[product.handle] = record.reason or ""
    assert reasons["nobrand-1"] == "brand: Amazon requires a brand"
    assert reasons["nogtin-1"] == "variants[NOGTIN-1].gtin: Amazon requires a GTIN (EAN/UPC) for 'NOGTIN-1'"
    assert reasons["noprice-1"] == "variants[NOPRICE-1].prices: 'NOPRICE-1' has no price in EUR"
    feed = (await lister.client.get(FEED, headers=lister.h("marketplace"))).json()
    jsonschema.Draft7Validator(feed_schema()).validate(feed)
    mine = {m["sku"]: m for m in feed["messages"] if m["sku"].startswith("TYPED")}
    assert {m["productType"] for m in mine.values()} == {"COFFEE_MAKER"}
    ids = {sku: m["attributes"]["externally_assigned_product_identifier"][0]["type"] for sku, m in mine.items()}
    assert ids == {"TYPED-1": "upc", "TYPED-1B": "gtin"}
    assert mine["TYPED-1B"]["attributes"]["purchasable_offer"][0]["our_price"][0]["schedule"][0] == {
        "value_with_tax": 0.05
    }
    assert mine["TYPED-1"]["attributes"]["condition_type"][0]["value"] == "refurbished_refurbished"
    assert (await store.record("marketplace", typed.id)) is not None


async def test_publishing_with_secrets_configured(mp: Api) -> None:
    run = await Publisher(mp.kernel).publish("marketplace")
    assert (run.created, run.rejected, run.failed) == (6, 0, 0)


# -- webhooks ------------------------------------------------------------------------------------


async def test_standard_webhook_takes_the_order_once(mp: Api) -> None:
    before = await on_hand(mp.kernel, "BEANS-250-WHOLE", "wh")
    data = amazon_order(lines=[("BEANS-250-WHOLE", 2, "25.80"), ("CROISSANT", 3, "10.00")])
    r = await send(mp, data, "msg_1")
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["result"] == "created" and reply["duplicate"] is False and reply["status"] == "paid"
    assert reply["delivery_id"] == "msg_1" and reply["amazon_order_id"] == "028-1234567-1234567"
    order = await mp.kernel.orders.get(reply["order_id"])
    assert (order.channel, order.external_ref, order.currency) == ("marketplace", "028-1234567-1234567", "EUR")
    # ItemPrice is the whole line: 25.80 for 2 -> 12.90 each; 10.00 for 3 -> 3.33, 3.33, 3.34.
    lines = sorted((x.sku, x.quantity, x.unit_price) for x in order.lines)
    assert lines == [("BEANS-250-WHOLE", 2, 1290), ("CROISSANT", 1, 334), ("CROISSANT", 2, 333)]
    assert order.total == 2580 + 1000
    assert await on_hand(mp.kernel, "BEANS-250-WHOLE", "wh") == before - 2
    customer = await mp.kernel.customers.get(order.customer_id or "")
    kinds = {(i.kind.value, i.value) for i in customer.identities}
    assert ("marketplace_buyer", "k3x9p2@marketplace.amazon.de") in kinds
    assert ("email", "k3x9p2@marketplace.amazon.de") in kinds

    again = await send(mp, data, "msg_1")  # the same delivery, redelivered
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["order_id"] == order.id
    other = await send(mp, data, "msg_2")  # another delivery of the same order
    assert other.status_code == 200 and other.json()["result"] == "exists"
    assert other.json()["order_id"] == order.id
    second = await send(mp, amazon_order("028-7654321-7654321", lines=[("MUG-TRAVEL-BLK", 1, "19.90")]), "msg_3")
    assert second.json()["result"] == "created"
    assert (await mp.kernel.orders.get(second.json()["order_id"])).customer_id == order.customer_id  # one buyer
    assert len(await marketplace_orders(mp)) == 2
    assert await on_hand(mp.kernel, "BEANS-250-WHOLE", "wh") == before - 2
    assert await count(mp, t.inbound_deliveries) == 3


async def test_shopify_style_webhook_and_secret_rotation(mp: Api) -> None:
    now = mp.kernel.clock()
    body = encode(amazon_order("111-0000001-0000001"))
    r = await mp.client.post(HOOK, content=body, headers=shopify_headers(body, "evt-1", now))
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "created"
    body2 = encode(amazon_order("111-0000002-0000002"))
    old = await mp.client.post(HOOK, content=body2, headers=shopify_headers(body2, "evt-2", now, OLD_SHOPIFY_SECRET))
    assert old.status_code == 200 and old.json()["result"] == "created"
    dup = await mp.client.post(HOOK, content=body, headers=shopify_headers(body, "evt-1", now))
    assert dup.status_code == 200 and dup.json()["duplicate"] is True
    headers = shopify_headers(body, "", now)
    del headers["X-Shopify-Event-Id"]
    headers["X-Shopify-Webhook-Id"] = "whk-9"
    by_webhook_id = await mp.client.post(HOOK, content=body, headers=headers)
    assert by_webhook_id.status_code == 200 and by_webhook_id.json()["result"] == "exists"
    assert len(await marketplace_orders(mp)) == 2


def _refusals(clock: FakeClock) -> list[tuple[str, bytes, dict[str, Any]]]:
    now = clock()
    body = encode(amazon_order("999-0000000-0000001"))
    good = standard_headers(body, "msg_bad", now)
    shop = shopify_headers(body, "evt-bad", now)
    wrong = "whsec_" + base64.b64encode(b"another-secret-entirely-0123456").decode()
    cases: list[tuple[str, bytes, dict[str, Any]]] = [
        ("unsigned", body, {"content-type": "application/json"}),
        ("tampered body", body.replace(b"BEANS-250-WHOLE", b"BEANS-250-GROUND"), good),
        ("wrong secret", body, standard_headers(body, "msg_bad", now, wrong)),
        ("stale", body, standard_headers(body, "msg_bad", now - timedelta(minutes=6))),
        ("from the future", body, standard_headers(body, "msg_bad", now + timedelta(minutes=6))),
        ("id swapped", body, {**good, "webhook-id": "msg_other"}),
        ("no signature", body, {k: v for k, v in good.items() if k != "webhook-signature"}),
        ("garbage signature", body, {**good, "webhook-signature": "garbage"}),
        ("bad base64", body, {**good, "webhook-signature": "v1,!!!notbase64!!!"}),
        ("too many commas", body, {**good, "webhook-signature": "v1,a,b"}),
        ("only v1a", body, {**good, "webhook-signature": "v1a," + good["webhook-signature"][3:]}),
        ("timestamp not a number", body, {**good, "webhook-timestamp": "nan"}),
        ("timestamp huge", body, {**good, "webhook-timestamp": "9" * 40}),
        ("timestamp far future", body, {**good, "webhook-timestamp": "999999999999"}),
        ("timestamp negative", body, {**good, "webhook-timestamp": "-1"}),
        ("timestamp unicode digits", body, {**good, "webhook-timestamp": "\u0661\u0667\u0660\u0660".encode()}),
        ("not utf-8", b"\xff\xfe" + body, good),
        ("shopify tampered", body + b" ", shop),
        ("shopify wrong secret", body, shopify_headers(body, "evt-bad", now, "nope")),
        ("shopify stale", body, shopify_headers(body, "evt-bad", now - timedelta(minutes=6))),
        ("shopify no event id", body, {k: v for k, v in shop.items() if k != "X-Shopify-Event-Id"}),
        ("shopify no time", body, {k: v for k, v in shop.items() if k != "X-Shopify-Triggered-At"}),
        ("shopify bad time", body, {**shop, "X-Shopify-Triggered-At": "yesterday"}),
        ("shopify naive time", body, {**shop, "X-Shopify-Triggered-At": "2026-01-01T00:00:00"}),
        (
            "shopify non-ascii digest",
            body,
            {**shop, "X-Shopify-Hmac-SHA256": ("é" + shop["X-Shopify-Hmac-SHA256"]).encode("latin-1")},
        ),
    ]
    return cases


async def test_unsigned_tampered_or_stale_deliveries_get_401_and_change_nothing(mp: Api, clock: FakeClock) -> None:
    orders = await count(mp, t.orders)
    for name, body, headers in _refusals(clock):
        r = await mp.client.post(HOOK, content=body, headers=headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), name
        problem = r.json()
        assert problem["type"].endswith("/signature-invalid") and problem["detail"], name
    assert await count(mp, t.orders) == orders
    assert await count(mp, t.inbound_deliveries) == 0
    long_id = await send(mp, amazon_order(), "m" * 200)
    assert long_id.status_code == 400 and long_id.json()["type"].endswith("/delivery-id-invalid")


async def test_bad_orders_get_a_clear_4xx_and_are_not_recorded(mp: Api) -> None:
    base = amazon_order("555-0000000-0000001")
    no_id = {k: v for k, v in base.items() if k != "AmazonOrderId"}
    cases: list[tuple[str, Any, int, str, str]] = [
        ("not json", b"{not json", 400, "validation", "body"),
        ("not an object", [1, 2], 422, "validation", "body"),
        ("no order id", no_id, 422, "validation", "AmazonOrderId"),
        ("unknown status", {**base, "OrderStatus": "Lost"}, 422, "validation", "OrderStatus"),
        ("naive date", {**base, "PurchaseDate": "2026-01-01T00:00:00"}, 422, "validation", "PurchaseDate"),
        (
            "amount as a number",
            amazon_order("555-0000000-0000001", lines=[("CROISSANT", 1, "3.20")]) | {"OrderTotal": 3.2},
            422,
            "validation",
            "OrderTotal",
        ),
        ("three decimals", amazon_order(lines=[("CROISSANT", 1, "3.205")]), 422, "invalid-value", "ItemPrice"),
        ("negative", amazon_order(lines=[("CROISSANT", 1, "-3.20")]), 422, "validation", "ItemPrice"),
        ("exponent", amazon_order(lines=[("CROISSANT", 1, "1e3")]), 422, "validation", "ItemPrice"),
        ("negative quantity", amazon_order(lines=[("CROISSANT", -1, "3.20")]), 422, "validation", "QuantityOrdered"),
        ("no items", {**base, "OrderItems": []}, 422, "invalid-value", "OrderItems"),
        ("only zero quantities", amazon_order(lines=[("CROISSANT", 0, "0.00")]), 422, "invalid-value", "OrderItems"),
        ("unknown sku", amazon_order(lines=[("CROISSANT", 1, "3.20"), ("NOPE", 1, "1.00")]), 422, "unknown-sku", ""),
        ("out of stock", amazon_order(lines=[("CROISSANT", 61, "195.20")]), 409, "out-of-stock", ""),
        ("not sold from wh", amazon_order(lines=[("ESPRESSO", 1, "2.80")]), 409, "out-of-stock", ""),
        ("bad e-mail", amazon_order(email="not-an-email"), 422, "invalid-value", ""),
        ("bad order id", {**base, "AmazonOrderId": "../../etc"}, 422, "validation", "AmazonOrderId"),
    ]
    mixed = amazon_order(lines=[("CROISSANT", 1, "3.20")])
    mixed["OrderItems"][0]["ItemPrice"]["CurrencyCode"] = "USD"
    cases.append(("currency mismatch", mixed, 422, "currency-mismatch", "CurrencyCode"))
    no_price = amazon_order(lines=[("CROISSANT", 1, "3.20")])
    del no_price["OrderItems"][0]["ItemPrice"]
    cases.append(("no item price", no_price, 422, "invalid-value", "ItemPrice"))
    stock = await on_hand(mp.kernel, "CROISSANT", "wh")
    for n, (name, data, status, code, field) in enumerate(cases):
        r = await send(mp, data, f"bad_{n}")
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), name
        problem = r.json()
        assert problem["type"].endswith("/" + code), (name, problem)
        if field:
            assert any(field in e["field"] for e in problem.get("errors", [])), (name, problem)
    unknown = await send(mp, cases[12][1], "bad_unknown")
    assert unknown.json()["errors"][0]["field"] == "OrderItems[1].SellerSKU"
    assert "NOPE" in unknown.json()["detail"]
    assert await count(mp, t.orders) == 0
    assert await count(mp, t.inbound_deliveries) == 0
    assert await on_hand(mp.kernel, "CROISSANT", "wh") == stock

    # The marketplace retries a refused delivery: once the stock is there, the same one goes in.
    await mp.kernel.inventory.set_on_hand("CROISSANT", "wh", 100, reason="delivery", actor="test")
    retry = await send(mp, cases[13][1], "bad_13")
    assert retry.status_code == 200 and retry.json()["result"] == "created"


async def test_no_mangled_order_gets_a_5xx(mp: Api) -> None:
    """Every field of a valid order replaced by values of every JSON type: always a 2xx or 4xx."""
    odd: list[Any] = [None, 0, -1, 1.5, "", "x" * 300, [], {}, True, 10**30, "1e3", "\u0000", {"Amount": "1"}]
    base = amazon_order("606-0000000-0000000", lines=[("CROISSANT", 1, "3.20")])
    statuses: dict[int, int] = {}
    n = 0
    nested = [
        "OrderItems.0",
        *(f"OrderItems.0.{k}" for k in base["OrderItems"][0]),
        "OrderItems.0.ItemPrice.Amount",
        "OrderItems.0.ItemPrice.CurrencyCode",
        "BuyerInfo.BuyerEmail",
        "BuyerInfo.BuyerName",
        "OrderTotal.CurrencyCode",
    ]
    for key in [*base, *nested]:
        for value in odd:
            n += 1
            data = json.loads(json.dumps(base))
            data["AmazonOrderId"] = f"606-0000000-{n:07d}"
            target, _, name = key.rpartition(".")
            holder: Any = data
            for part in target.split(".") if target else []:
                holder = holder[int(part)] if part.isdigit() else holder[part]
            holder[int(name) if name.isdigit() else name] = value
            r = await send(mp, data, f"fuzz_{n}")
            assert r.status_code < 500, (key, value, r.text)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert set(statuses) <= {200, 400, 409, 422} and statuses[422] > 100


async def test_pending_and_cancelled_orders(mp: Api) -> None:
    stock = await on_hand(mp.kernel, "MUG-TRAVEL-BLK", "wh")
    ref = "303-0000000-0000001"
    lines = [("MUG-TRAVEL-BLK", 2, "39.80")]
    pending = await send(mp, amazon_order(ref, status="Pending", lines=lines), "p1")
    assert pending.status_code == 200 and pending.json()["result"] == "skipped"
    assert "Pending" in pending.json()["reason"] and "order_id" not in pending.json()
    pending_items = amazon_order(ref, status="PendingAvailability", lines=lines)
    del pending_items["OrderItems"][0]["ItemPrice"]  # Amazon gives no price yet: fine, skipped
    assert (await send(mp, pending_items, "p2")).json()["result"] == "skipped"
    early = await send(mp, amazon_order("303-0000000-0000002", status="Canceled", lines=lines), "p3")
    assert early.json()["result"] == "skipped" and "cancelled" in early.json()["reason"]
    afn = amazon_order("303-0000000-0000003", lines=lines) | {"FulfillmentChannel": "AFN"}
    assert (await send(mp, afn, "p4")).json()["result"] == "skipped"
    assert await marketplace_orders(mp) == []

    taken = await send(mp, amazon_order(ref, lines=lines), "p5")
    assert taken.json()["result"] == "created"
    assert await on_hand(mp.kernel, "MUG-TRAVEL-BLK", "wh") == stock - 2
    cancelled = await send(mp, amazon_order(ref, status="Canceled", lines=lines), "p6")
    assert cancelled.json()["result"] == "cancelled" and cancelled.json()["status"] == "cancelled"
    assert await on_hand(mp.kernel, "MUG-TRAVEL-BLK", "wh") == stock
    again = await send(mp, amazon_order(ref, status="Canceled", lines=lines), "p7")
    assert again.json()["result"] == "cancelled" and await on_hand(mp.kernel, "MUG-TRAVEL-BLK", "wh") == stock
    assert await count(mp, t.inbound_deliveries) == 7


async def test_concurrent_copies_of_one_delivery_make_one_order(mp: Api) -> None:
    body = encode(amazon_order("404-0000000-0000001"))
    headers = standard_headers(body, "msg_same", mp.kernel.clock())
    replies = await asyncio.gather(*(mp.client.post(HOOK, content=body, headers=headers) for _ in range(4)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert len({r.json()["order_id"] for r in replies}) == 1
    # A copy that arrives once the first is recorded replays its outcome (duplicate: true); copies
    # that raced it ran the intake themselves and found the order taken. Either way one took it.
    ran = [r.json()["result"] for r in replies if not r.json()["duplicate"]]
    assert ran.count("created") == 1 and set(ran) <= {"created", "exists"}
    assert len(await marketplace_orders(mp)) == 1
    assert await count(mp, t.inbound_deliveries) == 1


# -- polling -------------------------------------------------------------------------------------


async def test_poller_pages_ingests_and_keeps_its_cursor(mp: Api, market: FakeMarketplace, clock: FakeClock) -> None:
    now = clock()
    market.add_order("201-0000000-0000001", updated=now - timedelta(hours=3), lines=[("BEANS-250-WHOLE", 1, "12.90")])
    market.add_order("201-0000000-0000002", updated=now - timedelta(hours=2), lines=[("CROISSANT", 2, "6.40")])
    market.add_order("201-0000000-0000003", status="Pending", updated=now - timedelta(hours=1), lines=[])
    market.add_order(
        "201-0000000-0000004",
        status="Shipped",
        updated=now - timedelta(minutes=30),
        lines=[("MUG-TRAVEL-BLK", 1, "19.90")],
    )
    market.add_order(
        "201-0000000-0000005",
        status="PartiallyShipped",
        updated=now - timedelta(minutes=10),
        lines=[("CINNAMON-BUN", 3, "11.40")],
        email="someone-else@marketplace.example.com",
    )
    market.add_order("201-0000000-0000006", updated=now - timedelta(days=3), lines=[("CROISSANT", 1, "3.20")])

    await poll(mp, clock)
    pages = market.calls("GET", "/orders/v0/orders")
    assert len(pages) == 3  # 5 orders in the window, 2 a page
    assert "NextToken" not in pages[0].query and pages[1].query["NextToken"] and pages[2].query["NextToken"]
    assert pages[0].query["MarketplaceIds"] == "A1PA6795UKMFR9"
    assert pages[0].query["LastUpdatedAfter"] == (now - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(r.headers["x-amz-access-token"] == API_TOKEN for r in market.requests)
    orders = {o.external_ref: o for o in await marketplace_orders(mp)}
    assert set(orders) == {"201-0000000-0000001", "201-0000000-0000002", "201-0000000-0000004", "201-0000000-0000005"}
    assert orders["201-0000000-0000004"].status is OrderStatus.SHIPPED  # Amazon shipped it already
    assert orders["201-0000000-0000005"].status is OrderStatus.PAID
    assert orders["201-0000000-0000002"].lines[0].unit_price == 320
    assert orders["201-0000000-0000001"].customer_id == orders["201-0000000-0000002"].customer_id
    assert orders["201-0000000-0000005"].customer_id != orders["201-0000000-0000001"].customer_id
    state = await task_state(mp)
    assert state["cursor"] == (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert state["failed"] == {} and state["last"]["created"] == 4 and state["last"]["skipped"] == 1

    # Polling again takes nothing twice and asks only for what changed since the cursor.
    item_calls = len(market.calls("GET", "/orderItems"))
    await poll(mp, clock)
    assert len(await marketplace_orders(mp)) == 4
    assert market.calls("GET", "/orders/v0/orders")[-1].query["LastUpdatedAfter"] == state["cursor"]
    assert len(market.calls("GET", "/orderItems")) == item_calls  # known orders need no items

    # The pending order is paid later: the next poll takes it; a cancelled one is cancelled here.
    market.items["201-0000000-0000003"] = market.items["201-0000000-0000001"]
    market.update("201-0000000-0000003", status="Unshipped", updated=clock())
    market.update("201-0000000-0000002", status="Canceled", updated=clock())
    await poll(mp, clock)
    orders = {o.external_ref: o for o in await marketplace_orders(mp)}
    assert len(orders) == 5 and orders["201-0000000-0000003"].status is OrderStatus.PAID
    assert orders["201-0000000-0000002"].status is OrderStatus.CANCELLED
    assert market.confirmations == []  # nothing shipped here


async def test_poller_holds_the_cursor_on_an_order_it_cannot_take(
    mp: Api, market: FakeMarketplace, clock: FakeClock
) -> None:
    now = clock()
    market.add_order("202-0000000-0000001", updated=now - timedelta(hours=2), lines=[("NEW-SKU-1", 1, "5.00")])
    market.add_order("202-0000000-0000002", updated=now - timedelta(hours=1), lines=[("CROISSANT", 1, "3.20")])
    await poll(mp, clock)
    state = await task_state(mp)
    assert "not in the catalog" in state["failed"]["202-0000000-0000001"]
    assert state["cursor"] == (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [o.external_ref for o in await marketplace_orders(mp)] == ["202-0000000-0000002"]

    await mp.kernel.catalog.create(draft("NEW-SKU-1", brand="Acme"))
    await mp.kernel.inventory.set_on_hand("NEW-SKU-1", "wh", 5, reason="delivery", actor="test")
    await poll(mp, clock)
    state = await task_state(mp)
    assert state["failed"] == {} and state["cursor"] == (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(await marketplace_orders(mp)) == 2


async def test_poller_keeps_the_cursor_when_the_api_fails(mp: Api, market: FakeMarketplace, clock: FakeClock) -> None:
    market.add_order("203-0000000-0000001", updated=clock() - timedelta(hours=1), lines=[("CROISSANT", 1, "3.20")])
    market.fail_orders = 1
    await poll(mp, clock)
    assert await task_state(mp) == {}
    assert await marketplace_orders(mp) == []
    async with mp.kernel.db.read() as conn:
        error = await conn.scalar(
            select(t.task_state.c.last_error).where(t.task_state.c.name == "marketplace.poll_orders")
        )
    assert "503" in (error or "")
    await poll(mp, clock)
    assert len(await marketplace_orders(mp)) == 1


async def test_webhook_and_poller_delivering_one_order_make_one_order(
    mp: Api, market: FakeMarketplace, clock: FakeClock
) -> None:
    ref = "204-0000000-0000001"
    market.add_order(ref, updated=clock() - timedelta(minutes=5), lines=[("BEANS-250-GROUND", 2, "25.80")])
    stock = await on_hand(mp.kernel, "BEANS-250-GROUND", "wh")
    r = await send(mp, market.webhook_body(ref), "msg_poll_1")
    assert r.json()["result"] == "created"
    await poll(mp, clock)
    assert len(await marketplace_orders(mp)) == 1
    assert await on_hand(mp.kernel, "BEANS-250-GROUND", "wh") == stock - 2
    # And the other way round: polled first, then the webhook arrives.
    market.add_order("204-0000000-0000002", updated=clock() - timedelta(minutes=1), lines=[("CROISSANT", 1, "3.20")])
    await poll(mp, clock)
    late = await send(mp, market.webhook_body("204-0000000-0000002"), "msg_poll_2")
    assert late.json()["result"] == "exists"
    assert len(await marketplace_orders(mp)) == 2


async def test_without_an_orders_api_there_is_no_poller(kernel: Kernel) -> None:
    assert [task.name for task in TaskRunner(kernel).tasks if task.name.startswith("marketplace")] == []


# -- status back ---------------------------------------------------------------------------------


async def ship(api: Api, order_id: str, note: str) -> None:
    r = await api.client.post(
        f"/v1/admin/orders/{order_id}/transitions", json={"to": "shipped", "note": note}, headers=api.h("admin")
    )
    assert r.status_code == 200, r.text


async def test_shipment_confirmation_is_retried_until_accepted(
    mp: Api, market: FakeMarketplace, clock: FakeClock
) -> None:
    ref = "205-0000000-0000001"
    market.add_order(ref, updated=clock(), lines=[("BEANS-250-WHOLE", 2, "25.80"), ("CROISSANT", 3, "10.00")])
    reply = (await send(mp, market.webhook_body(ref), "msg_ship")).json()
    worker = OutboxWorker(mp.kernel)
    await worker.drain()
    assert market.confirmations == []

    market.fail_confirmations = 1
    await ship(mp, reply["order_id"], "DHL 00340434161094042557")
    assert await worker.run_once() == 1  # the confirmation got a 503: the event is due again later
    assert market.confirmations == [] and len(market.calls("POST", "/shipmentConfirmation")) == 1
    for _ in range(20):
        clock.advance(minutes=5)
        await worker.run_once()
        if market.confirmations:
            break
    for _ in range(3):
        clock.advance(hours=1)
        await worker.run_once()
    assert len(market.confirmations) == 1 and len(market.calls("POST", "/shipmentConfirmation")) == 2
    order_id, body = market.confirmations[0]
    assert order_id == ref
    assert body["marketplaceId"] == "A1PA6795UKMFR9"
    package = body["packageDetail"]
    assert package["packageReferenceId"] == "1"
    assert (package["carrierCode"], package["trackingNumber"]) == ("DHL", "00340434161094042557")
    assert datetime.fromisoformat(package["shipDate"]).tzinfo is not None
    items = {i["SellerSKU"]: i["OrderItemId"] for i in market.items[ref]}
    assert sorted(package["orderItems"], key=lambda x: x["orderItemId"]) == sorted(
        [
            {"orderItemId": items["BEANS-250-WHOLE"], "quantity": 2},
            {"orderItemId": items["CROISSANT"], "quantity": 3},
        ],
        key=lambda x: x["orderItemId"],
    )
    # The event is delivered again (another plugin failed, say): nothing is sent twice.
    event = next(
        e
        for _, e in await mp.kernel.orders.events(reply["order_id"])
        if e.type == "order.status_changed" and getattr(e, "to_status", "") == "shipped"
    )
    await worker.dispatch(event)
    assert len(market.confirmations) == 1


async def test_shipment_confirmation_only_for_orders_shipped_here(
    mp: Api, market: FakeMarketplace, clock: FakeClock
) -> None:
    web = await buy(mp.kernel, {"CROISSANT": 1}, channel="webshop")
    await mp.kernel.orders.transition(web.id, OrderStatus.PAID, channel="webshop")
    await ship(mp, web.id, "UPS 1Z999AA10123456784")
    market.add_order("206-0000000-0000001", status="Shipped", updated=clock(), lines=[("CROISSANT", 1, "3.20")])
    await poll(mp, clock)  # Amazon shipped it: shipped here by channel:marketplace
    ref = "206-0000000-0000002"
    market.add_order(ref, updated=clock(), lines=[("CROISSANT", 1, "3.20")])
    taken = (await send(mp, market.webhook_body(ref), "msg_206")).json()
    await ship(mp, taken["order_id"], "")  # no tracking number: logged, nothing sent
    await OutboxWorker(mp.kernel).drain()
    assert market.calls("POST", "/shipmentConfirmation") == []
    single = "206-0000000-0000003"
    market.add_order(single, updated=clock(), lines=[("CROISSANT", 1, "3.20")])
    taken = (await send(mp, market.webhook_body(single), "msg_206b")).json()
    await ship(mp, taken["order_id"], "TRACK-123")
    await OutboxWorker(mp.kernel).drain()
    assert [(o, b["packageDetail"]["carrierCode"]) for o, b in market.confirmations] == [(single, "Other")]


async def test_a_bad_webhook_secret_is_a_config_error(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MP_BAD_SECRET", "whsec_***not base64***")
    config = store_config(db_url)
    config["channels"]["marketplace"] = {"locations": ["wh"], "webhook_secret": "env:MP_BAD_SECRET"}
    kernel = Kernel.from_config(config, base_dir=str(tmp_path), clock=clock)
    try:
        with pytest.raises(ConfigError, match=r"channels\.marketplace\.webhook_secret"):
            create_app(kernel, run_worker=False)
    finally:
        await kernel.close()
