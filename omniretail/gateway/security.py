"""Authentication, authorisation and rate limiting for every route, core and plugin alike.

* ``Authorization: Bearer <key>``: every key is bound to one channel and scopes. Feed routes that
  opt in (``opt={"token_query": True}``) also accept ``?token=<key>`` for feed fetchers that cannot
  set headers. Routes with ``opt={"public": True}`` (signed webhooks) skip key auth.
* ``Customer-Token: <token>``: a signed-in customer (from ``POST /v1/customers/sessions``).
* Who may call a route is its ``opt["requires"]`` (set on a controller or router, checked by
  ``AccessMiddleware`` after the rate limit): ``"storefront"`` (the ``storefront`` or ``admin``
  scope), ``"admin"`` (``/v1/admin``) or ``"channel:<name>"`` (``/channels/<name>/``: a key of
  that channel, or an admin key). No key: 401; wrong scope or channel: 403. (Not Litestar guards:
  those copy the route handler on every request.)
* Rate limit: a fixed one-minute window per key (per client address without one), per process;
  429 with ``Retry-After``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from omniretail.gateway.keys import KeyStore, Principal
from omniretail.gateway.problems import ApiError

CUSTOMER_HEADER = "customer-token"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1").strip()
    return None


def _query_token(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class AuthMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def should_bypass_for_scope(self, scope: Scope) -> bool:
        """The OpenAPI document and its pages are public."""
        return str(scope.get("path", "")).startswith("/schema")

    def __init__(self, keys: KeyStore, clock: Any) -> None:
        self.keys = keys
        self.clock = clock

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler = scope.get("route_handler")
        opt = handler.opt if handler is not None else {}
        if opt.get("public"):
            await next_app(scope, receive, send)
            return
        secret = _bearer(scope) or (_query_token(scope) if opt.get("token_query") else None)
        if not secret:
            raise NotAuthorizedException(
                "an API key is required: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = await self.keys.principal(secret)
        if principal is None:
            raise NotAuthorizedException("the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        token = _header(scope, CUSTOMER_HEADER.encode())
        if token:
            customer_id = await self.keys.session_customer(token, self.clock())
            if customer_id is None:
                raise NotAuthorizedException("the customer token is unknown or expired")
            principal = Principal(
                key_id=principal.key_id,
                channel=principal.channel,
                scopes=principal.scopes,
                customer_id=customer_id,
            )
        scope["user"] = principal
        await next_app(scope, receive, send)


class AccessMiddleware(ASGIMiddleware):
    """403 unless the key may call the route (its ``opt["requires"]``). After the rate limit, so
    forbidden requests count against it too."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler = scope.get("route_handler")
        requires = handler.opt.get(REQUIRES) if handler is not None else None
        user = scope.get("user")
        if requires is not None and isinstance(user, Principal):  # no principal: a public route
            authorize(user, requires)
        await next_app(scope, receive, send)


#: The ``opt`` key naming who may call a route (module docstring).
REQUIRES = "requires"
STOREFRONT: dict[str, Any] = {REQUIRES: "storefront"}
ADMIN: dict[str, Any] = {REQUIRES: "admin"}


def channel_only(name: str) -> dict[str, Any]:
    """``opt`` for ``/channels/<name>/``: that channel's key, or an admin key."""
    return {REQUIRES: f"channel:{name}"}


def authorize(principal: Principal, requires: str) -> None:
    """Raise 403 unless ``principal`` may call a route requiring ``requires``."""
    if requires == "storefront":
        if not ({"storefront", "admin"} & principal.scopes):
            raise PermissionDeniedException("this key has no storefront scope")
    elif requires == "admin":
        if not principal.is_admin:
            raise PermissionDeniedException("this operation needs a key with the admin scope")
    elif requires.startswith("channel:"):
        name = requires.removeprefix("channel:")
        if principal.channel != name and not principal.is_admin:
            raise PermissionDeniedException(f"this key belongs to channel {principal.channel!r}, not {name!r}")
    else:
        raise PermissionDeniedException(f"this route requires {requires!r}, which no key has")


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException("an API key is required")
    return user


def require_customer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    customer_id = principal_of(connection).customer_id
    if customer_id is None:
        raise ApiError(
            401,
            "customer-required",
            "sign in first: send the Customer-Token header",
            field="header.customer-token",
        )
    return customer_id


class RateLimitMiddleware(ASGIMiddleware):
    """Fixed one-minute windows per key (or client address), in this process."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.window = 0
        self.counts: dict[str, int] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if self.per_minute <= 0:
            await next_app(scope, receive, send)
            return
        now = time.time()
        window = int(now // 60)
        if window != self.window:
            self.window, self.counts = window, {}
        user = scope.get("user")
        ident = user.key_id if isinstance(user, Principal) else str((scope.get("client") or ("?",))[0])
        count = self.counts.get(ident, 0) + 1
        self.counts[ident] = count
        if count > self.per_minute:
            retry = str(int((window + 1) * 60 - now) + 1)
            raise ApiError(
                429,
                "rate-limited",
                f"more than {self.per_minute} requests a minute for this key",
                headers={"Retry-After": retry},
            )
        await next_app(scope, receive, send)
