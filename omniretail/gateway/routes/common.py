"""Helpers shared by route modules: dependencies, documented errors, ETags, the caller."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from omniretail.domain.customer import Customer
from omniretail.gateway.keys import Principal
from omniretail.gateway.problems import COMMON_ERRORS, Problem
from omniretail.gateway.security import principal_of
from omniretail.kernel import Kernel

_DESCRIPTIONS = {
    400: "Malformed request (bad header, query parameter or cursor)",
    401: "No API key, an unknown key, or a customer token is needed",
    403: "The key lacks the scope or belongs to another channel",
    404: "Not found (or not yours)",
    409: "Conflict with the current state (stock, status, in-flight idempotency key)",
    413: "Request body too large",
    422: "Body failed validation (unknown or invalid field), or Idempotency-Key reused",
    429: "Rate limit exceeded",
}


def errors(*extra: int) -> dict[int, ResponseSpec]:
    """problem+json responses documented on every operation."""
    codes = sorted(set(COMMON_ERRORS) | set(extra))
    return {
        c: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS.get(c, "Error"),
            media_type="application/problem+json",
        )
        for c in codes
    }


#: The kernel, injected into every handler that names a ``kernel`` parameter.
KernelDep = NamedDependency[Kernel]


def provide_kernel(state: State) -> Kernel:
    kernel: Kernel = state.kernel
    return kernel


def caller(request: Request[Any, Any, Any]) -> Principal:
    return principal_of(request)


async def caller_customer(kernel: Kernel, principal: Principal) -> Customer | None:
    return await kernel.customers.get(principal.customer_id) if principal.customer_id else None


def channel_locations(kernel: Kernel, principal: Principal) -> tuple[str, ...]:
    """Locations the caller's channel sells from (all of them for admin or unknown channels)."""
    ctx = kernel.channels.get(principal.channel)
    return ctx.locations if ctx is not None else tuple(loc.id for loc in kernel.config.locations)


class PageCache:
    """Rendered catalog pages for a second. The key holds the catalog revision and this
    process's write generation, so any write here invalidates at once; other processes' stock
    changes show within ``ttl`` seconds (checkout always checks stock for real).

    Single flight: when many requests miss the same page at once (the page expired, or a write
    moved the generation), one of them builds it and the others wait for that answer instead of
    each querying stock and encoding the page again."""

    def __init__(self, ttl: float = 1.0, size: int = 2048) -> None:
        self.ttl = ttl
        self.size = size
        self.pages: dict[Any, tuple[float, bytes, str]] = {}
        self._building: dict[Any, asyncio.Future[tuple[bytes, str]]] = {}

    def get(self, key: Any) -> tuple[bytes, str] | None:
        hit = self.pages.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1], hit[2]

    def put(self, key: Any, payload: Any) -> tuple[bytes, str]:
        body = msgspec.json.encode(payload)
        etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        if len(self.pages) >= self.size:
            self.pages.clear()
        self.pages[key] = (time.monotonic() + self.ttl, body, etag)
        return body, etag

    async def get_or_build(self, key: Any, build: Callable[[], Awaitable[Any]]) -> tuple[bytes, str]:
        """The cached page for ``key``, or ``await build()`` encoded and cached, built once however
        many callers ask at the same time. A failed build fails only its own caller; the others
        then build for themselves."""
        hit = self.get(key)
        if hit is not None:
            return hit
        pending = self._building.get(key)
        if pending is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(pending)
            return self.put(key, await build())
        future: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            encoded = self.put(key, await build())
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("page build cancelled"))
            future.exception()  # retrieved here: waiters may be none
            raise
        finally:
            self._building.pop(key, None)
        future.set_result(encoded)
        return encoded


def json_with_etag(
    request: Request[Any, Any, Any], payload: Any, *, encoded: tuple[bytes, str] | None = None
) -> Response[bytes]:
    """A JSON response with a strong ETag; 304 when the client's If-None-Match matches."""
    if encoded is None:
        body = msgspec.json.encode(payload)
        etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    else:
        body, etag = encoded
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    inm = request.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in [x.strip().removeprefix("W/") for x in inm.split(",")]):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)
