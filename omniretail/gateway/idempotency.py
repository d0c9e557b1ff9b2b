"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header).

Routes opt in with ``opt={"idempotency": "required"}`` (checkout) or ``"optional"`` (other creating
POSTs). Keys are kept per key owner (API key + customer) for ``gateway.idempotency_retention_hours``
(24 h by default):

* first use: processed; the response (success or 4xx) is stored;
* a retry after completion: the stored response is replayed, with ``Idempotent-Replayed: true``;
* the same key while the first request is still running: 409;
* the same key with a different request (method, path or body): 422;
* a required key missing or malformed: 400.

A 5xx is not stored, so the client can retry. Nor is a response the handler marked *not final*
(``omniretail.gateway.problems.mark_not_final(scope)``, or raising ``ApiError(..., final=False)``
or a domain error with ``final = False``): 409 ``payment-pending`` with ``Retry-After`` says "the
answer is not known yet". The key is kept, ``open``, with its request fingerprint: a retry of the
same request runs the handler again (which finishes or undoes what the first request started),
the same key with a different request is still 422. A request whose process died mid-way leaves an
in-flight key; after ``IN_FLIGHT_LEASE`` seconds a retry takes it over, but only on a route that
can finish what the first attempt started (``opt={"idempotency_resumable": True}``: checkout,
which finds the order its cart became; the handler is told via
``scope["state"]["idempotency_takeover"]``). On any other route the first attempt may or may not
have taken effect, and running it again could apply it twice, so the answer is a stored 409
``idempotency-outcome-unknown``: look at the resource, then retry with a new key.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import bindparam, delete, select, update

from omniretail.gateway.keys import Principal
from omniretail.gateway.problems import NOT_FINAL, ApiError
from omniretail.storage import tables as t
from omniretail.storage.database import Database, insert_or_ignore, prepared

_COMPLETE = prepared(
    update(t.idempotency_keys)
    .where(t.idempotency_keys.c.owner == bindparam("owner_"), t.idempotency_keys.c.key == bindparam("key_"))
    .values(
        status=bindparam("b_status"),
        response_status=bindparam("b_response_status"),
        response_headers=bindparam("b_response_headers"),
        response_body=bindparam("b_response_body"),
    )
)

HEADER = b"idempotency-key"
IN_FLIGHT_LEASE = 30.0
_KEY = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')
_headers_codec = msgspec.json.Decoder(list[tuple[str, str]])


