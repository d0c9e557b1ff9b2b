"""The channel conformance kit (``omniretail.testing.ChannelConformance``) run against the five
built-in channels, exactly as a third-party plugin runs it against itself."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Any

from omniretail.testing import BadRequest, ChannelConformance, ConformanceContext
from omniretail.testing.context import idempotency_key

META_SECRET = "conformance-meta-app-secret"
SHOPIFY_SECRET = "conformance-marketplace-hmac-secret"


class TestWebshop(ChannelConformance):
    channel = "webshop"

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        checkout = "/channels/webshop/checkout"
        return [
            *super().bad_requests(),
            # The checkout URL is a page for browsers: it refuses with an HTML page, not a problem.
            BadRequest("GET", f"{checkout}?products=NO-SUCH-SKU:1", key=False, problem=False, why="unknown-sku-link"),
            BadRequest("GET", f"{checkout}?products=LATTE-REG:0", key=False, problem=False, why="zero-quantity-link"),
            BadRequest("GET", "/channels/webshop/feeds/google.xml?token=omr_wrong", key=False, status=401),
        ]


class TestMarketplace(ChannelConformance):
    channel = "marketplace"
    settings = {"locations": ["wh-central"], "seller_id": "A1CONFORMANCE", "hmac_secret": "env:CONFORMANCE_MP_HMAC"}
    env = {"CONFORMANCE_MP_HMAC": SHOPIFY_SECRET}
    no_orders_reason = (
        "marketplace orders are placed on the marketplace and arrive by signed webhook, not through a "
        "gateway cart (tests/plugins/test_marketplace.py covers the intake)"
    )

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        order = json.dumps({"AmazonOrderId": "111-0000000-0000000"})
        return [
            *super().bad_requests(),
            BadRequest("POST", "/channels/marketplace/webhooks", content=order, key=False, status=401, why="unsigned"),
            BadRequest(
                "POST",
                "/channels/marketplace/webhooks",
                content=order,
                headers={"X-Shopify-Hmac-SHA256": "bm90IHRoZSBzaWduYXR1cmU=", "X-Shopify-Event-Id": "evt-1"},
                key=False,
                status=401,
                why="wrong-signature",
            ),
        ]


class TestKiosk(ChannelConformance):
    channel = "kiosk"
    settings = {"store": "store-downtown", "locations": ["store-downtown", "wh-central", "store-riverside"]}

    async def place_order(self, ctx: ConformanceContext) -> str:
        """Click and collect through the kiosk's own order route (pickup at its store)."""
        sku = await ctx.sku_in_stock()
        body = {"lines": [{"sku": sku, "quantity": 1}], "fulfilment": "pickup", "email": "kiosk@example.com"}
        response = await ctx.client.post("/channels/kiosk/orders", json=body, headers=ctx.headers(**idempotency_key()))
        assert response.status_code == 201, response.text
        return str(response.json()["order"]["id"])

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        orders = "/channels/kiosk/orders"
        line = {"sku": "LATTE-REG", "quantity": 1}
        return [
            *super().bad_requests(),
            BadRequest("POST", orders, json={"lines": [line], "email": "a@example.com"}, why="no-idempotency-key"),
            BadRequest("POST", orders, json={"lines": []}, headers=idempotency_key(), why="no-lines"),
            BadRequest(
                "POST",
                orders,
                json={"lines": [{"sku": "NO-SUCH-SKU", "quantity": 1}], "email": "a@example.com"},
                headers=idempotency_key(),
                why="unknown-sku",
            ),
            BadRequest(
                "POST",
                orders,
                json={"lines": [{"sku": "MUG-TRAVEL-BLK", "quantity": 999}], "email": "a@example.com"},
                headers=idempotency_key(),
                status=409,
                why="out-of-stock",
            ),
            BadRequest("POST", orders, json={"lines": [line]}, headers=idempotency_key(), why="guest-without-contact"),
            BadRequest("POST", "/channels/kiosk/identify", json={"loyalty_card": "!!"}, why="malformed-loyalty-card"),
            BadRequest("POST", "/channels/kiosk/orders/ord_missing/ready", json={}, status=404, why="ready-unknown"),
        ]


class TestSocial(ChannelConformance):
    channel = "social"
    settings = {"app_secret": "env:CONFORMANCE_META_SECRET", "verify_token": "env:CONFORMANCE_META_VERIFY"}
    env = {"CONFORMANCE_META_SECRET": META_SECRET, "CONFORMANCE_META_VERIFY": "conformance-verify-token"}

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        comment = {
            "object": "instagram",
            "entry": [
                {
                    "id": "17841400000000000",
                    "time": 1767225600,
                    "changes": [
                        {
                            "field": "comments",
                            "value": {"id": "c-1", "text": "buy 2 latte", "from": {"id": "1", "username": "ann"}},
                        }
                    ],
                }
            ],
        }
        body = json.dumps(comment).encode()
        wrong = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
        handshake = "/channels/social/webhooks?hub.mode=subscribe&hub.challenge=42"
        return [
            *super().bad_requests(),
            BadRequest("POST", "/channels/social/webhooks", content=body, key=False, status=401, why="unsigned"),
            BadRequest(
                "POST",
                "/channels/social/webhooks",
                content=body,
                headers={"X-Hub-Signature-256": wrong},
                key=False,
                status=401,
                why="wrong-signature",
            ),
            BadRequest("GET", f"{handshake}&hub.verify_token=guess", key=False, status=403, why="wrong-verify-token"),
            BadRequest("GET", "/channels/social/links/NO-SUCH-SKU", status=404, why="link-unknown-sku"),
            BadRequest("GET", "/channels/social/links/LATTE-REG?quantity=0", status=400, why="link-zero-quantity"),
        ]


class TestVoice(ChannelConformance):
    channel = "voice"
    settings = {"invocation_name": "riverside coffee", "skill_id": "amzn1.ask.skill.conformance"}

    def bad_requests(self) -> Iterable[BadRequest | Sequence[Any]]:
        launch = {
            "version": "1.0",
            "session": {
                "new": True,
                "sessionId": "s-1",
                "application": {"applicationId": "amzn1.ask.skill.conformance"},
            },
            "request": {"type": "LaunchRequest", "requestId": "r-1", "timestamp": "2026-01-01T12:00:00Z"},
        }
        return [
            *super().bad_requests(),
            # Alexa signs every request: an unsigned one is refused before anything happens.
            BadRequest("POST", "/channels/voice/alexa", json=launch, key=False, why="unsigned-alexa-request"),
            BadRequest("GET", "/channels/voice/interaction-model.json?source=guess", status=400, why="unknown-source"),
        ]
