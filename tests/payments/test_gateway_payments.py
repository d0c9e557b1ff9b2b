"""Payments through the gateway: 402 on a decline, 409 payment-pending that the idempotency
middleware does not store, signed card webhooks (late, duplicated, forged), wallet endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.integration.gateway_fixtures import Api
from tests.payments.conftest import drain
from tests.payments.fake_card_service import WEBHOOK_SECRET, FakeCardService, asgi_sink


async def new_cart(api: Api, lines: dict[str, int], *, channel: str = "webshop", customer: str | None = None) -> str:
    r = await api.client.post("/v1/carts", json={}, headers=api.h(channel, customer=customer))
    assert r.status_code == 201, r.text
    cart_id = str(r.json()["id"])
    for sku, qty in lines.items():
        r = await api.client.post(
            f"/v1/carts/{cart_id}/lines", json={"sku": sku, "quantity": qty}, headers=api.h(channel, customer=customer)
        )
        assert r.status_code == 200, r.text
    return cart_id


async def checkout(
    api: Api,
    cart_id: str,
    payment: dict[str, Any] | None,
    *,
    key: str = "k-1",
    customer: str | None = None,
    **body: Any,
) -> Any:
    payload: dict[str, Any] = {"email": "ana@example.com", **body}
    if payment is not None:
        payload["payment"] = payment
    return await api.client.post(
        f"/v1/carts/{cart_id}/checkout",
        json=payload,
        headers=api.h("webshop", customer=customer, **{"Idempotency-Key": key}),
    )


async def test_timeout_answers_409_payment_pending_and_the_retry_finishes_with_one_capture(
    pay_api: Api, fake_card: FakeCardService
) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 2})
    first = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_timeout"})
    assert first.status_code == 409, first.text
    assert first.headers["content-type"].startswith("application/problem+json")
    assert first.json()["type"].endswith("/payment-pending")
    assert int(first.headers["retry-after"]) >= 1
    assert "idempotent-replayed" not in first.headers
    # Not stored: the retry with the same key runs again and finishes the checkout.
    second = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_timeout"})
    assert second.status_code == 201, second.text
    order = second.json()
    assert order["status"] == "paid" and order["total"] == 2500
    (payment,) = order["payments"]
    assert payment == {
        **payment,
        "provider": "card",
        "status": "captured",
        "amount": 2500,
        "authorized": 2500,
        "captured": 2500,
        "refunded": 0,
        "capture": "immediate",
    }
    # Now stored: a third try replays it.
    third = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_timeout"})
    assert third.status_code == 201 and third.headers["idempotent-replayed"] == "true"
    assert third.json()["id"] == order["id"]
    assert (fake_card.authorizations, fake_card.captures, fake_card.captured_amount) == (1, 1, 2500)


async def test_decline_answers_402_and_changes_nothing(pay_api: Api, fake_card: FakeCardService) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 1})
    r = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_decline"})
    assert r.status_code == 402, r.text
    problem = r.json()
    assert problem["type"].endswith("/payment-declined") and problem["title"] == "Payment required"
    assert "card declined" in problem["detail"]
    again = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_decline"})
    assert again.status_code == 402 and again.headers["idempotent-replayed"] == "true"
    r = await pay_api.client.get("/v1/admin/orders", headers=pay_api.h("admin"))
    assert r.json()["items"] == []
    r = await pay_api.client.get("/v1/admin/stock/MUG-1", headers=pay_api.h("admin"))
    assert [(x["on_hand"], x["reserved"]) for x in r.json() if x["location_id"] == "wh"] == [(100, 0)]


@pytest.mark.parametrize(
    ("payment", "field"),
    [
        ({"provider": "card", "token": "tok_ok", "amount": 1}, "payment.amount"),
        ({"provider": "card", "total": 1}, "payment.total"),
        ({"token": "tok_ok"}, "payment.provider"),
        ({"provider": ""}, "payment.provider"),
        ({"provider": "paypal"}, "payment.provider"),
        ({"provider": "card", "token": "x" * 501}, "payment.token"),
    ],
)
async def test_bad_payment_choices_are_422_and_change_nothing(
    pay_api: Api, fake_card: FakeCardService, payment: dict[str, Any], field: str
) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 1})
    r = await checkout(pay_api, cart_id, payment)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert fake_card.requests == []
    r = await pay_api.client.get(f"/v1/carts/{cart_id}", headers=pay_api.h())
    assert r.json()["status"] == "open"


async def test_a_client_cannot_name_the_amount_anywhere(pay_api: Api) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 1})
    r = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_ok"}, total=1)
    assert r.status_code == 422
    assert "computed by the server" in r.json()["errors"][0]["message"]


# -- card webhooks -----------------------------------------------------------------------------------


async def test_a_pending_card_is_finished_by_its_webhook_once_however_often_it_comes(
    pay_api: Api, fake_card: FakeCardService
) -> None:
    fake_card.webhook_sink = asgi_sink(pay_api.client)
    fake_card.webhook_copies = 2  # every webhook twice, with the same webhook-id
    cart_id = await new_cart(pay_api, {"BEAN-1": 2})
    r = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending"})
    assert r.status_code == 409 and r.json()["type"].endswith("/payment-pending")
    await fake_card.settle()
    statuses = [status for _, _, status in fake_card.webhooks_sent]
    # 409 only when the webhook beat the request to the lease (then it is sent again).
    assert set(statuses) <= {200, 409} and statuses[-1] == 200
    order = await pay_api.kernel.orders.by_cart(cart_id)
    assert order is not None and order.status.value == "paid"
    assert fake_card.captures == 1
    # The capture's own webhook (payment.captured) came twice too and changed nothing.
    types = [e.type for _, e in await pay_api.kernel.orders.events(order.id)]
    assert types.count("payment.authorized") == 1 and types.count("payment.captured") == 1
    # The customer's retry with the same key gets the order.
    r = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending"})
    assert r.status_code == 201 and r.json()["id"] == order.id


async def test_a_duplicate_with_a_new_id_or_a_late_webhook_changes_nothing_twice(
    pay_api: Api, fake_card: FakeCardService
) -> None:
    fake_card.webhook_sink = asgi_sink(pay_api.client)
    fake_card.webhook_copies = 2
    fake_card.webhook_copy_ids = True  # the receiver cannot dedupe by id: the state must hold
    cart_id = await new_cart(pay_api, {"BEAN-1": 1})
    await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending"})
    await fake_card.settle()
    order = await pay_api.kernel.orders.by_cart(cart_id)
    assert order is not None
    events_before = await pay_api.kernel.orders.events(order.id)
    # Much later, the service sends the authorization again (a late redelivery).
    (ref,) = fake_card.payments
    status = await fake_card.send_webhook("payment.authorized", ref)
    assert status == 200
    status = await fake_card.send_webhook("payment.declined", ref)  # contradicting, late: ignored
    assert status == 200
    assert await pay_api.kernel.orders.events(order.id) == events_before
    assert fake_card.captures == 1
    order = await pay_api.kernel.orders.get(order.id)
    assert order.status.value == "paid" and order.payments[0].captured == order.total


async def test_a_declined_webhook_releases_the_stock(pay_api: Api, fake_card: FakeCardService) -> None:
    fake_card.webhook_sink = asgi_sink(pay_api.client)
    cart_id = await new_cart(pay_api, {"RARE-1": 1})
    r = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending_decline"})
    assert r.status_code == 409
    assert (await pay_api.kernel.inventory.available(["RARE-1"], ["wh"]))["RARE-1"] == 0  # held
    await fake_card.settle()
    assert (await pay_api.kernel.inventory.available(["RARE-1"], ["wh"]))["RARE-1"] == 1
    r = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending_decline"})
    assert r.status_code == 402


@pytest.mark.parametrize(
    "tamper",
    [
        {"webhook-signature": "v1,AAAA"},
        {"webhook-signature": "garbage-without-comma"},
        {"webhook-signature": "v1,@@@not-base64@@@"},
        {"webhook-timestamp": "1"},
        {"webhook-id": ""},
    ],
)
async def test_forged_or_stale_webhooks_are_refused_401(
    pay_api: Api, fake_card: FakeCardService, tamper: dict[str, str]
) -> None:
    cart_id = await new_cart(pay_api, {"BEAN-1": 1})
    await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending"})
    (ref,) = fake_card.payments
    body, headers = fake_card.signed("payment.authorized", ref, "msg_forged")
    r = await pay_api.client.post("/payments/card/webhooks", content=body, headers={**headers, **tamper})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await pay_api.kernel.orders.by_cart(cart_id) is None


async def test_a_signed_webhook_that_is_not_a_payment_event_is_400(pay_api: Api, fake_card: FakeCardService) -> None:
    now = datetime.now(UTC)
    body = '{"hello": "world"}'
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign("msg_x", now, body),
    }
    r = await pay_api.client.post("/payments/card/webhooks", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["type"].endswith("/webhook-body")


# -- wallet ------------------------------------------------------------------------------------------


async def test_wallet_top_up_pay_and_read_back_on_any_channel(pay_api: Api) -> None:
    token = await pay_api.sign_up("wally@example.com")
    me = (await pay_api.client.get("/v1/customers/me", headers=pay_api.h(customer=token))).json()
    top_up = {"kind": "top_up", "amount": 5000, "note": "gift"}
    admin = pay_api.h("admin", **{"Idempotency-Key": "top-1"})
    r = await pay_api.client.post(f"/v1/admin/customers/{me['id']}/wallet", json=top_up, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == 5000
    r = await pay_api.client.post(f"/v1/admin/customers/{me['id']}/wallet", json=top_up, headers=admin)
    assert r.headers["idempotent-replayed"] == "true" and r.json()["balance"] == 5000
    # Pay on the voice channel (it offers only the wallet), signed in.
    cart_id = await new_cart(pay_api, {"MUG-1": 2}, channel="voice", customer=token)
    r = await pay_api.client.post(
        f"/v1/carts/{cart_id}/checkout",
        json={"payment": {"provider": "wallet"}},
        headers=pay_api.h("voice", customer=token, **{"Idempotency-Key": "w-1"}),
    )
    assert r.status_code == 201, r.text
    assert r.json()["payments"][0]["captured"] == 2500 and r.json()["status"] == "paid"
    await drain(pay_api.kernel)  # points for the order
    wallet = (await pay_api.client.get("/v1/customers/me/wallet", headers=pay_api.h("kiosk", customer=token))).json()
    assert wallet["balance"] == 2500 and wallet["points"] == 25 and wallet["currency"] == "EUR"
    assert [(e["kind"], e["amount"], e["points"]) for e in wallet["ledger"]] == [
        ("earn", 0, 25),
        ("pay", -2500, 0),
        ("top_up", 5000, 0),
    ]
    page = (await pay_api.client.get("/v1/customers/me/wallet?limit=1", headers=pay_api.h(customer=token))).json()
    assert len(page["ledger"]) == 1 and page["next_cursor"]
    rest = (
        await pay_api.client.get(
            f"/v1/customers/me/wallet?limit=5&cursor={page['next_cursor']}", headers=pay_api.h(customer=token)
        )
    ).json()
    assert [e["kind"] for e in rest["ledger"]] == ["pay", "top_up"] and rest["next_cursor"] is None
    # The wallet events are on the customer's timeline.
    timeline = (await pay_api.client.get("/v1/customers/me/timeline", headers=pay_api.h(customer=token))).json()
    types = [e["type"] for e in timeline["items"]]
    assert {"wallet.credited", "wallet.debited", "payment.authorized", "payment.captured"} <= set(types)
    assert "loyalty.points_earned" in types


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "adjustment", "amount": -1}, 409, "insufficient-funds"),
        ({"kind": "top_up", "amount": -5}, 422, "invalid-value"),
        ({"kind": "top_up", "amount": 0}, 422, "invalid-value"),
        ({"kind": "top_up", "amount": 1.5}, 422, "validation"),
        ({"kind": "top_up", "amount": 10**12}, 422, "validation"),
        ({"kind": "gift", "amount": 5}, 422, "validation"),
        ({"kind": "top_up", "amount": 5, "balance": 9}, 422, "validation"),
    ],
)
async def test_bad_wallet_changes_are_refused_and_change_nothing(
    pay_api: Api, body: dict[str, Any], status: int, code: str
) -> None:
    token = await pay_api.sign_up("bad@example.com")
    me = (await pay_api.client.get("/v1/customers/me", headers=pay_api.h(customer=token))).json()
    r = await pay_api.client.post(f"/v1/admin/customers/{me['id']}/wallet", json=body, headers=pay_api.h("admin"))
    assert r.status_code == status, r.text
    assert r.json()["type"].endswith(f"/{code}")
    wallet = (await pay_api.client.get(f"/v1/admin/customers/{me['id']}/wallet", headers=pay_api.h("admin"))).json()
    assert wallet["balance"] == 0 and wallet["ledger"] == []


async def test_wallet_routes_need_the_right_caller(pay_api: Api) -> None:
    assert (await pay_api.client.get("/v1/customers/me/wallet", headers=pay_api.h())).status_code == 401
    r = await pay_api.client.post(
        "/v1/admin/customers/cus_nobody/wallet", json={"kind": "top_up", "amount": 5}, headers=pay_api.h("admin")
    )
    assert r.status_code == 404
    r = await pay_api.client.post(
        "/v1/admin/customers/cus_nobody/wallet", json={"kind": "top_up", "amount": 5}, headers=pay_api.h()
    )
    assert r.status_code == 403


# -- refunds and attempts through the API --------------------------------------------------------------


async def test_returns_and_refunds_through_the_api(pay_api: Api, fake_card: FakeCardService) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 3})
    order = (await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_ok"})).json()
    admin = pay_api.h("admin")
    r = await pay_api.client.post(f"/v1/admin/orders/{order['id']}/transitions", json={"to": "shipped"}, headers=admin)
    assert r.status_code == 200, r.text
    r = await pay_api.client.post(
        f"/v1/admin/orders/{order['id']}/returns",
        json={"line_no": 1, "quantity": 1, "location_id": "wh"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["payments"][0]["refunded"] == 1250 and r.json()["lines"][0]["quantity_refunded"] == 1
    r = await pay_api.client.post(f"/v1/admin/orders/{order['id']}/refunds", json={"amount": 2501}, headers=admin)
    assert r.status_code == 422 and r.json()["type"].endswith("/refund-exceeds-captured")
    r = await pay_api.client.post(f"/v1/admin/orders/{order['id']}/refunds", json={"amount": 2500}, headers=admin)
    assert r.status_code == 200 and r.json()["payments"][0]["refunded"] == 3750
    assert fake_card.refunded_amount == 3750
    r = await pay_api.client.post(f"/v1/admin/orders/{order['id']}/refunds", json={"amount": 1}, headers=admin)
    assert r.status_code == 422
    r = await pay_api.client.post(f"/v1/admin/orders/{order['id']}/refunds", json={"amount": -1}, headers=admin)
    assert r.status_code == 422


async def test_an_attempt_can_be_looked_up(pay_api: Api, fake_card: FakeCardService) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 1})
    await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_timeout"})
    attempt = await pay_api.kernel.checkout.attempt_for(cart_id, "k-1")
    assert attempt is not None
    r = await pay_api.client.get(f"/v1/admin/checkout-attempts/{attempt.id}", headers=pay_api.h("admin"))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "authorizing" and len(body["reservations"]) == 1 and body["total"] == 1250
    r = await pay_api.client.get("/v1/admin/checkout-attempts/chk_nope", headers=pay_api.h("admin"))
    assert r.status_code == 404


async def test_after_a_pending_answer_the_same_key_with_another_request_is_still_422(
    pay_api: Api, fake_card: FakeCardService
) -> None:
    cart_id = await new_cart(pay_api, {"MUG-1": 1})
    first = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_timeout"})
    assert first.status_code == 409
    other = await checkout(pay_api, cart_id, {"provider": "wallet"})  # the same key, another body
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
    same = await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_timeout"})
    assert same.status_code == 201 and fake_card.captures == 1


async def test_a_webhook_that_meets_a_busy_checkout_asks_to_be_sent_again(
    pay_api: Api, fake_card: FakeCardService
) -> None:
    kernel = pay_api.kernel
    cart_id = await new_cart(pay_api, {"BEAN-1": 1})
    await checkout(pay_api, cart_id, {"provider": "card", "token": "tok_pending"})
    attempt = await kernel.checkout.attempt_for(cart_id, "k-1")
    assert attempt is not None
    async with kernel.uow.write() as tx:  # another request is settling it right now
        assert await tx.attempts.lease(attempt.id, "someone-else", kernel.clock(), 60)
    fake_card.payments[attempt.payment_id]["status"] = "authorized"
    body, headers = fake_card.signed("payment.authorized", attempt.payment_id, "msg_busy")
    r = await pay_api.client.post("/payments/card/webhooks", content=body, headers=headers)
    assert r.status_code == 409 and r.headers["retry-after"] == "2"
    async with kernel.uow.write() as tx:
        await tx.attempts.unlease(attempt.id, "someone-else", kernel.clock())
    r = await pay_api.client.post("/payments/card/webhooks", content=body, headers=headers)  # redelivered
    assert r.status_code == 200 and r.json()["result"] == "attempt completed"
    r = await pay_api.client.post("/payments/card/webhooks", content=body, headers=headers)
    assert r.json()["result"] == "duplicate"
    assert (await kernel.orders.by_cart(cart_id)) is not None
