"""Inbound Meta webhooks: signature check, payload shapes, events, delivery deduplication.

* Signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with the app
  secret>``, compared in constant time before anything is decoded or stored.
* Payloads: Instagram (``"object": "instagram"``) and Facebook Page (``"object": "page"``)
  webhooks; ``changes`` of field ``comments`` / ``live_comments`` and ``messaging`` entries.
  Unknown fields and other change fields are ignored.
* Deduplication: Meta retries a delivery it did not see answered with 2xx, so every event that
  would change something is claimed once in ``inbound_deliveries`` (channel, delivery id) with an
  ``INSERT ... ON CONFLICT DO NOTHING``: of two concurrent deliveries on either database exactly
  one inserts the row. The delivery id is the comment id or the message id (Meta's own unique
  ids; one comment is one intent however often it is delivered), else entry id, time, author and
  a hash of the text.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import msgspec
from sqlalchemy import delete, update

from omniretail.gateway.problems import ApiError
from omniretail.services.clock import Clock
from omniretail.storage import tables as t
from omniretail.storage.database import Database, dialect_insert

SIGNATURE_HEADER = "x-hub-signature-256"
#: A claim whose processing never finished (the process died) may be taken over after this.
STALE_CLAIM = timedelta(minutes=5)
#: ``inbound_deliveries.delivery_id`` is at most this long.
DELIVERY_ID_MAX = 200
#: Change fields that carry a comment.
COMMENT_FIELDS = frozenset({"comments", "live_comments"})

Id = str | int


def verify_signature(secret: str | None, header: str | None, body: bytes) -> None:
    """Raise a 401 problem unless ``header`` is the body's HMAC-SHA256 with ``secret``."""
    if not secret:
        raise ApiError(
            401,
            "signature-invalid",
            "webhook signatures cannot be checked: channels.social.app_secret is not configured",
            field="header.x-hub-signature-256",
        )
    if not header:
        raise ApiError(
            401, "signature-invalid", "the X-Hub-Signature-256 header is missing", field="header.x-hub-signature-256"
        )
    scheme, _, given = header.strip().partition("=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if scheme.lower() != "sha256" or not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise ApiError(
            401,
            "signature-invalid",
            "the X-Hub-Signature-256 signature does not match the body",
            field="header.x-hub-signature-256",
        )


def verify_subscription(expected: str | None, mode: str | None, token: str | None, challenge: str | None) -> str:
    """Meta's subscription handshake: the challenge to echo, or a problem (403 wrong token)."""
    if mode != "subscribe" or not challenge:
        raise ApiError(
            400, "invalid-handshake", "expected hub.mode=subscribe and a hub.challenge", field="query.hub.mode"
        )
    if not expected or not token or not hmac.compare_digest(expected.encode(), token.encode()):
        raise ApiError(403, "verify-token-invalid", "hub.verify_token does not match", field="query.hub.verify_token")
    return challenge


# -- Meta's payload shapes (what we read of them) --------------------------------------------------


class User(msgspec.Struct, frozen=True):
    id: Id = ""
    username: str | None = None


class MediaRef(msgspec.Struct, frozen=True):
    id: Id = ""


class CommentValue(msgspec.Struct, frozen=True):
    id: Id | None = None
    text: str = ""
    from_: User | None = msgspec.field(default=None, name="from")
    media: MediaRef | None = None


class Change(msgspec.Struct, frozen=True):
    field: str = ""
    value: msgspec.Raw = msgspec.Raw(b"null")


class Message(msgspec.Struct, frozen=True):
    mid: str | None = None
    text: str | None = None
    is_echo: bool = False


class Messaging(msgspec.Struct, frozen=True):
    sender: User | None = None
    recipient: User | None = None
    timestamp: int | float = 0
    message: Message | None = None


class Entry(msgspec.Struct, frozen=True):
    id: Id = ""
    time: int | float = 0
    changes: list[Change] = msgspec.field(default_factory=list)
    messaging: list[Messaging] = msgspec.field(default_factory=list)


class Payload(msgspec.Struct, frozen=True):
    object: str = ""
    entry: list[Entry] = msgspec.field(default_factory=list)


_payload = msgspec.json.Decoder(Payload)
_comment = msgspec.json.Decoder(CommentValue | None)


def decode(body: bytes) -> Payload:
    """The payload, or a 400 problem naming what is wrong with it."""
    try:
        return _payload.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid-payload", f"not a Meta webhook payload: {exc}") from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid-payload", "the body is not JSON") from None


