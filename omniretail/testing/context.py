"""What the conformance tests work with: the context handed to each test (and to
``place_order``), and the bad requests a channel must refuse."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from omniretail.kernel import Kernel
from omniretail.testing.store import ADMIN, Store


@dataclass(frozen=True)
class BadRequest:
    """A request the channel must refuse with a 4xx, changing nothing.

    Give the body as ``json`` (encoded for you) or as raw ``content``. The channel's API key is
    sent unless ``key=False`` (or an ``Authorization`` header is given).
    """

    method: str
    path: str
    json: Any = None
    content: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    key: bool = True
    #: The status expected; None: any 4xx.
    status: int | None = None
    #: Expect an RFC 9457 ``application/problem+json`` body (False for pages meant for browsers).
    problem: bool = True
    #: What is wrong with it, used as the test id (default: the method and path).
    why: str = ""

    @property
    def id(self) -> str:
        return self.why or f"{self.method} {self.path}"

    @classmethod
    def of(cls, value: BadRequest | Sequence[Any]) -> BadRequest:
        """A ``BadRequest`` from itself or a tuple ``(method, path[, body[, headers]])``; a body
        of bytes or str is sent as is, anything else as JSON."""
        if isinstance(value, BadRequest):
            return value
        method, path, *rest = value
        body = rest[0] if rest else None
        headers = dict(rest[1]) if len(rest) > 1 else {}
        if isinstance(body, bytes | str):
            return cls(str(method), str(path), content=body, headers=headers)
        return cls(str(method), str(path), json=body, headers=headers)


@dataclass
class ConformanceContext:
    """What a conformance test (and ``place_order``) works with: the store and the channel."""

    store: Store
    channel: str
    #: Set by ``place_order`` when the order belongs to a signed-in customer: the kit then also
    #: reads the order as that customer, with the channel's key.
    customer_token: str | None = None

    @property
    def kernel(self) -> Kernel:
        return self.store.kernel

    @property
    def client(self) -> httpx.AsyncClient:
        return self.store.client

    def headers(self, *, customer: str | None = None, **extra: str) -> dict[str, str]:
        """The channel's API key (and the customer token, if given) as headers."""
        return self.store.headers(self.channel, customer=customer, **extra)

    def admin_headers(self) -> dict[str, str]:
        return self.store.headers(ADMIN)

    @property
    def locations(self) -> tuple[str, ...]:
        return self.kernel.channels[self.channel].locations

    async def sku_in_stock(self, quantity: int = 1) -> str:
        """The first SKU of the catalog with a price and ``quantity`` free units at the channel's
        locations."""
        snapshot = await self.kernel.catalog.snapshot()
        currency = self.kernel.config.store.currency
        skus = [v.sku for p in snapshot.products for v in p.variants if v.price_for(currency) is not None]
        free = await self.kernel.inventory.available(skus, self.locations)
        for sku in skus:
            if free[sku] >= quantity:
                return sku
        raise AssertionError(f"no SKU has {quantity} free unit(s) at {self.channel}'s locations {self.locations}")

    async def send(self, request: BadRequest) -> httpx.Response:
        headers = dict(request.headers)
        if request.key and not any(name.lower() == "authorization" for name in headers):
            headers.update(self.headers())
        if request.content is not None:
            return await self.client.request(request.method, request.path, content=request.content, headers=headers)
        if request.json is not None:
            return await self.client.request(request.method, request.path, json=request.json, headers=headers)
        return await self.client.request(request.method, request.path, headers=headers)


def idempotency_key() -> dict[str, str]:
    return {"Idempotency-Key": f'"conformance-{secrets.token_hex(8)}"'}
