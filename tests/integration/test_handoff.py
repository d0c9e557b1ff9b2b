"""Persistence across channels: a cart handed off with a short code continues elsewhere, once."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from lxml import etree

from omniretail.services.clock import FakeClock


async def cart_with_latte(api: Any, channel: str) -> str:
    r = await api.client.post("/v1/carts", headers=api.h(channel))
    cart_id = str(r.json()["id"])
    await api.client.post(
        f"/v1/carts/{cart_id}/lines", json={"sku": "LATTE-REG", "quantity": 2}, headers=api.h(channel)
    )
    return cart_id


async def test_a_voice_cart_continues_at_the_kiosk(api: Any) -> None:
    cart_id = await cart_with_latte(api, "voice")
    r = await api.client.post(f"/v1/carts/{cart_id}/handoff", headers=api.h("voice"))
    assert r.status_code == 201, r.text
    handoff = r.json()
    code = handoff["code"]
    assert len(code) == 6 and code.isalnum() and not set(code) & set("ILOU")
    assert handoff["url"].endswith(f"?handoff={code}")
    etree.fromstring(handoff["qr_svg"].encode())  # well-formed SVG
    assert base64.b64decode(handoff["qr_png"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Read out loud and typed in lower case with a dash: still the same code.
    typed = f"{code[:3].lower()}-{code[3:]}"
    claimed = await api.client.post(f"/v1/carts/handoffs/{typed}/claim", headers=api.h("kiosk"))
    assert claimed.status_code == 200, claimed.text
    cart = claimed.json()
    assert cart["id"] == cart_id and cart["channels"] == ["voice", "kiosk"]
    assert [x["quantity"] for x in cart["lines"]] == [2]
    again = await api.client.post(f"/v1/carts/handoffs/{code}/claim", headers=api.h("webshop"))
    assert again.status_code == 409 and again.json()["type"].endswith("/handoff-used")
    after = (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h("kiosk"))).json()
    assert after["channels"] == ["voice", "kiosk"]  # the refused claim changed nothing


async def test_expired_and_unknown_codes_are_refused(api: Any, clock: FakeClock) -> None:
    cart_id = await cart_with_latte(api, "webshop")
    r = await api.client.post(f"/v1/carts/{cart_id}/handoff", json={"minutes": 5}, headers=api.h("webshop"))
    code = r.json()["code"]
    clock.advance(minutes=6)
    expired = await api.client.post(f"/v1/carts/handoffs/{code}/claim", headers=api.h("kiosk"))
    assert expired.status_code == 410 and expired.json()["errors"][0]["field"] == "code"
    unknown = await api.client.post("/v1/carts/handoffs/ZZZZZZ/claim", headers=api.h("kiosk"))
    assert unknown.status_code == 404
    bad = await api.client.post(f"/v1/carts/{cart_id}/handoff", json={"minutes": 0}, headers=api.h("webshop"))
    assert bad.status_code == 422
    assert (await api.client.get(f"/v1/carts/{cart_id}", headers=api.h("kiosk"))).json()["channels"] == ["webshop"]


async def test_concurrent_claims_win_once(api: Any) -> None:
    cart_id = await cart_with_latte(api, "social")
    code = (await api.client.post(f"/v1/carts/{cart_id}/handoff", headers=api.h("social"))).json()["code"]
    results = await asyncio.gather(
        *(
            api.client.post(f"/v1/carts/handoffs/{code}/claim", headers=api.h(ch))
            for ch in ("kiosk", "webshop", "voice", "marketplace") * 3
        )
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 11


async def test_handoff_shows_in_the_customers_history(api: Any) -> None:
    token = await api.sign_up("hand@example.com", channel="voice")
    r = await api.client.post("/v1/carts", headers=api.h("voice", customer=token))
    cart_id = r.json()["id"]
    await api.client.post(
        f"/v1/carts/{cart_id}/lines", json={"sku": "ESPRESSO"}, headers=api.h("voice", customer=token)
    )
    code = (await api.client.post(f"/v1/carts/{cart_id}/handoff", headers=api.h("voice", customer=token))).json()[
        "code"
    ]
    await api.client.post(f"/v1/carts/handoffs/{code}/claim", headers=api.h("kiosk", customer=token))
    timeline = (await api.client.get("/v1/customers/me/timeline", headers=api.h(customer=token))).json()["items"]
    steps = [(e["type"], e["channel"]) for e in timeline]
    assert ("cart.handed_off", "voice") in steps and ("cart.handoff_claimed", "kiosk") in steps