# -- events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocialEvent:
    """A comment or a direct message someone sent."""

    kind: Literal["comment", "message"]
    #: ``instagram`` or ``facebook``: the identity namespace of the author's handle.
    platform: str
    delivery_id: str
    user_id: str
    username: str | None
    text: str
    media_id: str | None = None
    comment_id: str | None = None

    @property
    def recipient(self) -> dict[str, str]:
        """Whom a reply goes to, in Meta's Send API shape: a private reply to the comment, or
        the sender of the message."""
        if self.comment_id:
            return {"comment_id": self.comment_id}
        return {"id": self.user_id}


def _platform(obj: str) -> str:
    return {"instagram": "instagram", "page": "facebook"}.get(obj, obj or "social")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _delivery_id(platform: str, kind: str, *parts: object) -> str:
    raw = ":".join([platform, kind, *(str(p) for p in parts)])
    if len(raw) <= DELIVERY_ID_MAX:
        return raw
    return f"{platform}:{kind}:sha256:{hashlib.sha256(raw.encode()).hexdigest()}"


def events(payload: Payload) -> list[SocialEvent]:
    """Comments and messages from people (the account's own comments and echoes are skipped)."""
    platform = _platform(payload.object)
    found: list[SocialEvent] = []
    for entry in payload.entry:
        account = str(entry.id)
        for change in entry.changes:
            if change.field not in COMMENT_FIELDS:
                continue
            try:
                value = _comment.decode(change.value)
            except msgspec.DecodeError:
                continue
            if value is None or value.from_ is None or not str(value.from_.id) or not value.text:
                continue
            author = str(value.from_.id)
            if author == account:  # the merchant answering in its own comments
                continue
            comment_id = str(value.id) if value.id not in (None, "") else None
            media_id = str(value.media.id) if value.media is not None and str(value.media.id) else None
            key = (
                _delivery_id(platform, "comment", comment_id)
                if comment_id
                else _delivery_id(platform, "comment", account, entry.time, media_id, author, _digest(value.text))
            )
            found.append(
                SocialEvent(
                    kind="comment",
                    platform=platform,
                    delivery_id=key,
                    user_id=author,
                    username=value.from_.username or None,
                    text=value.text,
                    media_id=media_id,
                    comment_id=comment_id,
                )
            )
        for item in entry.messaging:
            message = item.message
            if message is None or message.is_echo or not message.text or item.sender is None:
                continue
            sender = str(item.sender.id)
            if not sender or sender == account:
                continue
            key = (
                _delivery_id(platform, "message", message.mid)
                if message.mid
                else _delivery_id(platform, "message", sender, item.timestamp, _digest(message.text))
            )
            found.append(
                SocialEvent(
                    kind="message",
                    platform=platform,
                    delivery_id=key,
                    user_id=sender,
                    username=None,
                    text=message.text,
                )
            )
    return found


# -- deduplication ---------------------------------------------------------------------------------


class Deliveries:
    """Claims on ``inbound_deliveries`` rows of one channel: the first claim of an id wins."""

    def __init__(self, db: Database, channel: str, clock: Clock) -> None:
        self.db = db
        self.channel = channel
        self.clock = clock

    async def claim(self, delivery_id: str) -> bool:
        """True for the first delivery of ``delivery_id`` (or one taking over a claim whose
        processing died more than ``STALE_CLAIM`` ago); False for a repeat."""
        d = t.inbound_deliveries
        now = self.clock()
        async with self.db.write() as conn:
            inserted = await conn.execute(
                dialect_insert(conn, d)
                .values(channel=self.channel, delivery_id=delivery_id, received_at=now, result=None)
                .on_conflict_do_nothing(index_elements=["channel", "delivery_id"])
                .returning(d.c.delivery_id)
            )
            if inserted.first() is not None:
                return True
            taken = await conn.execute(
                update(d)
                .where(
                    d.c.channel == self.channel,
                    d.c.delivery_id == delivery_id,
                    d.c.result.is_(None),
                    d.c.received_at < now - STALE_CLAIM,
                )
                .values(received_at=now)
            )
            return taken.rowcount == 1

    async def finish(self, delivery_id: str, result: msgspec.Struct | dict[str, str]) -> None:
        d = t.inbound_deliveries
        async with self.db.write() as conn:
            await conn.execute(
                update(d)
                .where(d.c.channel == self.channel, d.c.delivery_id == delivery_id)
                .values(result=msgspec.json.encode(result).decode())
            )

    async def release(self, delivery_id: str) -> None:
        """Forget a claim whose processing failed, so Meta's retry is processed."""
        d = t.inbound_deliveries
        async with self.db.write() as conn:
            await conn.execute(delete(d).where(d.c.channel == self.channel, d.c.delivery_id == delivery_id))
