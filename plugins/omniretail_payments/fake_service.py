"""A FAKE card payment service on 127.0.0.1: a local test double, never a real processor.

It speaks the API the ``card`` provider expects (see ``omniretail_payments.card``) so the tests
and the demo can exercise every path a real service takes, without the network:

* the card token picks the behaviour: ``tok_decline`` (declined), ``tok_timeout`` (authorized,
  but the first answer comes only after ``timeout_delay`` seconds: past the client's timeout),
  ``tok_pending`` / ``tok_pending_decline`` (answers ``pending``, then a webhook says authorized
  or declined), anything else is approved;
* every POST needs an ``Idempotency-Key``; a repeat gets the first answer again, at once, and
  moves no money (``authorizations``, ``captures``, ``voids`` and ``refunds`` count real effects);
* a void of a reference never authorized succeeds and refuses a later authorization;
* webhooks are signed with Standard Webhooks (``webhook_secret``), sent after ``webhook_delay``
  seconds (late), ``webhook_copies`` times (duplicated), to ``webhook_url`` or, in tests, to an
  in-process ``webhook_sink``; a delivery answered with anything but 2xx is sent again (with the
  same ``webhook-id``) up to ``webhook_retries`` times;
* ``fail_next`` makes the next requests answer 503 without doing anything.

Run it by hand for a demo::

    python -m omniretail_payments.fake_service --port 8900 \\
        --webhook-url http://127.0.0.1:8000/payments/card/webhooks --webhook-secret whsec_...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable"}
WebhookSink = Callable[[bytes, dict[str, str]], Awaitable[Any]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeCardService:
    """The fake service; ``async with FakeCardService() as fake:`` serves on a free port."""

    webhook_secret: str | None = None
    webhook_url: str | None = None
    webhook_sink: WebhookSink | None = None
    webhook_delay: float = 0.0
    webhook_copies: int = 1
    #: Give each copy of a webhook its own ``webhook-id`` (a duplicate the receiver cannot spot
    #: by id, only by state).
    webhook_copy_ids: bool = False
    #: A webhook answered with anything but 2xx is sent again, this many times, this much later.
    webhook_retries: int = 3
    webhook_retry_delay: float = 0.2
    timeout_delay: float = 3.0
    api_key: str | None = None
    fail_next: int = 0
    port: int = 0
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    webhooks_sent: list[tuple[dict[str, str], bytes, int | None]] = field(default_factory=list)
    authorizations: int = 0
    captures: int = 0
    voids: int = 0
    refunds: int = 0
    captured_amount: int = 0
    refunded_amount: int = 0
    _answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _connections: set[asyncio.Task[Any]] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeCardService:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.settle()
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):  # answers still sleeping past a client's timeout
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def settle(self) -> None:
        """Wait until every scheduled webhook went out."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def calls(self, path_end: str) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith(path_end)]

    # -- HTTP ----------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            delay = 0.0
            try:
                status, payload, delay = await asyncio.wait_for(self._exchange(reader), timeout=5)
            except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
                status, payload = 400, {"reason": "bad request"}
            if delay:
                await asyncio.sleep(delay)  # the answer is late: the client has given up by now
            body = json.dumps(payload).encode()
            head = (
                f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            with contextlib.suppress(ConnectionError):
                writer.write(head.encode() + body)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any], float]:
        line = (await reader.readline()).decode("latin-1").strip()
        method, path, _ = line.split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := (await reader.readline()).decode("latin-1").strip()) != "":
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        raw_body = await reader.readexactly(length) if length else b""
        body = json.loads(raw_body) if raw_body else {}
        if not isinstance(body, dict):
            raise ValueError("body is not an object")
        self.requests.append(Seen(method, path, headers, body))
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"reason": "bad api key"}, 0.0
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"reason": "service unavailable"}, 0.0
        key = headers.get("idempotency-key")
        if method != "POST" or not key:
            return 400, {"reason": "POST with an Idempotency-Key, please"}, 0.0
        if key in self._answers:  # a retry: the first answer, at once, nothing moves
            status, payload = self._answers[key]
            return status, payload, 0.0
        status, payload, delay = self._handle(path, body)
        self._answers[key] = (status, payload)
        return status, payload, delay

    # -- the payment rules -------------------------------------------------------------------------

    def _handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["v1", "payments"]:
            return self._authorize(body)
        if len(parts) == 4 and parts[:2] == ["v1", "payments"]:
            ref, action = parts[2], parts[3]
            amount = body.get("amount")
            if action == "capture" and isinstance(amount, int):
                return (*self._capture(ref, amount), 0.0)
            if action == "void":
                return (*self._void(ref), 0.0)
            if action == "refunds" and isinstance(amount, int):
                return (*self._refund(ref, amount), 0.0)
        return 404, {"reason": f"no route {path}"}, 0.0

    def _authorize(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        ref, amount, card = body.get("reference"), body.get("amount"), str(body.get("token") or "")
        if not isinstance(ref, str) or not isinstance(amount, int) or amount <= 0:
            return 422, {"reason": "reference and a positive integer amount are required"}, 0.0
        current = self.payments.get(ref)
        if current is not None:  # already known under another key: its state, no new charge
            return 200, self._view(ref), 0.0
        pay: dict[str, Any] = {
            "id": "auth_" + secrets.token_hex(6),
            "amount": amount,
            "currency": body.get("currency"),
            "captured": 0,
            "refunded": 0,
        }
        self.payments[ref] = pay
        if card == "tok_decline":
            pay.update(status="declined", reason="card declined")
            return 402, self._view(ref), 0.0
        if card in ("tok_pending", "tok_pending_decline"):
            pay["status"] = "pending"
            outcome = "declined" if card == "tok_pending_decline" else "authorized"
            self._schedule(ref, outcome)
            return 201, self._view(ref), 0.0
        pay["status"] = "authorized"
        self.authorizations += 1
        return 201, self._view(ref), self.timeout_delay if card == "tok_timeout" else 0.0

    def _capture(self, ref: str, amount: int) -> tuple[int, dict[str, Any]]:
        pay = self.payments.get(ref)
        if pay is None or pay["status"] != "authorized":
            state = pay["status"] if pay else "unknown"
            return 422, {"status": "failed", "reason": f"cannot capture a {state} payment"}
        if amount <= 0 or amount > pay["amount"]:
            return 422, {"status": "failed", "reason": "amount exceeds the authorization"}
        pay.update(status="captured", captured=amount)
        self.captures += 1
        self.captured_amount += amount
        self._schedule(ref, "captured")
        return 200, self._view(ref)

    def _void(self, ref: str) -> tuple[int, dict[str, Any]]:
        pay = self.payments.get(ref)
        if pay is None:  # never authorized (or not yet): a tombstone stops a late authorization
            self.payments[ref] = {"id": None, "amount": 0, "captured": 0, "refunded": 0, "status": "voided"}
            return 200, self._view(ref)
        if pay["status"] in ("captured", "refunded"):
            return 422, {"status": "failed", "reason": "already captured: refund instead"}
        if pay["status"] != "voided":
            pay["status"] = "voided"
            self.voids += 1
        return 200, self._view(ref)

    def _refund(self, ref: str, amount: int) -> tuple[int, dict[str, Any]]:
        pay = self.payments.get(ref)
        if pay is None or pay["status"] not in ("captured", "refunded"):
            return 422, {"status": "failed", "reason": "nothing captured to refund"}
        if amount <= 0 or pay["refunded"] + amount > pay["captured"]:
            return 422, {"status": "failed", "reason": "refund exceeds what was captured"}
        pay["refunded"] += amount
        if pay["refunded"] == pay["captured"]:
            pay["status"] = "refunded"
        self.refunds += 1
        self.refunded_amount += amount
        return 200, {**self._view(ref), "status": "refunded", "refund_id": "re_" + secrets.token_hex(6)}

    def _view(self, ref: str) -> dict[str, Any]:
        pay = self.payments[ref]
        return {"reference": ref, **{k: v for k, v in pay.items() if k != "currency"}}

    # -- webhooks ------------------------------------------------------------------------------------

    def _schedule(self, ref: str, outcome: str) -> None:
        if self.webhook_secret is None or (self.webhook_url is None and self.webhook_sink is None):
            return
        task = asyncio.get_running_loop().create_task(self._send_later(ref, outcome))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_later(self, ref: str, outcome: str) -> None:
        await asyncio.sleep(self.webhook_delay)
        pay = self.payments[ref]
        if outcome in ("authorized", "declined") and pay["status"] == "pending":
            pay["status"] = outcome
            if outcome == "authorized":
                self.authorizations += 1
            else:
                pay["reason"] = "card declined"
        msg_id = "msg_" + secrets.token_hex(8)
        for _ in range(max(self.webhook_copies, 1)):
            await self.send_webhook(f"payment.{outcome}", ref, msg_id)
            if self.webhook_copy_ids:
                msg_id = "msg_" + secrets.token_hex(8)

    def signed(self, event_type: str, ref: str, msg_id: str) -> tuple[bytes, dict[str, str]]:
        """A Standard Webhooks delivery (body, headers) about payment ``ref``."""
        from standardwebhooks import Webhook

        assert self.webhook_secret is not None
        now = datetime.now(UTC)
        pay = self.payments.get(ref, {})
        data = {"reference": ref, "id": pay.get("id"), "reason": pay.get("reason", "")}
        body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data})
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(self.webhook_secret).sign(msg_id, now, body),
            "content-type": "application/json",
        }
        return body.encode(), headers

    async def send_webhook(self, event_type: str, ref: str, msg_id: str | None = None) -> int | None:
        msg_id = msg_id or "msg_" + secrets.token_hex(8)
        status: int | None = None
        for attempt in range(self.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(self.webhook_retry_delay)
            body, headers = self.signed(event_type, ref, msg_id)  # the same id, a fresh signature
            try:
                if self.webhook_sink is not None:
                    status = getattr(await self.webhook_sink(body, headers), "status_code", None)
                elif self.webhook_url is not None:
                    import httpx

                    async with httpx.AsyncClient(timeout=10) as client:
                        status = (await client.post(self.webhook_url, content=body, headers=headers)).status_code
            except Exception:  # a receiver that is down: sent again later
                status = None
            self.webhooks_sent.append((headers, body, status))
            if status is not None and 200 <= status < 300:
                break
        return status


async def _main(args: argparse.Namespace) -> None:
    service = FakeCardService(
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        webhook_delay=args.webhook_delay,
        api_key=args.api_key,
    )
    async with service:
        print(f"fake card service (a local test double) on {service.url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake card payment service for local tests and demos.")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None)
    parser.add_argument("--webhook-delay", type=float, default=1.0)
    parser.add_argument("--api-key", default=None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
