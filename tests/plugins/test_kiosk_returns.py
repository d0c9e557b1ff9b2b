"""Return anywhere and look up anything from the store: orders from any channel at the kiosk."""

from __future__ import annotations

import uuid
from typing import Any

from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.order import OrderStatus


async def web_order(api: Any, email: str = "ret@example.com") -> dict[str, Any]:
    cart_id = (await api.client.post("/v1/carts", headers=api.h("webshop"))).json()["id"]
    await api.client.post(
        f"/v1/carts/{cart_id}/lines", json={"sku": "BEANS-250-WHOLE", "quantity": 3}, headers=api.h("webshop")
    )
    r = await api.client.post(
        f"/v1/carts/{cart_id}/checkout",
        json={"email": email},
        headers=api.h("webshop", **{"Idempotency-Key": str(uuid.uuid4())}),
    )
    assert r.status_code == 201, r.text
    order = dict(r.json())
    for step in ("paid", "shipped"):
        await api.kernel.orders.transition(order["id"], OrderStatus(step), channel="webshop")
    return order


async def level(api: Any, sku: str, location: str) -> int:
    levels = await api.kernel.inventory.levels([sku], [location])
    return levels[0].on_hand if levels else 0


async def test_bought_online_returned_at_the_store(api: Any) -> None:
    order = await web_order(api)
    assert order["lines"][0]["location_id"] == "wh"
    store_before, wh_before = await level(api, "BEANS-250-WHOLE", "store-a"), await level(api, "BEANS-250-WHOLE", "wh")
    r = await api.client.post(
        "/channels/kiosk/returns",
        headers=api.h("kiosk"),
        json={"order_number": order["number"], "sku": "BEANS-250-WHOLE", "quantity": 1},
    )
    assert r.status_code == 200, r.text
    assert r.json()["return_state"] == "partial" and r.json()["lines"][0]["quantity_returned"] == 1
    assert await level(api, "BEANS-250-WHOLE", "store-a") == store_before + 1  # back on the store's shelf
    assert await level(api, "BEANS-250-WHOLE", "wh") == wh_before
    events = (await api.client.get(f"/v1/admin/orders/{order['id']}", headers=api.h("admin"))).json()
    assert events["channel"] == "webshop"
    history = [(e.type, e.channel) for _, e in await api.kernel.orders.events(order["id"])]
    assert ("order.placed", "webshop") in history and ("order.line_returned", "kiosk") in history


async def test_bad_returns_change_nothing(api: Any) -> None:
    order = await web_order(api, "bad@example.com")
    before = await level(api, "BEANS-250-WHOLE", "store-a")
    cases = [
        ({"order_number": "ZZZZ-ZZZZ", "sku": "BEANS-250-WHOLE"}, 404),
        ({"order_number": order["number"], "sku": "ESPRESSO"}, 422),
        ({"order_number": order["number"], "sku": "BEANS-250-WHOLE", "quantity": 4}, 422),
        ({"order_number": order["number"], "sku": "BEANS-250-WHOLE", "quantity": 0}, 422),
        ({"order_number": order["number"], "sku": "BEANS-250-WHOLE", "refund": 100}, 422),
    ]
    for body, status in cases:
        r = await api.client.post("/channels/kiosk/returns", json=body, headers=api.h("kiosk"))
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (
        await api.client.post("/channels/kiosk/returns", json=cases[1][0], headers=api.h("webshop"))
    ).status_code == 403
    assert await level(api, "BEANS-250-WHOLE", "store-a") == before


async def test_lookup_by_number_or_loyalty_card(api: Any) -> None:
    order = await web_order(api, "card@example.com")
    customer = await api.kernel.customers.get(order["customer_id"])
    await api.kernel.customers.link(
        customer.id, Identity(kind=IdentityKind.LOYALTY_CARD, value="RC-1234"), channel="kiosk"
    )
    by_number = await api.client.get(
        "/channels/kiosk/lookup", params={"number": order["number"]}, headers=api.h("kiosk")
    )
    assert [o["status"] for o in by_number.json()["orders"]] == ["shipped"]
    by_card = await api.client.get("/channels/kiosk/lookup", params={"loyalty_card": "rc 1234"}, headers=api.h("kiosk"))
    assert [o["id"] for o in by_card.json()["orders"]] == [order["id"]]
    assert (
        await api.client.get("/channels/kiosk/lookup", params={"loyalty_card": "NOPE"}, headers=api.h("kiosk"))
    ).status_code == 404
    assert (await api.client.get("/channels/kiosk/lookup", headers=api.h("kiosk"))).status_code == 422
