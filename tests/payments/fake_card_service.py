"""The fake card payment service for tests: the plugin's own local test double, imported (not
copied) from ``omniretail_payments.fake_service``, plus a sink that hands its webhooks to a gateway
under test through the ASGI test client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from omniretail_payments.fake_service import FakeCardService, Seen

__all__ = ["WEBHOOK_SECRET", "FakeCardService", "Seen", "asgi_sink"]

#: A Standard Webhooks secret (whsec_ + base64 of 24 bytes) shared by the fake and the gateway.
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def asgi_sink(client: httpx.AsyncClient, path: str = "/payments/card/webhooks") -> Callable[..., Awaitable[Any]]:
    """Deliver the fake's webhooks to the gateway under test (no socket needed)."""

    async def deliver(body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await client.post(path, content=body, headers=headers)

    return deliver