def parse_key(raw: str) -> str:
    """An RFC 8941 sf-string (``"abc"``) or, leniently, a bare token; printable ASCII, <= 255."""
    m = _KEY.match(raw.strip())
    if not m:
        raise ApiError(
            400,
            "idempotency-key-invalid",
            "Idempotency-Key must be 1-255 printable ASCII characters, e.g. a quoted UUID",
            field="header.idempotency-key",
        )
    return m.group(1)


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(
        self, owner: str, key: str, fingerprint: str, now: datetime, retention: timedelta
    ) -> tuple[str, Any]:
        """("new", None) | ("takeover", None) | ("replay", (status, headers, body))."""
        ik = t.idempotency_keys
        fresh = {
            "owner": owner,
            "key": key,
            "fingerprint": fingerprint,
            "status": "in_flight",
            "created_at": now,
            "expires_at": now + retention,
        }
        async with self.db.autocommit() as conn:  # the common case: a key never seen
            if (await conn.execute(insert_or_ignore(conn, ik), fresh)).rowcount == 1:
                return "new", None
        async with self.db.write() as conn:
            if (await conn.execute(insert_or_ignore(conn, ik), fresh)).rowcount == 1:
                return "new", None  # the record was removed since
            # The key is known: an expired record is forgotten and this is a new request.
            expired = await conn.execute(delete(ik).where(ik.c.owner == owner, ik.c.key == key, ik.c.expires_at <= now))
            if expired.rowcount and (await conn.execute(insert_or_ignore(conn, ik), fresh)).rowcount == 1:
                return "new", None
            row = (await conn.execute(select(ik).where(ik.c.owner == owner, ik.c.key == key))).first()
            if row is None:  # removed in between: treat as new next time
                raise ApiError(409, "idempotency-in-flight", "a request with this Idempotency-Key is in progress")
            if row.fingerprint != fingerprint:
                raise ApiError(
                    422,
                    "idempotency-key-reused",
                    "this Idempotency-Key was used for a different request",
                    field="header.idempotency-key",
                )
            if row.status == "open":
                # The last answer was not final: run again, for the same request only (above).
                reopened = await conn.execute(
                    update(ik)
                    .where(ik.c.owner == owner, ik.c.key == key, ik.c.status == "open")
                    .values(status="in_flight", created_at=now)
                )
                if reopened.rowcount != 1:
                    raise ApiError(
                        409,
                        "idempotency-in-flight",
                        "a request with this Idempotency-Key is in progress",
                        headers={"Retry-After": "1"},
                    )
                return "new", None
            if row.status == "done":
                return "replay", (
                    row.response_status,
                    _headers_codec.decode(row.response_headers or "[]"),
                    row.response_body or b"",
                )
            if (now - row.created_at).total_seconds() < IN_FLIGHT_LEASE:
                raise ApiError(
                    409,
                    "idempotency-in-flight",
                    "a request with this Idempotency-Key is still in progress; retry later",
                    headers={"Retry-After": "1"},
                )
            result = await conn.execute(
                update(ik)
                .where(
                    ik.c.owner == owner,
                    ik.c.key == key,
                    ik.c.status == "in_flight",
                    ik.c.created_at == row.created_at,
                )
                .values(created_at=now)
            )
            if result.rowcount != 1:
                raise ApiError(409, "idempotency-in-flight", "a request with this Idempotency-Key is in progress")
            return "takeover", None

    async def complete(self, owner: str, key: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        async with self.db.autocommit() as conn:
            await conn.execute(
                _COMPLETE,
                {
                    "owner_": owner,
                    "key_": key,
                    "b_status": "done",
                    "b_response_status": status,
                    "b_response_headers": msgspec.json.encode(headers).decode(),
                    "b_response_body": body,
                },
            )

    async def reopen(self, owner: str, key: str) -> None:
        """The answer was not final: keep the key and its request fingerprint (so the same key
        with another request is still 422) but let the next retry of this request run again."""
        ik = t.idempotency_keys
        async with self.db.write() as conn:
            await conn.execute(
                update(ik).where(ik.c.owner == owner, ik.c.key == key, ik.c.status == "in_flight").values(status="open")
            )

    async def abandon(self, owner: str, key: str) -> None:
        ik = t.idempotency_keys
        async with self.db.write() as conn:
            await conn.execute(delete(ik).where(ik.c.owner == owner, ik.c.key == key, ik.c.status == "in_flight"))

    async def purge(self, now: datetime) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(delete(t.idempotency_keys).where(t.idempotency_keys.c.expires_at <= now))
            return result.rowcount


_REPLAY_HEADERS = {"content-type", "location", "etag"}


class IdempotencyMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def _outcome_unknown(self, owner: str, key: str, scope: Scope, send: Send) -> None:
        """Answer (and store) a 409 for an interrupted request that cannot be resumed safely."""
        from omniretail.gateway.problems import PROBLEM_JSON, TYPE_BASE, Problem

        problem = Problem(
            type=TYPE_BASE + "idempotency-outcome-unknown",
            title="Conflict",
            status=409,
            detail="an earlier request with this Idempotency-Key was interrupted and may have taken effect; "
            "check the resource, then retry with a new key",
            instance=str(scope.get("path", "")),
        )
        body = msgspec.json.encode(problem)
        headers = [("content-type", PROBLEM_JSON)]
        await self.store.complete(owner, key, 409, headers, body)
        await send(
            {"type": "http.response.start", "status": 409, "headers": [(k.encode(), v.encode()) for k, v in headers]}
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def should_bypass_for_scope(self, scope: Scope) -> bool:
        """Only POSTs create things; reads pass straight through."""
        return scope.get("method") != "POST"

    def __init__(self, store: IdempotencyStore, clock: Any, retention_hours: int) -> None:
        self.store = store
        self.clock = clock
        self.retention = timedelta(hours=retention_hours)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler = scope.get("route_handler")
        mode = handler.opt.get("idempotency") if handler is not None else None
        if not mode or scope.get("method") != "POST":
            await next_app(scope, receive, send)
            return
        raw = next((v.decode("latin-1") for k, v in scope["headers"] if k == HEADER), None)
        if raw is None:
            if mode == "required":
                raise ApiError(
                    400,
                    "idempotency-key-missing",
                    "this operation needs an Idempotency-Key header",
                    field="header.idempotency-key",
                )
            await next_app(scope, receive, send)
            return
        key = parse_key(raw)
        user = scope.get("user")
        owner = user.owner if isinstance(user, Principal) else "anonymous"
        body = await Request(scope, receive).body()
        path = scope["path"] + "?" + scope.get("query_string", b"").decode("latin-1")
        fingerprint = hashlib.sha256(b"POST " + path.encode() + b"\n" + body).hexdigest()
        outcome, stored = await self.store.begin(owner, key, fingerprint, self.clock(), self.retention)
        if outcome == "replay":
            status, headers, content = stored
            raw_headers = [(k.encode(), v.encode()) for k, v in headers]
            raw_headers.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": content, "more_body": False})
            return
        state = scope.setdefault("state", {})
        if outcome == "takeover":
            if not handler.opt.get("idempotency_resumable"):
                await self._outcome_unknown(owner, key, scope, send)
                return
            state["idempotency_takeover"] = True

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        held: list[Message] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.decode("latin-1").lower() in _REPLAY_HEADERS
                ]
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            # Held back until the answer is stored: a client never sees a result the server could
            # not replay after a crash.
            held.append(message)

        try:
            await next_app(scope, receive, capture)
        except BaseException:
            # Handler errors arrive here already rendered as responses; this is a crash or a
            # cancelled request: free the key so a retry can run.
            await self.store.abandon(owner, key)
            raise
        if captured["status"] >= 500:
            await self.store.abandon(owner, key)
        elif state.get(NOT_FINAL):
            await self.store.reopen(owner, key)
        else:
            await self.store.complete(owner, key, captured["status"], captured["headers"], b"".join(captured["body"]))
        for message in held:
            await send(message)
