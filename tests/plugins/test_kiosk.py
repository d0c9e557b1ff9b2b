"""The kiosk (in-store) channel through the gateway, on SQLite and PostgreSQL: store-scoped catalog,
Google local inventory feed, click and collect, endless aisle, QR handoff, loyalty cards, the
uncollected-order sweep, bad input and start-up checks."""

from __future__ import annotations

import base64
import csv
import io
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from omniretail_kiosk import handoff
from sqlalchemy import func, select

from omniretail.background import TaskRunner
from omniretail.config import ConfigError
from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.order import OrderStatus
from omniretail.gateway.app import create_app
from omniretail.kernel import Kernel
from omniretail.publishing import Publisher
from omniretail.services.clock import FakeClock
from omniretail.starter import STARTER_TOML
from omniretail.storage import tables
from omniretail.storage.publications import PublicationStore
from tests.conftest import store_config
from tests.integration import gateway_fixtures
from tests.integration.gateway_fixtures import Api

PROBLEM = "application/problem+json"
BASE = "http://127.0.0.1:8000"
SECRET_ENV = "OMNI_TEST_KIOSK_HANDOFF_SECRET"
SECRET = "kiosk-handoff-secret-for-tests-0123456789"


# -- helpers -------------------------------------------------------------------------------------


def idem() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("https://omniretail.dev/problems/")
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


async def new_cart(api: Api, channel: str = "kiosk", **lines: int) -> str:
    r = await api.client.post("/v1/carts", headers=api.h(channel))
    assert r.status_code == 201, r.text
    cart_id = str(r.json()["id"])
    for sku, qty in lines.items():
        r = await api.client.post(
            f"/v1/carts/{cart_id}/lines",
            json={"sku": sku.replace("_", "-"), "quantity": qty},
            headers=api.h(channel),
        )
        assert r.status_code == 200, r.text
    return cart_id


async def free(api: Api, sku: str) -> dict[str, int]:
    r = await api.client.get(f"/v1/availability/{sku}", headers=api.h("kiosk"))
    assert r.status_code == 200, r.text
    return {row["location_id"]: row["available"] for row in r.json()["locations"]}


