"""Tests of the chat channel: the omniretail conformance kit, then what is special about chat.

The fixtures (``omniretail_store``, ``omniretail_channels``, ...) and ``ChannelConformance`` come
from omniretail's pytest plugin, loaded automatically once omniretail is installed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from omniretail_chat.messages import sign
from omniretail_chat.outbound import Sender

from omniretail.background import TaskRunner
from omniretail.config import ConfigError
from omniretail.testing import BadRequest, ChannelConformance, ConformanceContext, Store, open_store
from omniretail.worker import OutboxWorker

pytestmark = pytest.mark.anyio

SECRET_ENV = "CHAT_TEST_WEBHOOK_SECRET"
SECRET = "chat-webhook-secret-for-tests"
SETTINGS = {
    "webhook_secret": f"env:{SECRET_ENV}",
    "pickup_location": "store-downtown",
    "locations": ["store-downtown", "wh-central"],
}
PHONE = "+353 87 123 4567"
MESSAGES = "/channels/chat/messages"


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "X-Chat-Signature": sign(secret, body)}


def message(text: str, *, sender: str = PHONE, id: str | None = None) -> dict[str, Any]:
    return {"id": id or f"wamid.{secrets.token_hex(8)}", "from": sender, "name": "Aoife", "text": text}


async def say(client: httpx.AsyncClient, text: str, **kw: Any) -> dict[str, Any]:
    body, headers = signed(message(text, **kw))
    response = await client.post(MESSAGES, content=body, headers=headers)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


# -- the conformance kit -------------------------------------------------------------------------


class TestChatConformance(ChannelConformance):
    channel = "chat"
    settings = SETTINGS
    env = {SECRET_ENV: SECRET}

    async def place_order(self, ctx: ConformanceContext) -> str:
        """The way chat shoppers order: a signed message."""
        reply = await say(ctx.client, f"order 1 {await ctx.sku_in_stock()}")
        assert "order" in reply, reply
        return str(reply["order"]["id"])

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        order = message("order 2 LATTE-REG", id="wamid.bad")

        def post(payload: dict[str, Any], why: str, status: int, secret: str = SECRET) -> BadRequest:
            body, headers = signed(payload, secret)
            return BadRequest("POST", MESSAGES, content=body, headers=headers, key=False, status=status, why=why)

        return [
            *super().bad_requests(),
            BadRequest("POST", MESSAGES, content=json.dumps(order), key=False, status=401, why="unsigned"),
            post(order, "wrong-secret", 401, secret="not-the-secret"),
            post({**order, "price": 0}, "unknown-field", 422),
            post({**order, "from": "12"}, "bad-phone", 422),
            post({**order, "from": "+1 (555) 0"}, "too-short-phone", 422),
            post({**order, "text": "x" * 1001}, "text-too-long", 422),
            BadRequest(
                "POST",
                MESSAGES,
                content=b"{not json",
                headers={"X-Chat-Signature": sign(SECRET, b"{not json")},
                key=False,
                status=400,
                why="signed-but-not-json",
            ),
            BadRequest("GET", "/channels/chat/catalog.json?token=omr_wrong", key=False, status=401, why="wrong-token"),
            BadRequest("GET", f"/channels/chat/menu?category={'x' * 61}", status=400, why="category-too-long"),
        ]


class TestChatShippedConformance(TestChatConformance):
    """The kit again in another configuration (orders shipped, not picked up): one subclass each."""

    settings = {"webhook_secret": f"env:{SECRET_ENV}", "locations": ["wh-central", "store-riverside"]}


# -- chat specifics ------------------------------------------------------------------------------


@pytest.fixture
def omniretail_channels(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return {"chat": dict(SETTINGS, send_url="https://chat.example.com/send")}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Request]]:
    """What the plugin posts to the provider (through an httpx mock transport)."""
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"ok": True})

    monkeypatch.setattr(Sender, "transport", httpx.MockTransport(record))
    yield requests


async def test_an_order_message_places_a_pickup_order_for_the_phone_number(omniretail_store: Store) -> None:
    reply = await say(omniretail_store.client, "Order 2 latte-reg, croissant", id="wamid.first")
    order = await omniretail_store.kernel.orders.get(reply["order"]["id"])
    assert (reply["to"], reply["reply_to"]) == (PHONE, "wamid.first")
    assert order.number in reply["text"] and "ready for pickup" in reply["text"]
    assert (order.channel, order.fulfilment.value, order.pickup_location_id) == ("chat", "pickup", "store-downtown")
    assert sorted((x.sku, x.quantity) for x in order.lines) == [("CROISSANT", 1), ("LATTE-REG", 2)]
    assert reply["order"]["total"] == order.total > 0
    # The same phone number is the same customer, however it is written.
    again = await say(omniretail_store.client, "order ESPRESSO", sender="0035387 1234567")
    second = await omniretail_store.kernel.orders.get(again["order"]["id"])
    assert second.customer_id == order.customer_id is not None


async def test_a_message_delivered_twice_places_one_order(omniretail_store: Store) -> None:
    client = omniretail_store.client
    body, headers = signed(message("order 1 ESPRESSO", id="wamid.twice"))
    first = await client.post(MESSAGES, content=body, headers=headers)
    before = await omniretail_store.counts()
    repeat = await client.post(MESSAGES, content=body, headers=headers)
    assert repeat.status_code == 200 and repeat.headers["idempotent-replayed"] == "true"
    assert repeat.content == first.content
    assert await omniretail_store.counts() == before
    # The same message id with another text is not a repeat: refused.
    body, headers = signed(message("order 5 ESPRESSO", id="wamid.twice"))
    assert (await client.post(MESSAGES, content=body, headers=headers)).status_code == 422


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("order 1 NO-SUCH-SKU", "we do not sell NO-SUCH-SKU"),
        ("order 500 LATTE-REG", "1 to 20"),
        ("order 10 MUG-TRAVEL-BLK", "not have enough of MUG-TRAVEL-BLK"),  # 5 at store-downtown
        ("order", "say what to order"),
        ("hello", "Send 'menu'"),
    ],
)
async def test_a_message_that_orders_nothing_gets_a_reply_and_changes_nothing(
    omniretail_store: Store, text: str, says: str
) -> None:
    before = await omniretail_store.counts()
    reply = await say(omniretail_store.client, text)
    assert says in reply["text"] and "order" not in reply
    assert await omniretail_store.counts() == before


async def test_the_catalog_is_published_as_whatsapp_items_and_a_product_list(omniretail_store: Store) -> None:
    run = await omniretail_store.publish("chat")
    assert run.failed == run.rejected == 0 and run.created == run.total
    client, key = omniretail_store.client, omniretail_store.keys["chat"]
    feed = (await client.get("/channels/chat/catalog.json", params={"token": key})).json()
    latte = next(item for item in feed["items"] if item["retailer_id"] == "LATTE-REG")
    assert latte["price"] == 450 and latte["currency"] == "EUR" and latte["availability"] == "in stock"
    assert latte["item_group_id"] == "latte" and latte["image_url"].startswith("https://")
    menu = (await client.get("/channels/chat/menu", headers=omniretail_store.headers("chat"))).json()
    assert menu["type"] == "product_list" and menu["action"]["catalog_id"] == "omniretail"
    listed = [p["product_retailer_id"] for s in menu["action"]["sections"] for p in s["product_items"]]
    assert "LATTE-REG" in listed
    reply = await say(client, "menu")
    assert reply["type"] == "interactive" and reply["interactive"] == menu


async def test_status_messages_and_status_notifications(omniretail_store: Store, sent: list[httpx.Request]) -> None:
    client = omniretail_store.client
    placed = (await say(client, "order 1 CROISSANT"))["order"]
    assert (await say(client, "status"))["order"]["number"] == placed["number"]
    assert "cannot find" in (await say(client, f"status {placed['number']}", sender="+353 1 555 0000"))["text"]
    transition = await client.post(
        f"/v1/admin/orders/{placed['id']}/transitions",
        json={"to": "ready_for_pickup"},
        headers=omniretail_store.headers("admin"),
    )
    assert transition.status_code == 200, transition.text
    await OutboxWorker(omniretail_store.kernel).drain()
    assert len(sent) == 1 and str(sent[0].url) == "https://chat.example.com/send"
    assert sent[0].headers["x-chat-signature"] == sign(SECRET, sent[0].content)
    assert json.loads(sent[0].content) == {
        "to": PHONE,
        "type": "text",
        "text": f"Your order {placed['number']} is ready for pickup.",
    }
    assert "ready for pickup" in (await say(client, f"status {placed['number']}"))["text"]


async def test_the_catalog_sync_task_pushes_the_catalog_after_a_change(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, sent: list[httpx.Request]
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    channels = {"chat": dict(SETTINGS, catalog_sync_url="https://chat.example.com/catalog")}
    async with open_store(tmp_path, channels=channels) as store:
        runner = TaskRunner(store.kernel)
        assert [t.name for t in runner.tasks] == ["chat.sync_catalog"]
        task = runner.tasks[0]
        assert await task.run({}) == {}  # nothing published yet: nothing to push
        await store.publish("chat")
        state = await task.run({})
        assert len(sent) == 1 and len(json.loads(sent[0].content)["items"]) == state["items"] > 0
        assert await task.run(state) == state and len(sent) == 1  # no change since: no push


async def test_a_pickup_location_without_pickup_is_a_config_error(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with pytest.raises(ConfigError) as refused:
        async with open_store(tmp_path, channels={"chat": dict(SETTINGS, pickup_location="wh-central")}):
            pass
    assert refused.value.key == "channels.chat.pickup_location"
