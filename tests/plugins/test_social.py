"""The social commerce channel: Meta and TikTok catalog CSV, shoppable links with attribution,
signed Meta webhooks that turn buy intents into carts. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from omniretail_social import intents
from omniretail_social.intents import CatalogIndex
from sqlalchemy import func, select

from omniretail.domain.customer import Identity, IdentityKind
from omniretail.publishing import Publisher
from omniretail.services.catalog import CatalogSnapshot, ProductDraft
from omniretail.services.clock import FakeClock
from omniretail.storage import tables
from omniretail.storage.publications import PublicationStore
from tests.integration.gateway_fixtures import Api, make_api

SECRET = "meta-app-secret-for-tests"
VERIFY = "verify-me-please"
PROBLEM = "application/problem+json"
META_REQUIRED = ("id", "title", "description", "availability", "condition", "price", "link", "image_link")
TIKTOK_REQUIRED = (
    "sku_id",
    "title",
    "description",
    "availability",
    "condition",
    "price",
    "link",
    "image_link",
    "brand",
)
AVAILABILITY = {"in stock", "out of stock", "preorder", "available for order", "discontinued"}
PRICE = re.compile(r"^\d+\.\d{2} EUR$")


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
async def social(db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """The gateway over the stocked sample store, with the social channel's secrets configured."""
    monkeypatch.setenv("TEST_META_APP_SECRET", SECRET)
    monkeypatch.setenv("TEST_META_VERIFY_TOKEN", VERIFY)
    import tests.integration.gateway_fixtures as gf

    plain = gf.store_config

    def configured(url: str, **overrides: Any) -> dict[str, Any]:
        config = plain(url, **overrides)
        config["channels"]["social"] = {
            "locations": ["wh", "store-a"],
            "app_secret": "env:TEST_META_APP_SECRET",
            "verify_token": "env:TEST_META_VERIFY_TOKEN",
            "utm_source": "instagram",
        }
        return config

    monkeypatch.setattr(gf, "store_config", configured)
    async for api in make_api(db_url, tmp_path, clock):
        yield api


