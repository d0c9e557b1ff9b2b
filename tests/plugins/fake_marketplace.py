"""A fake Amazon Orders v0 API on a loopback port, for the marketplace plugin's tests.

A minimal HTTP/1.1 server on ``asyncio.start_server``: one request per connection (it answers
with ``Connection: close``), JSON in and out. It serves

* ``GET /orders/v0/orders`` (``MarketplaceIds`` required; ``LastUpdatedAfter`` filters,
  inclusive; ``page_size`` orders per page and an opaque ``NextToken`` for the rest);
* ``GET /orders/v0/orders/{id}/orderItems``;
* ``POST /orders/v0/orders/{id}/shipmentConfirmation`` (204; the next ``fail_confirmations``
  calls answer 503 instead).

Every request is kept in ``requests`` for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 503: "Unavailable"}


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeMarketplace:
    page_size: int = 2
    #: When set, requests must carry it as ``x-amz-access-token``.
    token: str | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    #: Accepted shipment confirmations: (AmazonOrderId, body).
    confirmations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_confirmations: int = 0
    fail_orders: int = 0
    _tokens: dict[str, tuple[str, int]] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeMarketplace:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    # -- data --------------------------------------------------------------------------------------

    def add_order(
        self,
        order_id: str,
        *,
        status: str = "Unshipped",
        updated: datetime,
        lines: list[tuple[str, int, str]],
        email: str = "buyer-1@marketplace.example.com",
        currency: str = "EUR",
        **extra: Any,
    ) -> None:
        """An Amazon order; ``lines`` are (SellerSKU, QuantityOrdered, ItemPrice.Amount)."""
        stamp = updated.isoformat().replace("+00:00", "Z")
        self.orders[order_id] = {
            "AmazonOrderId": order_id,
            "PurchaseDate": stamp,
            "LastUpdateDate": stamp,
            "OrderStatus": status,
            "FulfillmentChannel": "MFN",
            "MarketplaceId": "A1PA6795UKMFR9",
            "SalesChannel": "Amazon.de",
            "IsPrime": False,
            "NumberOfItemsUnshipped": sum(q for _, q, _ in lines),
            "OrderTotal": {"CurrencyCode": currency, "Amount": "0.00"},
            "BuyerInfo": {"BuyerEmail": email, "BuyerName": "Ana Buyer"},
            **extra,
        }
        self.items[order_id] = [
            {
                "ASIN": f"B0{n:08d}",
                "SellerSKU": sku,
                "OrderItemId": f"{order_id.replace('-', '')}{n}",
                "QuantityOrdered": qty,
                "QuantityShipped": 0,
                "Title": sku.title(),
                "ItemPrice": {"CurrencyCode": currency, "Amount": amount},
                "ItemTax": {"CurrencyCode": currency, "Amount": "0.00"},
                "IsGift": "false",
            }
            for n, (sku, qty, amount) in enumerate(lines, start=1)
        ]

    def update(self, order_id: str, *, status: str, updated: datetime) -> None:
        self.orders[order_id]["OrderStatus"] = status
        self.orders[order_id]["LastUpdateDate"] = updated.isoformat().replace("+00:00", "Z")

    def webhook_body(self, order_id: str) -> dict[str, Any]:
        """The order as the webhook carries it: the Order with its OrderItems."""
        return {**self.orders[order_id], "OrderItems": self.items[order_id]}

    def calls(self, method: str, path_end: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_end)]

    # -- HTTP --------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await asyncio.wait_for(self._exchange(reader), timeout=5)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            status, payload = 400, {"errors": [{"code": "InvalidInput", "message": "bad request"}]}
        body = b"" if status == 204 else json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        method, target, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        seen = Seen(method=method, path=unquote(url.path), query=query, headers=headers, body=body)
        self.requests.append(seen)
        if self.token is not None and headers.get("x-amz-access-token") != self.token:
            return 403, {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied."}]}
        return self._route(seen)

    def _route(self, r: Seen) -> tuple[int, Any]:
        parts = r.path.strip("/").split("/")
        if r.method == "GET" and parts == ["orders", "v0", "orders"]:
            return self._get_orders(r.query)
        if len(parts) == 5 and parts[:3] == ["orders", "v0", "orders"]:
            order_id = parts[3]
            if order_id not in self.orders:
                return 404, {"errors": [{"code": "NotFound", "message": f"no order {order_id}"}]}
            if r.method == "GET" and parts[4] == "orderItems":
                return 200, {"payload": {"AmazonOrderId": order_id, "OrderItems": self.items[order_id]}}
            if r.method == "POST" and parts[4] == "shipmentConfirmation":
                if self.fail_confirmations > 0:
                    self.fail_confirmations -= 1
                    return 503, {"errors": [{"code": "ServiceUnavailable", "message": "try again"}]}
                self.confirmations.append((order_id, json.loads(r.body)))
                return 204, None
        return 404, {"errors": [{"code": "NotFound", "message": r.path}]}

    def _get_orders(self, query: dict[str, str]) -> tuple[int, Any]:
        if self.fail_orders > 0:
            self.fail_orders -= 1
            return 503, {"errors": [{"code": "ServiceUnavailable", "message": "try again"}]}
        if not query.get("MarketplaceIds"):
            return 400, {"errors": [{"code": "InvalidInput", "message": "MarketplaceIds is required"}]}
        if "NextToken" in query:
            if query["NextToken"] not in self._tokens:
                return 400, {"errors": [{"code": "InvalidInput", "message": "bad NextToken"}]}
            after, offset = self._tokens[query["NextToken"]]
        else:
            after, offset = query.get("LastUpdatedAfter", ""), 0
        if not after:
            return 400, {"errors": [{"code": "InvalidInput", "message": "LastUpdatedAfter is required"}]}
        since = datetime.fromisoformat(after)
        matching = sorted(
            (o for o in self.orders.values() if datetime.fromisoformat(o["LastUpdateDate"]) >= since),
            key=lambda o: o["AmazonOrderId"],
        )
        page = matching[offset : offset + self.page_size]
        payload: dict[str, Any] = {"Orders": page}
        if offset + self.page_size < len(matching):
            token = f"tok-{len(self._tokens) + 1}"
            self._tokens[token] = (after, offset + self.page_size)
            payload["NextToken"] = token
        return 200, {"payload": payload}