async def order(api: Api, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await api.client.post("/channels/kiosk/orders", json=body, headers=api.h("kiosk", **idem(), **headers))


async def kiosk_orders(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/admin/orders", params={"channel": "kiosk", "limit": 100}, headers=api.h("admin"))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def count_rows(api: Api, table: Any) -> int:
    async with api.kernel.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def state(api: Api) -> tuple[dict[str, int], int, int]:
    return (await free(api, "CROISSANT"), await count_rows(api, tables.carts), await count_rows(api, tables.orders))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
async def kiosk_api(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Api]:
    """The gateway fixture with a signing secret for handoff codes."""
    monkeypatch.setenv(SECRET_ENV, SECRET)

    def with_secret(url: str, **overrides: Any) -> dict[str, Any]:
        config = store_config(url, **overrides)
        config["channels"]["kiosk"]["handoff_secret"] = f"env:{SECRET_ENV}"
        return config

    monkeypatch.setattr(gateway_fixtures, "store_config", with_secret)
    async for a in gateway_fixtures.make_api(db_url, tmp_path, clock):
        yield a


# -- click and collect ---------------------------------------------------------------------------


async def test_click_and_collect_from_cart_to_collected(api: Api, clock: FakeClock) -> None:
    cart_id = await new_cart(api, CROISSANT=2, ESPRESSO=1)
    headers = idem()
    body = {"cart_id": cart_id, "email": "walk.in@example.com"}
    r = await api.client.post("/channels/kiosk/orders", json=body, headers=api.h("kiosk", **headers))
    assert r.status_code == 201, r.text
    placed = r.json()
    o = placed["order"]
    assert (o["channel"], o["fulfilment"], o["pickup_location_id"], o["status"]) == (
        "kiosk",
        "pickup",
        "store-a",
        "placed",
    )
    assert {x["sku"]: x["location_id"] for x in o["lines"]} == {"CROISSANT": "store-a", "ESPRESSO": "store-a"}
    assert o["total"] == 2 * 320 + 280
    assert parse_time(placed["ready_by"]) == clock() + timedelta(minutes=10)
    assert placed["pickup_store"]["id"] == "store-a" and placed["pickup_store"]["preparation_minutes"] == 10
    assert placed["from_elsewhere"] == []
    assert (await free(api, "CROISSANT"))["store-a"] == 28

    # The same Idempotency-Key replays the order; nothing is taken twice.
    again = await api.client.post("/channels/kiosk/orders", json=body, headers=api.h("kiosk", **headers))
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.json()["order"]["id"] == o["id"]
    assert (await free(api, "CROISSANT"))["store-a"] == 28
    # A new key for the same cart: the cart is checked out already.
    assert_problem(await order(api, body), 409, "cart_id")

    # The back office sees it among the kiosk's orders, as a pickup order at store-a.
    admin = [x for x in await kiosk_orders(api) if x["id"] == o["id"]]
    assert len(admin) == 1 and admin[0]["fulfilment"] == "pickup" and admin[0]["pickup_location_id"] == "store-a"

    # The pickup desk finds it by number, makes it ready, hands it over.
    by_number = await api.client.get(f"/channels/kiosk/orders/{o['number']}", headers=api.h("kiosk"))
    assert by_number.status_code == 200 and by_number.json()["id"] == o["id"]
    assert_problem(await api.client.post(f"/channels/kiosk/orders/{o['id']}/collected", headers=api.h("kiosk")), 409)
    ready = await api.client.post(
        f"/channels/kiosk/orders/{o['number']}/ready", json={"note": "shelf 3"}, headers=api.h("kiosk")
    )
    assert ready.status_code == 200 and ready.json()["status"] == "ready_for_pickup"
    done = await api.client.post(f"/channels/kiosk/orders/{o['id']}/collected", headers=api.h("kiosk"))
    assert done.status_code == 200 and done.json()["status"] == "collected"
    assert_problem(await api.client.post(f"/channels/kiosk/orders/{o['id']}/collected", headers=api.h("kiosk")), 409)

    events = (await api.client.get(f"/v1/orders/{o['id']}/events", headers=api.h("admin"))).json()
    moves = [(e["data"].get("to_status"), e["channel"]) for e in events if e["type"] == "order.status_changed"]
    assert moves == [("ready_for_pickup", "kiosk"), ("collected", "kiosk")]
    assert (await free(api, "CROISSANT"))["store-a"] == 28


async def test_an_order_from_lines_and_a_signed_in_shopper(api: Api) -> None:
    token = await api.sign_up("kiosk.shopper@example.com")
    r = await order(
        api, {"lines": [{"sku": "LATTE-REG", "quantity": 1}, {"sku": "LATTE-REG"}]}, **{"Customer-Token": token}
    )
    assert r.status_code == 201, r.text
    o = r.json()["order"]
    me = (await api.client.get("/v1/customers/me", headers=api.h(customer=token))).json()
    assert o["customer_id"] == me["id"]
    assert [(x["sku"], x["quantity"], x["location_id"]) for x in o["lines"]] == [("LATTE-REG", 2, "store-a")]


# -- endless aisle -------------------------------------------------------------------------------


async def test_endless_aisle_to_this_store(api: Api, clock: FakeClock) -> None:
    assert await free(api, "CINNAMON-BUN") == {"store-a": 0, "wh": 40, "store-b": 20}
    r = await order(api, {"lines": [{"sku": "CINNAMON-BUN", "quantity": 3}], "phone": "+353 1 234 5678"})
    assert r.status_code == 201, r.text
    placed = r.json()
    o = placed["order"]
    assert (o["fulfilment"], o["pickup_location_id"]) == ("pickup", "store-a")
    assert o["lines"][0]["location_id"] == "wh"  # the kiosk's next location in preference order
    assert placed["from_elsewhere"] == ["CINNAMON-BUN"]
    # Ready later than the store's own 10 minutes: the units travel first.
    assert parse_time(placed["ready_by"]) == clock() + timedelta(minutes=10, days=2)
    assert await free(api, "CINNAMON-BUN") == {"store-a": 0, "wh": 37, "store-b": 20}

    # Without transfers the store cannot serve it: refused, and nothing changed.
    carts = await count_rows(api, tables.carts)
    body = {"lines": [{"sku": "CINNAMON-BUN", "quantity": 1}], "phone": "+353 1 234 5678", "allow_transfer": False}
    assert_problem(await order(api, body), 409, "sku")
    assert await free(api, "CINNAMON-BUN") == {"store-a": 0, "wh": 37, "store-b": 20}
    assert await count_rows(api, tables.carts) == carts and len(await kiosk_orders(api)) == 1


async def test_endless_aisle_shipped_home(api: Api) -> None:
    cart_id = await new_cart(api, CINNAMON_BUN=2, CROISSANT=1)
    r = await order(api, {"cart_id": cart_id, "fulfilment": "ship", "email": "home@example.com"})
    assert r.status_code == 201, r.text
    placed = r.json()
    o = placed["order"]
    assert (o["fulfilment"], o["pickup_location_id"], placed["ready_by"], placed["pickup_store"]) == (
        "ship",
        None,
        None,
        None,
    )
    # Shipped from the channel's other locations, never from the store's shelf.
    assert {x["sku"]: x["location_id"] for x in o["lines"]} == {"CINNAMON-BUN": "wh", "CROISSANT": "wh"}
    assert await free(api, "CINNAMON-BUN") == {"store-a": 0, "wh": 38, "store-b": 20}
    assert (await free(api, "CROISSANT"))["store-a"] == 30


# -- store-scoped catalog --------------------------------------------------------------------------


async def test_catalog_is_store_scoped_with_endless_aisle_and_pickup_times(api: Api) -> None:
    r = await api.client.get("/channels/kiosk/catalog", headers=api.h("kiosk"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["store"] == {
        "id": "store-a",
        "name": "Store A",
        "address": "",
        "store_code": "A",
        "pickup": True,
        "preparation_minutes": 10,
        "transfer_preparation_minutes": 10 + 2 * 24 * 60,
    }
    variants = {v["sku"]: v for p in page["items"] for v in p["variants"]}
    assert len(variants) == 8 and page["next_cursor"] is None
    croissant, bun = variants["CROISSANT"], variants["CINNAMON-BUN"]
    assert (croissant["in_store"], croissant["elsewhere"], croissant["orderable"]) == (30, 60, 60)
    assert (croissant["availability"], croissant["endless_aisle"], croissant["pickup_ready_minutes"]) == (
        "in_stock",
        False,
        10,
    )
    assert croissant["price"] == {"amount": 320, "currency": "EUR"}
    assert (bun["in_store"], bun["elsewhere"], bun["availability"], bun["endless_aisle"]) == (
        0,
        60,
        "out_of_stock",
        True,
    )
    assert bun["pickup_ready_minutes"] == 10 + 2 * 24 * 60

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        chunk = (await api.client.get("/channels/kiosk/catalog", params=params, headers=api.h("kiosk"))).json()
        seen += [p["handle"] for p in chunk["items"]]
        cursor = chunk["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    found = (await api.client.get("/channels/kiosk/catalog", params={"q": "bun"}, headers=api.h("kiosk"))).json()
    assert [p["handle"] for p in found["items"]] == ["cinnamon-bun"]

    assert_problem(await api.client.get("/channels/kiosk/catalog", headers=api.h("webshop")), 403)
    assert_problem(await api.client.get("/channels/kiosk/catalog"), 401)
    assert_problem(await api.client.get("/channels/kiosk/catalog", params={"limit": 0}, headers=api.h("kiosk")), 400)
    bad_cursor = {"cursor": "!!!"}
    assert_problem(
        await api.client.get("/channels/kiosk/catalog", params=bad_cursor, headers=api.h("kiosk")), 400, "query.cursor"
    )


# -- Google local inventory feed ------------------------------------------------------------------

LOCAL_FIELDS = ["id", "store_code", "availability", "quantity", "pickup_method", "pickup_sla"]


async def test_local_inventory_feed_covers_every_active_sku_at_every_store(api: Api) -> None:
    kernel = api.kernel
    await kernel.inventory.adjust("MUG-TRAVEL-BLK", "store-a", -3, reason="broken")  # 2 left: low stock
    await kernel.inventory.reserve("CROISSANT", "store-a", 5, reference="test-hold")  # live: 25 free
    token = api.keys["kiosk"]
    r = await api.client.get("/channels/kiosk/feeds/local-inventory.tsv", params={"token": token})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/tab-separated-values")
    reader = csv.DictReader(io.StringIO(r.text), delimiter="\t")
    assert reader.fieldnames == LOCAL_FIELDS
    rows = list(reader)
    by_key = {(row["id"], row["store_code"]): row for row in rows}
    snapshot = await kernel.catalog.snapshot()
    active = {v.sku for p in snapshot.products for v in p.variants}
    assert len(rows) == len(by_key) == len(active) * 2  # store-a (A) and store-b (B); the warehouse has no code
    assert set(by_key) == {(sku, code) for sku in active for code in ("A", "B")}
    for row in rows:
        assert row["availability"] in {"in_stock", "limited_availability", "out_of_stock"}
        assert row["quantity"].isdigit()
        assert row["pickup_method"] in {"buy", "not_supported"}
        assert (row["pickup_sla"] == "") == (row["pickup_method"] == "not_supported")
    assert by_key[("CROISSANT", "A")] == {
        "id": "CROISSANT",
        "store_code": "A",
        "availability": "in_stock",
        "quantity": "25",
        "pickup_method": "buy",
        "pickup_sla": "same_day",
    }
    assert by_key[("CROISSANT", "B")]["availability"] == "out_of_stock"
    assert by_key[("CROISSANT", "B")]["quantity"] == "0"
    assert by_key[("CROISSANT", "B")]["pickup_method"] == "not_supported"
    assert by_key[("MUG-TRAVEL-BLK", "A")]["availability"] == "limited_availability"
    assert by_key[("MUG-TRAVEL-BLK", "A")]["quantity"] == "2"
    assert by_key[("MUG-TRAVEL-BLK", "B")]["availability"] == "out_of_stock"  # no stock row at all

    # The ids are the web shop's product feed ids.
    await Publisher(kernel).publish("webshop")
    product_feed = await api.client.get("/channels/webshop/feeds/google.tsv", params={"token": api.keys["webshop"]})
    web_ids = {row["id"] for row in csv.DictReader(io.StringIO(product_feed.text), delimiter="\t")}
    assert web_ids == {row["id"] for row in rows}

    # The channel's key (or an admin key); another channel's key is refused.
    r = await api.client.get("/channels/kiosk/feeds/local-inventory.tsv", headers=api.h("admin"))
    assert r.status_code == 200
    feed = "/channels/kiosk/feeds/local-inventory.tsv"
    assert_problem(await api.client.get(feed, params={"token": api.keys["webshop"]}), 403)
    assert_problem(await api.client.get(feed), 401)


def test_pickup_sla_follows_the_preparation_time() -> None:
    from omniretail_kiosk.store import pickup_sla

    assert [pickup_sla(m) for m in (0, 10, 240, 241, 1440, 1441, 6 * 1440, 6 * 1440 + 1)] == [
        "same_day",
        "same_day",
        "same_day",
        "next_day",
        "next_day",
        "2-day",
        "6-day",
        "multi-week",
    ]


# -- publication -----------------------------------------------------------------------------------


async def test_render_listing_publishes_the_kiosk_listing(api: Api) -> None:
    run = await Publisher(api.kernel).publish("kiosk")
    assert (run.status, run.created, run.rejected, run.failed) == ("done", 6, 0, 0), run
    listings = [msgspec.json.decode(x) async for x in PublicationStore(api.kernel.db).listings("kiosk")]
    rows = {row["sku"]: row for listing in listings for row in listing}
    assert rows["CINNAMON-BUN"] == {
        "sku": "CINNAMON-BUN",
        "title": "Cinnamon Bun",
        "price": "3.80 EUR",
        "available": 60,
        "availability": "in_stock",
        "gtin": "4006381330053",
    }
    again = await Publisher(api.kernel).publish("kiosk")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 6)


# -- QR handoff --------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def test_qr_handoff_continues_the_same_cart_on_the_phone(kiosk_api: Api, clock: FakeClock) -> None:
    api = kiosk_api
    cart_id = await new_cart(api, CROISSANT=2, ESPRESSO=1)
    r = await api.client.post(f"/channels/kiosk/carts/{cart_id}/handoff", headers=api.h("kiosk"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["cart_id"] == cart_id
    assert out["handoff_url"].startswith(f"{BASE}/channels/kiosk/handoff/")
    assert parse_time(out["expires_at"]) == clock() + timedelta(minutes=15)
    checkout = urlsplit(out["checkout_url"])
    assert f"{checkout.scheme}://{checkout.netloc}{checkout.path}" == f"{BASE}/channels/webshop/checkout"
    assert parse_qs(checkout.query)["products"] == ["CROISSANT:2,ESPRESSO:1"]

    qr = out["qr"]
    assert qr["url"] == out["handoff_url"]
    assert ET.fromstring(qr["svg"]).tag == "{http://www.w3.org/2000/svg}svg"
    width, height = png_size(base64.b64decode(qr["png_base64"]))
    assert width == height > 100
    path = urlsplit(out["handoff_url"]).path
    svg = await api.client.get(urlsplit(qr["svg_url"]).path)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.text).tag == "{http://www.w3.org/2000/svg}svg"
    png = await api.client.get(urlsplit(qr["png_url"]).path)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    png_size(png.content)

    # The phone opens the code (no key): the same cart continues on the web shop.
    opened = await api.client.get(path)
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"] == f"{BASE}/channels/webshop/cart/{cart_id}"
    cart = (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h("webshop"))).json()
    assert cart["channels"] == ["kiosk", "webshop"]
    assert {x["sku"]: x["quantity"] for x in cart["lines"]} == {"CROISSANT": 2, "ESPRESSO": 1}

    # The checkout URL form rebuilds the lines in a new web cart.
    rebuilt = await api.client.get(f"{checkout.path}?{checkout.query}")
    assert rebuilt.status_code == 303
    new_id = rebuilt.headers["location"].rsplit("/", 1)[-1]
    new = (await api.client.get(f"/v1/carts/{new_id}", headers=api.h("webshop"))).json()
    assert new_id != cart_id and {x["sku"]: x["quantity"] for x in new["lines"]} == {"CROISSANT": 2, "ESPRESSO": 1}
    assert new["channels"] == ["webshop"]

    # Once checked out, the code opens nothing.
    r = await order(api, {"cart_id": cart_id, "email": "qr@example.com"})
    assert r.status_code == 201, r.text
    closed = await api.client.get(path)
    assert closed.status_code == 409 and closed.headers["content-type"].startswith("text/html")
    assert_problem(await api.client.post(f"/channels/kiosk/carts/{cart_id}/handoff", headers=api.h("kiosk")), 409)


async def test_expired_and_tampered_handoff_codes_change_nothing(kiosk_api: Api, clock: FakeClock) -> None:
    api = kiosk_api
    cart_id = await new_cart(api, CROISSANT=1)
    out = (await api.client.post(f"/channels/kiosk/carts/{cart_id}/handoff", headers=api.h("kiosk"))).json()
    path = urlsplit(out["handoff_url"]).path
    code = path.rsplit("/", 1)[-1]
    payload, mac = code.split(".")

    other_cart = await new_cart(api, ESPRESSO=1)
    forged_payload = base64.urlsafe_b64encode(f"{other_cart}:9999999999".encode()).decode().rstrip("=")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (f"{forged_payload}.{mac}", f"{payload}.{flipped}", "abc", "a.b.c", f"{payload}.", "%00"):
        r = await api.client.get(f"/channels/kiosk/handoff/{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"].startswith("text/html") and "not valid" in r.text
        assert_problem(await api.client.get(f"/channels/kiosk/handoff/{bad}/qr.png"), 400, "path.code")
    # A code signed with another secret (or for another channel) is no better.
    foreign = handoff.sign("another-secret-of-enough-length", "kiosk", cart_id, clock() + timedelta(minutes=5))
    assert (await api.client.get(f"/channels/kiosk/handoff/{foreign}")).status_code == 400
    cross = handoff.sign(SECRET, "webshop", cart_id, clock() + timedelta(minutes=5))
    assert (await api.client.get(f"/channels/kiosk/handoff/{cross}")).status_code == 400

    clock.advance(minutes=15)
    expired = await api.client.get(path)
    assert expired.status_code == 410 and "expired" in expired.text
    assert_problem(await api.client.get(f"{path}/qr.svg"), 410)
    for cart in (cart_id, other_cart):
        unchanged = (await api.client.get(f"/v1/carts/{cart}", headers=api.h("kiosk"))).json()
        assert unchanged["channels"] == ["kiosk"] and unchanged["status"] == "open"

    # A fresh code works again.
    fresh = (await api.client.post(f"/channels/kiosk/carts/{cart_id}/handoff", headers=api.h("kiosk"))).json()
    assert (await api.client.get(urlsplit(fresh["handoff_url"]).path)).status_code == 303


async def test_handoff_without_a_secret_offers_the_checkout_url_only(api: Api) -> None:
    cart_id = await new_cart(api, CROISSANT=1)
    r = await api.client.post(f"/channels/kiosk/carts/{cart_id}/handoff", headers=api.h("kiosk"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["handoff_url"] is None and out["expires_at"] is None
    assert out["qr"]["url"] == out["checkout_url"] and out["qr"]["svg_url"] is None
    ET.fromstring(out["qr"]["svg"])
    png_size(base64.b64decode(out["qr"]["png_base64"]))
    code = handoff.sign(SECRET, "kiosk", cart_id, datetime.now().astimezone() + timedelta(minutes=5))
    assert (await api.client.get(f"/channels/kiosk/handoff/{code}")).status_code == 404

    empty = await new_cart(api)
    assert_problem(await api.client.post(f"/channels/kiosk/carts/{empty}/handoff", headers=api.h("kiosk")), 422)
    assert_problem(await api.client.post("/channels/kiosk/carts/cart_nope/handoff", headers=api.h("kiosk")), 404)
    assert_problem(await api.client.post(f"/channels/kiosk/carts/{cart_id}/handoff", headers=api.h("webshop")), 403)


# -- loyalty cards ---------------------------------------------------------------------------------


async def test_a_loyalty_card_is_the_same_customer_as_the_web_account(api: Api) -> None:
    ana = await api.sign_up("ana@example.com")
    ana_id = (await api.client.get("/v1/customers/me", headers=api.h(customer=ana))).json()["id"]

    # Ana signs in at the kiosk and scans her card: it is linked to her record.
    r = await api.client.post(
        "/channels/kiosk/identify", json={"loyalty_card": "4711-0042"}, headers=api.h("kiosk", customer=ana)
    )
    assert r.status_code == 200, r.text
    assert r.json()["customer"] == {"id": ana_id, "name": "", "tier": None, "loyalty_card": "47110042"}
    assert r.json()["created"] is False

    # Next time the card alone (however typed) finds her, and her kiosk cart becomes hers.
    cart_id = await new_cart(api, CROISSANT=1)
    r = await api.client.post(
        "/channels/kiosk/identify",
        json={"loyalty_card": "4711 0042", "cart_id": cart_id},
        headers=api.h("kiosk"),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["customer"]["id"] == ana_id and out["created"] is False
    assert out["cart"]["id"] == cart_id and out["cart"]["customer_id"] == ana_id
    assert "email" not in out["customer"]  # a card number does not reveal contact details
    placed = await order(api, {"cart_id": cart_id})
    assert placed.status_code == 201, placed.text
    assert placed.json()["order"]["customer_id"] == ana_id
    orders = (await api.client.get("/v1/customers/me/orders", headers=api.h(customer=ana))).json()["items"]
    assert [o["channel"] for o in orders] == ["kiosk"]

    # A card linked on the web side resolves the same way.
    bob = await api.sign_up("bob@example.com")
    bob_id = (await api.client.get("/v1/customers/me", headers=api.h(customer=bob))).json()["id"]
    await api.kernel.customers.link(bob_id, Identity(kind=IdentityKind.LOYALTY_CARD, value="9000-1"), channel="webshop")
    r = await api.client.post("/channels/kiosk/identify", json={"loyalty_card": "90001"}, headers=api.h("kiosk"))
    assert r.json()["customer"]["id"] == bob_id

    # A new card is a new customer, once.
    first = await api.client.post("/channels/kiosk/identify", json={"loyalty_card": "NEW-1"}, headers=api.h("kiosk"))
    second = await api.client.post("/channels/kiosk/identify", json={"loyalty_card": "new1"}, headers=api.h("kiosk"))
    assert first.json()["created"] is True and second.json()["created"] is False
    assert first.json()["customer"]["id"] == second.json()["customer"]["id"] not in (ana_id, bob_id)

    # Bob cannot take Ana's card, nor be given Ana's cart.
    customers = await count_rows(api, tables.customers)
    assert_problem(
        await api.client.post(
            "/channels/kiosk/identify", json={"loyalty_card": "47110042"}, headers=api.h("kiosk", customer=bob)
        ),
        409,
    )
    ana_cart = await new_cart(api, ESPRESSO=1)
    await api.client.post(
        "/channels/kiosk/identify", json={"loyalty_card": "47110042", "cart_id": ana_cart}, headers=api.h("kiosk")
    )
    r = await api.client.post(
        "/channels/kiosk/identify", json={"loyalty_card": "90001", "cart_id": ana_cart}, headers=api.h("kiosk")
    )
    assert_problem(r, 404, "cart_id")
    assert await count_rows(api, tables.customers) == customers


# -- uncollected orders ----------------------------------------------------------------------------


async def test_uncollected_orders_are_cancelled_and_their_stock_returned(api: Api, clock: FakeClock) -> None:
    kept = (await order(api, {"lines": [{"sku": "CROISSANT", "quantity": 2}], "email": "a@example.com"})).json()
    stale = (await order(api, {"lines": [{"sku": "CROISSANT", "quantity": 3}], "email": "b@example.com"})).json()
    never_ready = (await order(api, {"lines": [{"sku": "ESPRESSO", "quantity": 1}], "email": "c@example.com"})).json()
    web_cart = await new_cart(api, "webshop", CINNAMON_BUN=1)
    web = await api.client.post(
        f"/v1/carts/{web_cart}/checkout",
        json={"fulfilment": "pickup", "pickup_location_id": "store-b", "email": "d@example.com"},
        headers=api.h("webshop", **idem()),
    )
    assert web.status_code == 201, web.text
    assert (await free(api, "CROISSANT"))["store-a"] == 25

    await api.client.post(f"/channels/kiosk/orders/{stale['order']['id']}/ready", headers=api.h("kiosk"))
    await api.kernel.orders.transition(web.json()["id"], OrderStatus.READY_FOR_PICKUP, channel="webshop")
    runner = TaskRunner(api.kernel)
    assert "kiosk.release_uncollected" in [t.name for t in runner.tasks]
    clock.advance(hours=70)
    await api.client.post(f"/channels/kiosk/orders/{kept['order']['id']}/ready", headers=api.h("kiosk"))
    clock.advance(hours=1, minutes=59)
    await runner.run_due()
    assert (await api.kernel.orders.get(stale["order"]["id"])).status.value == "ready_for_pickup"

    clock.advance(minutes=5)  # the task's next run: 72 h 4 min after the stale order was made ready
    assert await runner.run_due() >= 1
    cancelled = await api.kernel.orders.get(stale["order"]["id"])
    assert cancelled.status.value == "cancelled"
    assert (await free(api, "CROISSANT"))["store-a"] == 28  # its 3 units are back on the shelf
    events = (await api.client.get(f"/v1/orders/{cancelled.id}/events", headers=api.h("admin"))).json()
    last = events[-1]
    assert (last["data"]["to_status"], last["channel"], last["actor"]) == ("cancelled", "kiosk", "system:kiosk")
    # Ready for less than 72 hours, never made ready, or at another store: left alone.
    assert (await api.kernel.orders.get(kept["order"]["id"])).status.value == "ready_for_pickup"
    assert (await api.kernel.orders.get(never_ready["order"]["id"])).status.value == "placed"
    assert (await api.kernel.orders.get(web.json()["id"])).status.value == "ready_for_pickup"


# -- bad input -------------------------------------------------------------------------------------


async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(api: Api) -> None:
    cart_id = await new_cart(api, CROISSANT=1)
    before = await state(api)
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"lines": [{"sku": "NOPE", "quantity": 1}], "email": "x@example.com"}, 422, "lines[0].sku"),
        ({"lines": [{"sku": "CROISSANT", "quantity": 0}], "email": "x@example.com"}, 422, "lines[0].quantity"),
        ({"lines": [{"sku": "CROISSANT", "quantity": 1000}], "email": "x@example.com"}, 422, "lines[0].quantity"),
        ({"lines": [{"sku": "CROISSANT", "quantity": 999}], "email": "x@example.com"}, 409, "sku"),
        ({"lines": [{"sku": "CROISSANT", "quantity": 1}]}, 422, "email"),
        ({"cart_id": "cart_nope", "email": "x@example.com"}, 404, "cart_id"),
        ({"cart_id": cart_id, "lines": [{"sku": "CROISSANT"}], "email": "x@example.com"}, 422, "cart_id"),
        ({"email": "x@example.com"}, 422, "cart_id"),
        ({"cart_id": cart_id, "email": "x@example.com", "price": 1}, 422, "price"),
        ({"cart_id": cart_id, "email": "not-an-email"}, 422, "email"),
        ({"cart_id": cart_id, "email": "x@example.com", "fulfilment": "teleport"}, 422, "fulfilment"),
        ({"cart_id": cart_id}, 422, "email"),
    ]
    for body, status, field in cases:
        assert_problem(await order(api, body), status, field)
    # No Idempotency-Key; another channel's key; no key at all.
    body = {"cart_id": cart_id, "email": "x@example.com"}
    assert_problem(await api.client.post("/channels/kiosk/orders", json=body, headers=api.h("kiosk")), 400)
    assert_problem(await api.client.post("/channels/kiosk/orders", json=body, headers=api.h("webshop", **idem())), 403)
    assert_problem(await api.client.post("/channels/kiosk/orders", json=body, headers=idem()), 401)
    assert_problem(
        await api.client.post("/channels/kiosk/identify", json={"loyalty_card": "1"}, headers=api.h("webshop")), 403
    )
    for card in ("", "!!", "x" * 41, 42):
        assert_problem(
            await api.client.post("/channels/kiosk/identify", json={"loyalty_card": card}, headers=api.h("kiosk")),
            422,
            "loyalty_card",
        )
    assert_problem(
        await api.client.post(
            "/channels/kiosk/identify", json={"loyalty_card": "12", "cart_id": "cart_nope"}, headers=api.h("kiosk")
        ),
        404,
        "cart_id",
    )
    assert await state(api) == before

    # Staff actions: only this store's pickup orders, in order.
    web_cart = await new_cart(api, "webshop", CINNAMON_BUN=1)
    web = await api.client.post(
        f"/v1/carts/{web_cart}/checkout",
        json={"fulfilment": "pickup", "pickup_location_id": "store-b", "email": "d@example.com"},
        headers=api.h("webshop", **idem()),
    )
    for ref in (web.json()["id"], web.json()["number"], "ord_nope", "NOPE-NOPE", "x"):
        assert_problem(await api.client.post(f"/channels/kiosk/orders/{ref}/ready", headers=api.h("kiosk")), 404)
    assert (await api.kernel.orders.get(web.json()["id"])).status.value == "placed"
    placed = (await order(api, body)).json()["order"]
    assert_problem(await api.client.post(f"/channels/kiosk/orders/{placed['id']}/ready", headers=api.h("webshop")), 403)
    assert_problem(
        await api.client.post(
            f"/channels/kiosk/orders/{placed['id']}/ready",
            json={"note": "x", "to": "collected"},
            headers=api.h("kiosk"),
        ),
        422,
        "to",
    )
    assert (await api.kernel.orders.get(placed["id"])).status.value == "placed"


# -- start-up checks -------------------------------------------------------------------------------


def kiosk_config(tmp_path: Path, **kiosk: Any) -> dict[str, Any]:
    config = store_config(f"sqlite:///{tmp_path / 'k.db'}")
    config["channels"]["kiosk"] = {"store": "store-a", "locations": ["store-a", "wh", "store-b"], **kiosk}
    return config


@pytest.mark.parametrize(
    ("kiosk", "key", "words"),
    [
        ({"store": None}, "channels.kiosk.store", "required"),
        ({"store": "wh"}, "channels.kiosk.store", "warehouse, not a store"),
        ({"store": "mars"}, "channels.kiosk.store", "no location 'mars'"),
        ({"locations": ["wh", "store-b"]}, "channels.kiosk.locations", "store-a"),
    ],
)
async def test_a_wrong_store_stops_start_up(tmp_path: Path, kiosk: dict[str, Any], key: str, words: str) -> None:
    config = kiosk_config(tmp_path, **kiosk)
    if kiosk.get("store", "") is None:
        del config["channels"]["kiosk"]["store"]
    kernel = Kernel.from_config(config, base_dir=str(tmp_path))
    with pytest.raises(ConfigError) as routes:
        create_app(kernel)  # the gateway refuses before anything starts
    assert routes.value.key == key and words in str(routes.value)
    with pytest.raises(ConfigError) as started:
        await kernel.start()
    assert started.value.key == key
    await kernel.close()


async def test_a_store_without_pickup_or_a_short_secret_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kiosk_config(tmp_path, store="store-b")
    config["locations"][2]["pickup"] = False
    with pytest.raises(ConfigError) as info:
        create_app(Kernel.from_config(config, base_dir=str(tmp_path)))
    assert info.value.key == "channels.kiosk.store" and "does not allow pickup" in str(info.value)

    monkeypatch.setenv(SECRET_ENV, "short")
    kernel = Kernel.from_config(kiosk_config(tmp_path, handoff_secret=f"env:{SECRET_ENV}"), base_dir=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        TaskRunner(kernel)  # a worker refuses too
    assert info.value.key == "channels.kiosk.handoff_secret"
    await kernel.close()


@pytest.mark.parametrize(
    ("kiosk", "key"),
    [
        ({"release_uncollected_after_hours": 0}, "channels.kiosk.release_uncollected_after_hours"),
        ({"handoff_minutes": 0}, "channels.kiosk.handoff_minutes"),
        ({"handoff_secret": "literal-secret-in-the-file"}, "channels.kiosk.handoff_secret"),
        ({"stores": "store-a"}, "channels.kiosk.stores"),
    ],
)
def test_settings_are_validated_when_the_config_is_read(tmp_path: Path, kiosk: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Kernel.from_config(kiosk_config(tmp_path, **kiosk), base_dir=str(tmp_path))
    assert info.value.key == key


def test_the_cli_exits_2_naming_the_key_before_anything_starts(tmp_path: Path) -> None:
    toml = STARTER_TOML.replace('store = "store-downtown"', 'store = "wh-central"')
    assert toml != STARTER_TOML
    (tmp_path / "omniretail.toml").write_text(toml)
    result = subprocess.run(
        [sys.executable, "-m", "omniretail", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "channels.kiosk.store" in lines[0] and "not a store" in lines[0]
    assert not (tmp_path / "omniretail.db").exists()
