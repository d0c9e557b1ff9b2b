"""Messages the channel sends on its own: order status updates and catalog syncs.

Both go to the chat provider over HTTPS, signed like inbound messages (``X-Chat-Signature`` with
``channels.chat.webhook_secret``) and with an ``Idempotency-Key``, because the outbox delivers a
notification at least once and a periodic task may run again after a failure.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import msgspec

from omniretail_chat.messages import sign

TIMEOUT_SECONDS = 10.0


class Sender:
    """Posts JSON to the provider."""

    #: The transport every sender uses; tests put an ``httpx.MockTransport`` here.
    transport: ClassVar[httpx.AsyncBaseTransport | None] = None

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    async def post(self, url: str, payload: Any, *, key: str) -> None:
        """Send ``payload``; an error status raises (the outbox or the task runner retries)."""
        body = msgspec.json.encode(payload)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.secret:
            headers["X-Chat-Signature"] = sign(self.secret, body)
        async with httpx.AsyncClient(transport=self.transport, timeout=TIMEOUT_SECONDS) as client:
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()