def sign(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def comment(text: str, *, username: str = "ana", user_id: str = "9001", comment_id: str = "c-1", media: str = "m-42"):
    return {
        "object": "instagram",
        "entry": [
            {
                "id": "17841400000000000",
                "time": 1767225600,
                "changes": [
                    {
                        "field": "comments",
                        "value": {
                            "from": {"id": user_id, "username": username},
                            "id": comment_id,
                            "text": text,
                            "media": {"id": media, "media_product_type": "FEED"},
                        },
                    }
                ],
            }
        ],
    }


def message(text: str, *, sender: str = "9001", mid: str = "mid.1") -> dict[str, Any]:
    return {
        "object": "instagram",
        "entry": [
            {
                "id": "17841400000000000",
                "time": 1767225600,
                "messaging": [
                    {
                        "sender": {"id": sender},
                        "recipient": {"id": "17841400000000000"},
                        "timestamp": 1767225600123,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }


async def deliver(api: Api, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    return await api.client.post("/channels/social/webhooks", content=body, headers=sign(body))


async def counts(api: Api) -> dict[str, int]:
    async with api.kernel.db.read() as conn:
        return {
            name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in (
                ("customers", tables.customers),
                ("carts", tables.carts),
                ("identities", tables.identities),
                ("deliveries", tables.inbound_deliveries),
            )
        }


def idem() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["type"].endswith("/" + code), body
    return body


async def feed(api: Api, name: str) -> tuple[list[str], list[dict[str, str]]]:
    r = await api.client.get(f"/channels/social/feeds/{name}.csv", params={"token": api.keys["social"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(r.content.decode("utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def product(handle: str, sku: str, **extra: Any) -> ProductDraft:
    data: dict[str, Any] = {
        "handle": handle,
        "title": f"Item {sku}",
        "description": "A thing.",
        "brand": "Acme",
        "media": [{"url": f"https://images.example.com/{handle}.jpg"}],
        "variants": [{"sku": sku, "prices": [{"amount": 1234, "currency": "EUR"}]}],
    }
    data.update(extra)
    return msgspec.convert(data, ProductDraft)


# -- catalogs --------------------------------------------------------------------------------------


async def test_both_catalogs_carry_every_required_field(api: Api) -> None:
    kernel = api.kernel
    for location in ("wh", "store-a", "store-b"):
        await kernel.inventory.set_on_hand("ESPRESSO", location, 0, reason="sold out")
    run = await Publisher(kernel).publish("social")
    assert run.rejected == 0 and run.failed == 0 and run.created == 6
    snapshot = await kernel.catalog.snapshot()
    skus = set(snapshot.by_sku)

    fields, rows = await feed(api, "meta")
    assert fields[: len(META_REQUIRED)] == list(META_REQUIRED) and {"brand", "gtin", "mpn", "item_group_id"} <= set(
        fields
    )
    assert {row["id"] for row in rows} == skus and len(rows) == len(skus)
    for row in rows:
        assert all(row[name] for name in META_REQUIRED), row
        assert row["brand"] or row["gtin"] or row["mpn"]
        assert row["availability"] in AVAILABILITY and PRICE.match(row["price"]), row
        assert row["condition"] == "new" and row["image_link"].startswith("https://")
    by_id = {row["id"]: row for row in rows}
    assert by_id["ESPRESSO"]["availability"] == "out of stock"
    assert by_id["LATTE-REG"]["availability"] == "in stock"
    assert by_id["LATTE-REG"]["price"] == "4.50 EUR" and by_id["LATTE-REG"]["gtin"] == "4006381330015"
    latte = snapshot.by_handle["latte"]
    assert by_id["LATTE-REG"]["item_group_id"] == by_id["LATTE-LRG"]["item_group_id"] == latte.id
    assert by_id["ESPRESSO"]["item_group_id"] == ""
    assert by_id["LATTE-REG"]["title"] == "Caffè Latte - Regular"

    fields, tiktok = await feed(api, "tiktok")
    assert fields[0] == "sku_id" and fields[: len(TIKTOK_REQUIRED)] == list(TIKTOK_REQUIRED)
    assert {row["sku_id"] for row in tiktok} == skus
    for row in tiktok:
        assert all(row[name] for name in TIKTOK_REQUIRED), row
        assert row["availability"] in AVAILABILITY and PRICE.match(row["price"])
        assert row["link"] == by_id[row["sku_id"]]["link"]

    # The feed's link is the product's shoppable link.
    r = await api.client.get("/channels/social/links/LATTE-REG", headers=api.h("social"))
    assert r.status_code == 200 and r.json()["link"] == by_id["LATTE-REG"]["link"]
    query = parse_qs(urlsplit(by_id["LATTE-REG"]["link"]).query)
    assert query == {"products": ["LATTE-REG:1"], "utm_source": ["social"], "utm_medium": ["social"]}
    assert "%3A" in by_id["LATTE-REG"]["link"]  # Meta's checkout URL escapes ':' and ','


async def test_quoting_survives_commas_quotes_and_line_breaks(api: Api) -> None:
    kernel = api.kernel
    title = 'Mug, "Big" edition'
    description = 'Holds 1 l, keeps it hot.\nSay "hello"; it\'s, well, a mug.\r\nSecond line'
    await kernel.catalog.create(product("tricky-mug", "MUG-TRICKY", title=title, description=description))
    await Publisher(kernel).publish("social")
    for name, key in (("meta", "id"), ("tiktok", "sku_id")):
        _fields, rows = await feed(api, name)
        row = next(r for r in rows if r[key] == "MUG-TRICKY")
        assert row["title"] == title and row["description"] == description
        assert row["brand"] == "Acme" and row["price"] == "12.34 EUR"
        assert len(rows) == 9  # 8 sample SKUs + this one: nothing split into extra rows


async def test_products_either_catalog_would_refuse_are_rejected_with_a_reason(api: Api) -> None:
    kernel = api.kernel
    cases = {
        "no-image": (product("no-image", "NOIMG", media=[]), "media: Meta and TikTok require an image_link"),
        "no-text": (product("no-text", "NOTEXT", description="  "), "description: Meta and TikTok require"),
        "no-ids": (product("no-ids", "NOIDS", brand=None), "brand: Meta requires a brand, gtin or mpn"),
        "gtin-only": (
            product(
                "gtin-only",
                "GTINONLY",
                brand=None,
                variants=[{"sku": "GTINONLY", "gtin": "4006381330015", "prices": [{"amount": 100, "currency": "EUR"}]}],
            ),
            "brand: TikTok requires a brand",
        ),
        "no-eur": (
            product("no-eur", "NOEUR", variants=[{"sku": "NOEUR", "prices": [{"amount": 100, "currency": "USD"}]}]),
            "prices: 'NOEUR' has no price in EUR",
        ),
    }
    created = {handle: await kernel.catalog.create(draft) for handle, (draft, _) in cases.items()}
    run = await Publisher(kernel).publish("social")
    assert run.rejected == len(cases) and run.created == 6
    store = PublicationStore(kernel.db)
    for handle, (_draft, reason) in cases.items():
        record = await store.record("social", created[handle].id)
        assert record is not None and record.status == "rejected"
        assert record.reason is not None and record.reason.startswith(reason), record.reason
    _fields, rows = await feed(api, "meta")
    assert not {"NOIMG", "NOTEXT", "NOIDS", "GTINONLY", "NOEUR"} & {row["id"] for row in rows}


async def test_feeds_need_the_social_key(api: Api) -> None:
    await Publisher(api.kernel).publish("social")
    for name in ("meta", "tiktok"):
        path = f"/channels/social/feeds/{name}.csv"
        assert_problem(await api.client.get(path), 401)
        assert_problem(await api.client.get(path, params={"token": "omr_nope"}), 401)
        assert_problem(await api.client.get(path, params={"token": api.keys["webshop"]}), 403)
        assert (await api.client.get(path, headers=api.h("social"))).status_code == 200
        assert (await api.client.get(path, params={"token": api.keys["admin"]})).status_code == 200


# -- shoppable links and attribution ---------------------------------------------------------------


async def test_a_shoppable_link_becomes_an_attributed_order(api: Api) -> None:
    r = await api.client.get(
        "/channels/social/links/LATTE-LRG",
        params={"post": "17895695668004550", "campaign": "spring-launch", "quantity": 2},
        headers=api.h("social"),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["utm"] == {
        "utm_source": "social",
        "utm_medium": "social",
        "utm_campaign": "spring-launch",
        "utm_content": "17895695668004550",
    }
    assert out["caption"].startswith("Caffè Latte")
    link = out["link"]
    assert link.startswith("http://127.0.0.1:8000/channels/webshop/checkout?products=LATTE-LRG%3A2&")

    # The shopper follows the link: the web shop builds the cart and redirects to the storefront.
    followed = await api.client.get(link)
    assert followed.status_code == 303, followed.text
    cart_id = followed.headers["location"].rsplit("/", 1)[-1]
    cart = (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h("webshop"))).json()
    assert [(line["sku"], line["quantity"]) for line in cart["lines"]] == [("LATTE-LRG", 2)]

    r = await api.client.post(
        f"/v1/carts/{cart_id}/checkout", json={"email": "ana@example.com"}, headers=api.h("webshop", **idem())
    )
    assert r.status_code == 201, r.text
    order_id, total = r.json()["id"], r.json()["total"]
    order = (await api.client.get(f"/v1/admin/orders/{order_id}", headers=api.h("admin"))).json()
    assert order["attribution"]["utm_source"] == "social"
    assert order["attribution"]["utm_medium"] == "social"
    assert order["attribution"]["utm_campaign"] == "spring-launch"
    assert order["attribution"]["utm_content"] == "17895695668004550"

    # An order from elsewhere does not count.
    other = await api.client.get("/channels/webshop/checkout", params={"products": "ESPRESSO:1"})
    plain_cart = other.headers["location"].rsplit("/", 1)[-1]
    r = await api.client.post(
        f"/v1/carts/{plain_cart}/checkout", json={"email": "bo@example.com"}, headers=api.h("webshop", **idem())
    )
    assert r.status_code == 201

    report = (await api.client.get("/channels/social/attribution", headers=api.h("social"))).json()
    assert report["orders"] == 1 and report["scanned"] == 2 and report["complete"] is True
    assert report["rows"] == [
        {
            "utm_campaign": "spring-launch",
            "utm_content": "17895695668004550",
            "orders": 1,
            "revenue": total,
            "currency": "EUR",
        }
    ]
    assert_problem(await api.client.get("/channels/social/attribution", headers=api.h("webshop")), 403)


async def test_links_refuse_bad_input(api: Api) -> None:
    h = api.h("social")
    assert_problem(await api.client.get("/channels/social/links/NOPE", headers=h), 404)
    assert_problem(await api.client.get("/channels/social/links/LATTE-REG", params={"quantity": 0}, headers=h), 400)
    assert_problem(await api.client.get("/channels/social/links/LATTE-REG", params={"post": "x" * 101}, headers=h), 400)
    assert_problem(await api.client.get("/channels/social/links/LATTE-REG", params={"post": ""}, headers=h), 400)
    assert_problem(
        await api.client.get("/channels/social/links/LATTE-REG", params={"campaign": "a\nb"}, headers=h), 400
    )
    assert_problem(await api.client.get("/channels/social/links/LATTE-REG"), 401)
    r = await api.client.get("/channels/social/links/LATTE-REG", params={"post": "a b&c=d"}, headers=h)
    assert parse_qs(urlsplit(r.json()["link"]).query)["utm_content"] == ["a b&c=d"]


# -- webhooks ----------------------------------------------------------------------------------------


async def test_a_signed_buy_comment_makes_a_cart_for_the_commenter(social: Api) -> None:
    kernel = social.kernel
    r = await deliver(social, comment("Love it! buy 2 latte please", username="Ana.Bakes", media="m-777"))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["received"] == 1 and answer["duplicates"] == 0 and len(answer["replies"]) == 1
    reply = answer["replies"][0]
    assert reply["recipient"] == {"comment_id": "c-1"}
    link = reply["message"]["cart_link"]
    assert link in reply["message"]["text"]
    assert parse_qs(urlsplit(link).query) == {
        "products": ["LATTE-REG:2"],
        "utm_source": ["instagram"],
        "utm_medium": ["social"],
        "utm_content": ["m-777"],
    }

    customer = await kernel.customers.find(
        Identity(kind=IdentityKind.SOCIAL_HANDLE, value="@ana.bakes", namespace="instagram")
    )
    assert customer is not None and customer.name == "Ana.Bakes"
    by_id = await kernel.customers.find(
        Identity(kind=IdentityKind.SOCIAL_HANDLE, value="9001", namespace="instagram:id")
    )
    assert by_id is not None and by_id.id == customer.id
    cart = await kernel.carts.get(reply["cart_id"])
    assert cart.channel == "social" and cart.customer_id == customer.id
    assert [(line.sku, line.quantity) for line in cart.lines] == [("LATTE-REG", 2)]
    assert cart.attribution == {"utm_source": "instagram", "utm_medium": "social", "utm_content": "m-777"}

    # The cart link checks out on the web shop, and the order keeps the social origin.
    followed = await social.client.get(link)
    assert followed.status_code == 303
    web_cart = followed.headers["location"].rsplit("/", 1)[-1]
    r = await social.client.post(
        f"/v1/carts/{web_cart}/checkout", json={"email": "ana@example.com"}, headers=social.h("webshop", **idem())
    )
    assert r.status_code == 201, r.text
    order = (await social.client.get(f"/v1/admin/orders/{r.json()['id']}", headers=social.h("admin"))).json()
    assert order["attribution"]["utm_content"] == "m-777" and order["attribution"]["utm_medium"] == "social"

    # A direct message from the same person reaches the same customer record.
    r = await deliver(social, message("#buy a large latte", sender="9001", mid="mid.77"))
    reply = r.json()["replies"][0]
    assert reply["recipient"] == {"id": "9001"}
    dm_cart = await kernel.carts.get(reply["cart_id"])
    assert dm_cart.customer_id == customer.id
    assert [(line.sku, line.quantity) for line in dm_cart.lines] == [("LATTE-LRG", 1)]
    assert "utm_content" not in dm_cart.attribution


@pytest.mark.parametrize(
    ("text", "sku", "quantity"),
    [
        ("buy LATTE-REG", "LATTE-REG", 1),
        ("#buy croissant", "CROISSANT", 1),
        ("BUY 3 Butter Croissants!", "CROISSANT", 3),
        ("buy 2 cinnamon rolls", "CINNAMON-BUN", 2),
        ("buy kanelbulle x4", "CINNAMON-BUN", 4),
        ("i want to buy the coffee beans, ground please", "BEANS-250-GROUND", 1),
        ("buy caffe latte large 2x", "LATTE-LRG", 2),
    ],
)
async def test_buy_intents_match_sku_handle_title_and_voice_synonyms(
    social: Api, text: str, sku: str, quantity: int
) -> None:
    r = await deliver(social, message(text, mid=f"mid-{uuid.uuid4()}"))
    replies = r.json()["replies"]
    assert len(replies) == 1 and replies[0].get("cart_id"), replies
    cart = await social.kernel.carts.get(replies[0]["cart_id"])
    assert [(line.sku, line.quantity) for line in cart.lines] == [(sku, quantity)]


async def test_other_messages_and_unknown_products_change_nothing(social: Api) -> None:
    before = await counts(social)
    r = await deliver(social, comment("What a lovely photo 😍", comment_id="c-10"))
    assert r.status_code == 200 and r.json() == {"received": 1, "duplicates": 0, "replies": []}
    r = await deliver(social, comment("buy a unicorn", comment_id="c-11"))
    reply = r.json()["replies"][0]
    assert reply["recipient"] == {"comment_id": "c-11"} and "cart_link" not in reply["message"]
    assert "cart_id" not in reply
    r = await deliver(social, comment("buy 500 latte", comment_id="c-12"))
    assert "cart_link" not in r.json()["replies"][0]["message"]
    # The merchant's own comment and a message echo are not shoppers.
    own = comment("buy 2 latte", user_id="17841400000000000", comment_id="c-13")
    echo = message("buy 2 latte", mid="mid.echo")
    echo["entry"][0]["messaging"][0]["message"]["is_echo"] = True
    for payload in (own, echo, {"object": "instagram", "entry": []}, {"object": "page"}):
        r = await deliver(social, payload)
        assert r.status_code == 200 and r.json()["replies"] == [], r.text
    # Other change fields (mentions, story insights, ...) are ignored, whatever their shape.
    other = {"object": "instagram", "entry": [{"id": "1", "time": 1, "changes": [{"field": "mentions", "value": [1]}]}]}
    assert (await deliver(social, other)).status_code == 200
    assert await counts(social) == before


async def test_bad_signatures_are_refused_and_store_nothing(social: Api) -> None:
    before = await counts(social)
    body = json.dumps(comment("buy 2 latte")).encode()
    good = sign(body)["X-Hub-Signature-256"]
    url = "/channels/social/webhooks"
    ct = {"Content-Type": "application/json"}
    attempts = {
        "no signature": (body, ct),
        "wrong secret": (body, {**ct, **sign(body, "not-the-secret")}),
        "tampered body": (body.replace(b"buy 2", b"buy 9"), {**ct, "X-Hub-Signature-256": good}),
        "sha1 scheme": (body, {**ct, "X-Hub-Signature-256": good.replace("sha256=", "sha1=")}),
        "bare hex": (body, {**ct, "X-Hub-Signature-256": good.removeprefix("sha256=")}),
        "empty": (body, {**ct, "X-Hub-Signature-256": ""}),
        "garbage": (body, {**ct, "X-Hub-Signature-256": "sha256=zz\u00e9\u00ff".encode("latin-1")}),
        "truncated": (body, {**ct, "X-Hub-Signature-256": good[:-2]}),
        "old header only": (
            body,
            {**ct, "X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest()},
        ),
    }
    for name, (content, headers) in attempts.items():
        r = await social.client.post(url, content=content, headers={k: v for k, v in headers.items()})
        problem = assert_problem(r, 401, "signature-invalid")
        assert problem["errors"][0]["field"] == "header.x-hub-signature-256", name
    assert await counts(social) == before
    # Upper-case hex is the same signature.
    r = await social.client.post(url, content=body, headers={**ct, "X-Hub-Signature-256": "sha256=" + good[7:].upper()})
    assert r.status_code == 200 and r.json()["replies"][0]["cart_id"]


async def test_signed_garbage_is_a_400_and_stores_nothing(social: Api) -> None:
    before = await counts(social)
    for body in (b"{not json", b"[]", b'{"entry": "nope"}', b'{"entry": [{"changes": {"x": 1}}]}', b""):
        r = await social.client.post("/channels/social/webhooks", content=body, headers=sign(body))
        assert_problem(r, 400, "invalid-payload")
    assert await counts(social) == before


async def test_webhooks_are_refused_when_no_secret_is_configured(api: Api) -> None:
    before = await counts(api)
    body = json.dumps(comment("buy 2 latte")).encode()
    r = await api.client.post("/channels/social/webhooks", content=body, headers=sign(body))
    assert "app_secret" in assert_problem(r, 401, "signature-invalid")["detail"]
    assert await counts(api) == before
    r = await api.client.get(
        "/channels/social/webhooks",
        params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
    )
    assert_problem(r, 403)


async def test_subscription_handshake(social: Api) -> None:
    url = "/channels/social/webhooks"
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    r = await social.client.get(url, params=ok)
    assert r.status_code == 200 and r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")
    assert_problem(
        await social.client.get(url, params={**ok, "hub.verify_token": "guess"}), 403, "verify-token-invalid"
    )
    assert_problem(await social.client.get(url, params={**ok, "hub.verify_token": VERIFY + "x"}), 403)
    assert_problem(await social.client.get(url, params={k: v for k, v in ok.items() if k != "hub.verify_token"}), 403)
    assert_problem(await social.client.get(url, params={**ok, "hub.mode": "unsubscribe"}), 400)
    assert_problem(await social.client.get(url, params={k: v for k, v in ok.items() if k != "hub.challenge"}), 400)
    assert_problem(await social.client.get(url, params={**ok, "hub.challenge": "x" * 501}), 400)


async def test_a_repeated_delivery_makes_no_second_cart(social: Api) -> None:
    payload = comment("buy 2 latte", comment_id="c-dup")
    first = (await deliver(social, payload)).json()
    assert first["duplicates"] == 0 and first["replies"][0]["cart_id"]
    after_first = await counts(social)
    again = (await deliver(social, payload)).json()
    assert again == {"received": 1, "duplicates": 1, "replies": []}
    # Meta may batch the same comment with a different entry time: still the same comment.
    payload["entry"][0]["time"] += 60
    assert (await deliver(social, payload)).json()["duplicates"] == 1
    assert await counts(social) == after_first

    # Concurrent deliveries of one new comment: exactly one cart.
    payload = comment("buy croissant", comment_id="c-race", username="bo")
    results = await asyncio.gather(*(deliver(social, payload) for _ in range(6)))
    assert all(r.status_code == 200 for r in results)
    made = [reply["cart_id"] for r in results for reply in r.json()["replies"]]
    assert len(made) == 1 and sum(r.json()["duplicates"] for r in results) == 5
    now = await counts(social)
    assert now["carts"] == after_first["carts"] + 1 and now["deliveries"] == after_first["deliveries"] + 1


async def test_a_claim_whose_processing_died_is_taken_over_later(social: Api, clock: FakeClock) -> None:
    """A claim left unfinished (the process died mid-way) blocks repeats for a while, then a
    retry may take it over; a failure inside processing releases the claim at once."""
    payload = comment("buy espresso", comment_id="c-stale")
    async with social.kernel.db.write() as conn:
        await conn.execute(
            tables.inbound_deliveries.insert().values(
                channel="social", delivery_id="instagram:comment:c-stale", received_at=clock(), result=None
            )
        )
    assert (await deliver(social, payload)).json()["duplicates"] == 1  # still in flight
    clock.advance(minutes=6)
    taken = (await deliver(social, payload)).json()
    assert taken["duplicates"] == 0 and taken["replies"][0]["cart_id"]
    assert (await deliver(social, payload)).json()["duplicates"] == 1

    calls = 0
    real = social.kernel.carts.set_quantity

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await real(*args, **kwargs)

    social.kernel.carts.set_quantity = flaky  # type: ignore[method-assign]
    payload = comment("buy espresso", comment_id="c-flaky")
    failed = await deliver(social, payload)
    assert failed.status_code == 500  # Meta retries a non-2xx delivery
    retried = (await deliver(social, payload)).json()
    assert retried["duplicates"] == 0 and retried["replies"][0]["cart_id"]


async def test_publishing_works_with_the_secrets_configured(social: Api) -> None:
    run = await Publisher(social.kernel).publish("social")
    assert run.created == 6
    _fields, rows = await feed(social, "meta")
    assert parse_qs(urlsplit(rows[0]["link"]).query)["utm_source"] == ["instagram"]


async def test_channel_declares_what_it_carries(social: Api) -> None:
    spec = social.kernel.channels["social"].spec
    assert {c.value for c in spec.capabilities} == {"browse", "cart"}
    assert "Meta catalog CSV" in spec.formats and "TikTok catalog CSV" in spec.formats


# -- intents without a database ----------------------------------------------------------------------


def test_buy_intent_parsing() -> None:
    cases = {
        "buy 2 latte": ("latte", 2),
        "#buy croissant": ("croissant", 1),
        "BUY LATTE-REG": ("latte reg", 1),
        "could I buy two croissants?": ("croissants", 2),
        "buy latte x3": ("latte", 3),
        "buy 0 latte": ("latte", None),
        "buy 100 latte": ("latte", None),
    }
    for text, (query, quantity) in cases.items():
        intent = intents.parse(text)
        assert intent is not None and (intent.query, intent.quantity) == (query, quantity), text
    for text in ("buyer's remorse", "nice", "rebuy", "", "#buyer"):
        assert intents.parse(text) is None, text


def test_an_ambiguous_name_names_no_product() -> None:
    drafts = [
        product("red-mug", "MUG-RED", channel_content={"voice": {"synonyms": ["mug"]}}),
        product("blue-mug", "MUG-BLUE", channel_content={"voice": {"synonyms": ["mug"]}}),
    ]
    snapshot = CatalogSnapshot(1, [d.build(f"p{i}", 1) for i, d in enumerate(drafts)])
    index = CatalogIndex(snapshot, "EUR")
    found = index.find("mug")
    assert found.product is None and found.candidates == ("Item MUG-BLUE", "Item MUG-RED")
    assert index.find("mug red").variant is not None and index.find("mug red").variant.sku == "MUG-RED"
    assert index.find("nothing").product is None and index.find("").product is None


# -- order status, asked in a comment or a message ----------------------------------------------------


async def test_a_customer_asks_the_status_of_their_order_in_a_message(social: Api) -> None:
    bought = (await deliver(social, comment("buy 2 latte", username="ana", user_id="9001"))).json()
    cart_id = bought["replies"][0]["cart_id"]
    r = await social.client.post(
        f"/v1/carts/{cart_id}/checkout",
        json={"email": "ana@example.com"},
        headers=social.h("admin", **{"Idempotency-Key": '"social-status-1"'}),
    )
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    before = await counts(social)
    asked = (await deliver(social, message(f"where is my order {number.lower()}?", sender="9001", mid="m-s1"))).json()
    assert asked["replies"][0]["message"]["text"] == f"Your order {number} is placed."
    stranger = (await deliver(social, message(f"status {number}", sender="777", mid="m-s2"))).json()
    assert "could not find" in stranger["replies"][0]["message"]["text"]
    assert await counts(social) == before  # asking creates nothing, not even a customer
