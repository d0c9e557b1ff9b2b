"""Web shop channel: Google Merchant feeds, product pages, the checkout URL."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any
from urllib.parse import quote

from lxml import etree

from omniretail.publishing import Publisher

G = "{http://base.google.com/ns/1.0}"
REQUIRED = ("id", "title", "description", "link", "image_link", "availability", "price")


async def publish(api: Any) -> None:
    run = await Publisher(api.kernel).publish("webshop")
    assert run.failed == 0 and run.rejected == 0


async def test_google_rss_feed_carries_the_required_attributes(api: Any) -> None:
    await publish(api)
    r = await api.client.get("/channels/webshop/feeds/google.xml", headers=api.h("webshop"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/rss+xml")
    root = etree.fromstring(r.content)
    assert root.tag == "rss" and root.get("version") == "2.0"
    items = root.findall("./channel/item")
    skus = {v.sku for p in (await api.kernel.catalog.snapshot()).products for v in p.variants}
    assert {i.findtext(f"{G}id") for i in items} == skus
    for item in items:
        for name in REQUIRED:
            assert item.findtext(f"{G}{name}"), (name, etree.tostring(item))
        assert re.fullmatch(r"\d+\.\d{2} EUR", item.findtext(f"{G}price") or "")
        assert item.findtext(f"{G}availability") in {"in_stock", "out_of_stock", "preorder", "backorder"}
        assert item.findtext(f"{G}brand") and item.findtext(f"{G}gtin")
    latte = next(i for i in items if i.findtext(f"{G}id") == "LATTE-REG")
    assert latte.findtext(f"{G}price") == "4.50 EUR" and latte.findtext(f"{G}item_group_id")


async def test_google_tsv_feed_parses_and_token_query_works(api: Any) -> None:
    await publish(api)
    token = api.keys["webshop"]
    r = await api.client.get(f"/channels/webshop/feeds/google.tsv?token={token}")
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text), delimiter="\t"))
    skus = {v.sku for p in (await api.kernel.catalog.snapshot()).products for v in p.variants}
    assert {row["id"] for row in rows} == skus and len(rows) == 8
    for row in rows:
        assert all(row[name] for name in REQUIRED)
    assert (await api.client.get("/channels/webshop/feeds/google.tsv")).status_code == 401
    assert (await api.client.get("/channels/webshop/feeds/google.tsv?token=omr_wrong")).status_code == 401
    other = api.keys["social"]
    assert (await api.client.get(f"/channels/webshop/feeds/google.tsv?token={other}")).status_code == 403


async def test_feeds_follow_the_catalog_after_republish(api: Any) -> None:
    await publish(api)
    snapshot = await api.kernel.catalog.snapshot()
    mug = snapshot.by_handle["travel-mug"]
    await api.kernel.catalog.set_status(mug.id, "archived")
    run = await Publisher(api.kernel).publish("webshop")
    assert (run.withdrawn, run.rendered) == (1, 0)
    r = await api.client.get("/channels/webshop/feeds/google.tsv", headers=api.h("webshop"))
    assert "MUG-TRAVEL-BLK" not in r.text


async def test_product_page_has_json_ld_and_open_graph(api: Any) -> None:
    r = await api.client.get("/channels/webshop/products/LATTE-REG")  # public: no key
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = etree.HTML(r.text)
    data = json.loads(html.xpath("//script[@type='application/ld+json']/text()")[0])
    assert data["@type"] == "Product" and data["sku"] == "LATTE-REG" and data["gtin13"]
    assert data["brand"]["name"] == "Riverside Roasters"
    offer = data["offers"]
    assert (offer["price"], offer["priceCurrency"]) == ("4.50", "EUR")
    assert offer["availability"] == "https://schema.org/InStock"
    og = {m.get("property"): m.get("content") for m in html.xpath("//meta[@property]")}
    assert og["og:type"] == "product" and og["product:price:amount"] == "4.50"
    assert og["product:price:currency"] == "EUR" and og["product:availability"] == "in stock"
    assert og["product:retailer_item_id"] == "LATTE-REG"
    missing = await api.client.get("/channels/webshop/products/NOPE")
    assert missing.status_code == 404


async def test_checkout_url_builds_a_cart_and_redirects(api: Any) -> None:
    link = "/channels/webshop/checkout?products=" + quote("ESPRESSO:2,CROISSANT:1") + "&coupon=WELCOME&utm_source=meta"
    r = await api.client.get(link)
    assert r.status_code == 303
    cart_id = r.headers["location"].rsplit("/", 1)[-1]
    cart = (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h("webshop"))).json()
    assert {x["sku"]: x["quantity"] for x in cart["lines"]} == {"ESPRESSO": 2, "CROISSANT": 1}
    assert cart["coupon"] == "WELCOME" and cart["total"] == 2 * 280 + 320
    page = await api.client.get(r.headers["location"].replace("http://127.0.0.1:8000", ""))
    assert page.status_code == 200 and "Your cart" in page.text
    order = await api.client.post(
        f"/v1/carts/{cart_id}/checkout",
        json={"email": "m@example.com"},
        headers=api.h("webshop", **{"Idempotency-Key": '"meta-1"'}),
    )
    assert order.json()["attribution"] == {"utm_source": "meta"}


async def test_checkout_url_refuses_bad_links_without_making_a_cart(api: Any) -> None:
    async def carts() -> int:
        from sqlalchemy import func, select

        from omniretail.storage import tables as t

        async with api.kernel.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(t.carts)) or 0)

    before = await carts()
    for query in (
        "products=NOPE:1",
        "products=ESPRESSO:0",
        "products=ESPRESSO:abc",
        "products=",
        "",
        "products=ESPRESSO:1000",
        "products=:2",
    ):
        r = await api.client.get(f"/channels/webshop/checkout?{query}")
        assert r.status_code == 400, query
        assert r.headers["content-type"].startswith("text/html") and "<h1>" in r.text
    assert await carts() == before
