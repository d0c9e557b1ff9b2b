"""The gateway through Litestar's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

from omniretail.gateway.idempotency import IdempotencyStore
from omniretail.services.clock import FakeClock
from tests.integration.gateway_fixtures import Api, make_api

PROBLEM = "application/problem+json"


def idem() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


def assert_problem(response: object, status: int, field: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith(PROBLEM)  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["type"].startswith("https://omniretail.dev/problems/")
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body  # type: ignore[no-any-return]


async def new_cart(api: Api, channel: str = "webshop", customer: str | None = None, **lines: int) -> str:
    r = await api.client.post("/v1/carts", headers=api.h(channel, customer=customer))
    assert r.status_code == 201, r.text
    cart_id = str(r.json()["id"])
    for sku, qty in lines.items():
        r = await api.client.post(
            f"/v1/carts/{cart_id}/lines",
            json={"sku": sku.replace("_", "-"), "quantity": qty},
            headers=api.h(channel, customer=customer),
        )
        assert r.status_code == 200, r.text
    return cart_id


# -- auth --------------------------------------------------------------------------------------


async def test_health_is_public_and_everything_else_needs_a_key(api: Api) -> None:
    r = await api.client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    body = assert_problem(await api.client.get("/v1/products"), 401)
    assert "API key" in body["detail"]
    assert_problem(await api.client.get("/v1/products", headers={"Authorization": "Bearer omr_nope"}), 401)
    assert_problem(await api.client.get("/v1/products", headers={"Authorization": "Basic abc"}), 401)


async def test_scopes_and_channel_routes(api: Api) -> None:
    assert_problem(await api.client.get("/v1/admin/orders", headers=api.h("webshop")), 403)
    assert (await api.client.get("/v1/admin/orders", headers=api.h("admin"))).status_code == 200
    # A plugin's routes: its own key or an admin key; another channel's key is refused.
    assert (await api.client.get("/channels/ping/hello", headers=api.h("ping"))).json() == {"says": "hi"}
    assert (await api.client.get("/channels/ping/hello", headers=api.h("admin"))).status_code == 200
    assert_problem(await api.client.get("/channels/ping/hello", headers=api.h("webshop")), 403)
    assert_problem(await api.client.get("/channels/ping/hello"), 401)
    assert (await api.client.get("/channels/ping/open")).json() == {"public": "yes"}


async def test_revoked_key_stops_working(api: Api) -> None:
    r = await api.client.post("/v1/admin/keys", json={"channel": "social"}, headers=api.h("admin"))
    assert r.status_code == 201
    secret, key_id = r.json()["secret"], r.json()["id"]
    assert secret.startswith("omr_")
    listed = (await api.client.get("/v1/admin/keys", headers=api.h("admin"))).json()
    assert all(k["secret"] is None for k in listed) and key_id in [k["id"] for k in listed]
    assert (await api.client.get("/v1/channels", headers={"Authorization": f"Bearer {secret}"})).status_code == 200
    assert (await api.client.delete(f"/v1/admin/keys/{key_id}", headers=api.h("admin"))).status_code == 204
    assert_problem(await api.client.get("/v1/channels", headers={"Authorization": f"Bearer {secret}"}), 401)
    assert_problem(
        await api.client.post("/v1/admin/keys", json={"channel": "nosuch"}, headers=api.h("admin")),
        422,
        "channel",
    )


# -- catalog -----------------------------------------------------------------------------------


async def test_products_paginate_with_a_cursor_and_filters(api: Api) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get("/v1/products", params=params, headers=api.h())).json()
        seen += [p["handle"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    beans = (await api.client.get("/v1/products", params={"q": "beans"}, headers=api.h())).json()["items"]
    assert [p["handle"] for p in beans] == ["house-blend-beans"]
    assert_problem(await api.client.get("/v1/products", params={"limit": 101}, headers=api.h()), 400)
    assert_problem(await api.client.get("/v1/products", params={"limit": 0}, headers=api.h()), 400)
    assert_problem(await api.client.get("/v1/products", params={"cursor": "!!!"}, headers=api.h()), 400, "query.cursor")


async def test_prices_and_availability_are_the_callers(api: Api) -> None:
    latte = (await api.client.get("/v1/products/latte", headers=api.h("kiosk"))).json()
    regular = latte["variants"][0]
    assert regular["price"] == {"amount": 450, "currency": "EUR"} and regular["availability"] == "in_stock"
    token = await api.sign_up("vip@example.com")
    customer_id = (await api.client.get("/v1/customers/me", headers=api.h(customer=token))).json()["id"]
    await api.client.put(f"/v1/admin/customers/{customer_id}/tier", json={"tier": "vip"}, headers=api.h("admin"))
    vip = (await api.client.get("/v1/products/latte", headers=api.h("voice", customer=token))).json()
    assert vip["variants"][0]["price"]["amount"] == 380 and vip["variants"][0]["list_price"]["amount"] == 450
    # Marketplace sells from the warehouse only, where there are no lattes.
    market = (await api.client.get("/v1/products/latte", headers=api.h("marketplace"))).json()
    assert market["variants"][0]["availability"] == "out_of_stock"
    avail = (await api.client.get("/v1/availability/CROISSANT", headers=api.h("kiosk"))).json()
    assert {row["location_id"]: row["available"] for row in avail["locations"]} == {
        "store-a": 30,
        "wh": 60,
        "store-b": 0,
    }
    assert_problem(await api.client.get("/v1/products/nope", headers=api.h()), 404)


async def test_catalog_reads_answer_304_to_a_matching_etag(api: Api) -> None:
    first = await api.client.get("/v1/products", headers=api.h())
    etag = first.headers["etag"]
    again = await api.client.get("/v1/products", headers=api.h(**{"If-None-Match": etag}))
    assert again.status_code == 304 and again.content == b""
    await api.client.post(
        "/v1/admin/stock/adjustments",
        json={"sku": "ESPRESSO", "location_id": "wh", "delta": 5},
        headers=api.h("admin"),
    )
    changed = await api.client.get("/v1/products", headers=api.h(**{"If-None-Match": etag}))
    assert changed.status_code == 200 and changed.headers["etag"] != etag


# -- carts and checkout ------------------------------------------------------------------------


async def test_cart_lines_and_server_side_totals(api: Api) -> None:
    cart_id = await new_cart(api, LATTE_REG=2)
    r = await api.client.put(f"/v1/carts/{cart_id}/lines/CROISSANT", json={"quantity": 1}, headers=api.h())
    cart = r.json()
    assert (cart["subtotal"], cart["total"]) == (1220, 1220) and len(cart["lines"]) == 2
    r = await api.client.delete(f"/v1/carts/{cart_id}/lines/CROISSANT", headers=api.h())
    assert r.json()["total"] == 900
    assert_problem(
        await api.client.post(f"/v1/carts/{cart_id}/lines", json={"sku": "NOPE", "quantity": 1}, headers=api.h()),
        404,
        "sku",
    )
    assert_problem(
        await api.client.post(f"/v1/carts/{cart_id}/lines", json={"sku": "ESPRESSO", "quantity": 0}, headers=api.h()),
        422,
        "quantity",
    )
    assert_problem(await api.client.get("/v1/carts/cart_nope", headers=api.h()), 404)


async def test_a_client_sending_a_price_gets_422_and_nothing_changes(api: Api) -> None:
    cart_id = await new_cart(api, ESPRESSO=1)
    body = assert_problem(
        await api.client.post(
            f"/v1/carts/{cart_id}/lines", json={"sku": "ESPRESSO", "quantity": 1, "price": 1}, headers=api.h()
        ),
        422,
        "price",
    )
    assert "computed by the server" in str(body["errors"])
    r = await api.client.post(
        f"/v1/carts/{cart_id}/checkout", json={"email": "a@example.com", "total": 1}, headers=api.h(**idem())
    )
    assert_problem(r, 422, "total")
    cart = (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h())).json()
    assert cart["status"] == "open" and cart["lines"][0]["quantity"] == 1


async def test_checkout_needs_an_idempotency_key_and_replays(api: Api) -> None:
    cart_id = await new_cart(api, ESPRESSO=2)
    body = {"email": "guest@example.com"}
    assert_problem(
        await api.client.post(f"/v1/carts/{cart_id}/checkout", json=body, headers=api.h()),
        400,
        "header.idempotency-key",
    )
    key = idem()
    first = await api.client.post(f"/v1/carts/{cart_id}/checkout", json=body, headers=api.h(**key))
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["total"] == 560 and order["channel"] == "webshop" and order["status"] == "placed"
    replay = await api.client.post(f"/v1/carts/{cart_id}/checkout", json=body, headers=api.h(**key))
    assert replay.status_code == 201 and replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert_problem(
        await api.client.post(
            f"/v1/carts/{cart_id}/checkout", json={"email": "other@example.com"}, headers=api.h(**key)
        ),
        422,
        "header.idempotency-key",
    )
    # Another key: the cart is closed (a conflict), and that error is replayed too.
    other = idem()
    assert_problem(await api.client.post(f"/v1/carts/{cart_id}/checkout", json=body, headers=api.h(**other)), 409)
    assert_problem(await api.client.post(f"/v1/carts/{cart_id}/checkout", json=body, headers=api.h(**other)), 409)
    orders = (await api.client.get("/v1/admin/orders", headers=api.h("admin"))).json()["items"]
    assert len(orders) == 1
    assert_problem(
        await api.client.post(
            f"/v1/carts/{cart_id}/checkout",
            json=body,
            headers=api.h(**{"Idempotency-Key": "bad key with spaces"}),
        ),
        400,
    )


async def test_same_key_while_in_flight_is_409(api: Api) -> None:
    cart_id = await new_cart(api, ESPRESSO=1)
    key = str(uuid.uuid4())
    body = b'{"email":"guest@example.com"}'
    # Simulate the first request still running: it holds the key.
    store = IdempotencyStore(api.kernel.db)
    principal = await api.app.state.key_store.principal(api.keys["webshop"])
    import hashlib
    from datetime import timedelta

    path = f"/v1/carts/{cart_id}/checkout?"
    fingerprint = hashlib.sha256(b"POST " + path.encode() + b"\n" + body).hexdigest()
    assert (await store.begin(principal.owner, key, fingerprint, api.kernel.clock(), timedelta(hours=1)))[0] == "new"
    r = await api.client.post(
        f"/v1/carts/{cart_id}/checkout",
        content=body,
        headers=api.h(**{"Idempotency-Key": key, "Content-Type": "application/json"}),
    )
    assert_problem(r, 409)
    assert r.headers["retry-after"] == "1"


async def test_keys_are_per_owner(api: Api) -> None:
    key = idem()
    a = await api.client.post("/v1/carts", headers=api.h("webshop", **key))
    b = await api.client.post("/v1/carts", headers=api.h("kiosk", **key))
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    again = await api.client.post("/v1/carts", headers=api.h("webshop", **key))
    assert again.json()["id"] == a.json()["id"]


async def test_pickup_checkout_and_admin_transitions(api: Api) -> None:
    cart_id = await new_cart(api, "kiosk", CROISSANT=2)
    r = await api.client.post(
        f"/v1/carts/{cart_id}/checkout",
        headers=api.h("kiosk", **idem()),
        json={"fulfilment": "pickup", "pickup_location_id": "store-a", "phone": "+353861234567"},
    )
    order = r.json()
    assert r.status_code == 201 and order["fulfilment"] == "pickup" and order["ready_by"]
    adm = api.h("admin")
    r = await api.client.post(f"/v1/admin/orders/{order['id']}/transitions", json={"to": "shipped"}, headers=adm)
    assert_problem(r, 409, "status")
    for step in ("ready_for_pickup", "collected"):
        r = await api.client.post(f"/v1/admin/orders/{order['id']}/transitions", json={"to": step}, headers=adm)
        assert r.status_code == 200 and r.json()["status"] == step
    r = await api.client.post(
        f"/v1/admin/orders/{order['id']}/returns",
        headers=adm,
        json={"line_no": 1, "quantity": 1, "location_id": "store-b"},
    )
    assert r.json()["return_state"] == "partial"
    assert_problem(
        await api.client.post(f"/v1/admin/orders/{order['id']}/transitions", json={"to": "teleported"}, headers=adm),
        422,
        "to",
    )


# -- customers and object-level authorisation ---------------------------------------------------


async def test_customers_see_only_their_own_things(api: Api) -> None:
    ana = await api.sign_up("ana@example.com")
    bob = await api.sign_up("bob@example.com", channel="kiosk")
    cart_id = await new_cart(api, customer=ana, ESPRESSO=1)
    r = await api.client.post(f"/v1/carts/{cart_id}/checkout", json={}, headers=api.h(customer=ana, **idem()))
    order_id = r.json()["id"]
    mine = await api.client.get(f"/v1/orders/{order_id}", headers=api.h(customer=ana))
    assert mine.status_code == 200
    for path in (f"/v1/orders/{order_id}", f"/v1/orders/{order_id}/events", f"/v1/carts/{cart_id}"):
        assert_problem(await api.client.get(path, headers=api.h(customer=bob)), 404)
        assert_problem(await api.client.get(path, headers=api.h()), 404)  # anonymous caller
    assert_problem(
        await api.client.post(f"/v1/carts/{cart_id}/lines", json={"sku": "ESPRESSO"}, headers=api.h(customer=bob)),
        404,
    )
    ana_timeline = (await api.client.get("/v1/customers/me/timeline", headers=api.h(customer=ana))).json()
    bob_timeline = (await api.client.get("/v1/customers/me/timeline", headers=api.h(customer=bob))).json()
    assert "order.placed" in [e["type"] for e in ana_timeline["items"]]
    assert "order.placed" not in [e["type"] for e in bob_timeline["items"]]
    assert_problem(await api.client.get("/v1/customers/me/timeline", headers=api.h()), 401)
    assert_problem(await api.client.get("/v1/customers/me", headers=api.h(customer="oms_forged")), 401)
    mine_list = (await api.client.get("/v1/customers/me/orders", headers=api.h(customer=ana))).json()
    assert [o["id"] for o in mine_list["items"]] == [order_id]


async def test_sign_in_and_guest_order_lookup(api: Api) -> None:
    await api.sign_up("cy@example.com")
    r = await api.client.post(
        "/v1/customers/sessions", json={"email": "cy@example.com", "password": "pass-word-1"}, headers=api.h()
    )
    assert r.status_code == 201 and r.json()["token"].startswith("oms_")
    assert_problem(
        await api.client.post(
            "/v1/customers/sessions", json={"email": "cy@example.com", "password": "x"}, headers=api.h()
        ),
        401,
    )
    assert_problem(
        await api.client.post(
            "/v1/customers", json={"email": "cy@example.com", "password": "pass-word-2"}, headers=api.h()
        ),
        409,
    )
    cart_id = await new_cart(api, ESPRESSO=1)
    order = (
        await api.client.post(
            f"/v1/carts/{cart_id}/checkout", json={"email": "guest@example.com"}, headers=api.h(**idem())
        )
    ).json()
    found = await api.client.get(
        "/v1/orders/lookup",
        params={"number": order["number"], "email": "GUEST@example.com"},
        headers=api.h("voice"),
    )
    assert found.status_code == 200 and found.json()["id"] == order["id"]
    assert_problem(
        await api.client.get(
            "/v1/orders/lookup", params={"number": order["number"], "email": "x@example.com"}, headers=api.h()
        ),
        404,
    )
    assert_problem(await api.client.get(f"/v1/orders/{order['id']}", headers=api.h()), 404)


async def test_guest_cart_follows_the_customer_at_sign_in(api: Api) -> None:
    ana = await api.sign_up("dee@example.com")
    mine = await new_cart(api, customer=ana, ESPRESSO=1)
    guest = await new_cart(api, "kiosk", ESPRESSO=2, CROISSANT=1)
    r = await api.client.post(f"/v1/carts/{guest}/customer", headers=api.h("kiosk", customer=ana))
    cart = r.json()
    assert cart["id"] == mine and {x["sku"]: x["quantity"] for x in cart["lines"]} == {
        "ESPRESSO": 2,
        "CROISSANT": 1,
    }
    assert cart["channels"] == ["webshop", "kiosk"]


# -- limits --------------------------------------------------------------------------------------


async def test_oversized_bodies_are_refused(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    async for small in make_api(db_url, tmp_path, clock, max_body_bytes=2048):
        big = {"attribution": {f"k{i}": "x" * 150 for i in range(40)}}
        assert_problem(await small.client.post("/v1/carts", json=big, headers=small.h()), 413)
        assert (await small.client.post("/v1/carts", json={}, headers=small.h())).status_code == 201


async def test_rate_limit_answers_429_per_key(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    async for limited in make_api(db_url, tmp_path, clock, rate_limit_per_minute=5):
        codes = [(await limited.client.get("/v1/channels", headers=limited.h())).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        r = await limited.client.get("/v1/channels", headers=limited.h())
        assert_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        assert (await limited.client.get("/v1/channels", headers=limited.h("kiosk"))).status_code == 200


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    assert_problem(await api.client.get("/v1/nothing-here", headers=api.h()), 404)
    assert_problem(await api.client.patch("/v1/products", headers=api.h()), 405)
    assert_problem(
        await api.client.post("/v1/carts", content=b"{not json", headers=api.h(**{"Content-Type": "application/json"})),
        400,
    )


async def test_openapi_documents_every_operation(api: Api) -> None:
    spec = (await api.client.get("/schema/openapi.json")).json()
    operations = [op for path in spec["paths"].values() for op in path.values() if isinstance(op, dict)]
    assert len(operations) >= 35
    ids = [op.get("operationId") for op in operations]
    assert all(ids) and len(ids) == len(set(ids))
    core = [op for p, ops in spec["paths"].items() if p.startswith("/v1") for op in ops.values()]
    for op in core:
        assert {"401", "404", "422"} <= set(op["responses"]), op["operationId"]
    assert (await api.client.get("/schema")).status_code == 200


async def test_nul_characters_are_refused_not_a_server_error(api: Api) -> None:
    r = await api.client.post(
        "/v1/customers",
        json={"email": "nul@example.com", "password": "pass-word-1", "name": "A\u0000B"},
        headers=api.h(),
    )
    # SQLite stores it; PostgreSQL cannot: either way no 5xx.
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        assert_problem(r, 422, "body")
        assert (
            await api.client.post(
                "/v1/customers/sessions", json={"email": "nul@example.com", "password": "pass-word-1"}, headers=api.h()
            )
        ).status_code == 401  # nothing was stored


async def test_an_interrupted_non_resumable_request_is_not_run_twice(api: Api, clock: FakeClock) -> None:
    """A process died after applying `add line` but before storing the answer: the retry must not
    add the line again. Only checkout (which finds its order) may take a stale key over."""
    import hashlib
    from datetime import timedelta

    cart_id = await new_cart(api, ESPRESSO=1)
    key = str(uuid.uuid4())
    body = b'{"sku":"ESPRESSO","quantity":1}'
    path = f"/v1/carts/{cart_id}/lines?"
    principal = await api.app.state.key_store.principal(api.keys["webshop"])
    fingerprint = hashlib.sha256(b"POST " + path.encode() + b"\n" + body).hexdigest()
    store = IdempotencyStore(api.kernel.db)
    await store.begin(principal.owner, key, fingerprint, clock() - timedelta(minutes=2), timedelta(hours=1))
    headers = api.h(**{"Idempotency-Key": key, "Content-Type": "application/json"})
    for _ in range(2):
        r = await api.client.post(f"/v1/carts/{cart_id}/lines", content=body, headers=headers)
        assert_problem(r, 409)
        assert r.json()["type"].endswith("/idempotency-outcome-unknown")
    cart = (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h())).json()
    assert cart["lines"][0]["quantity"] == 1  # not applied again
