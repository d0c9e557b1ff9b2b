"""Inbound webhook verification (Standard Webhooks v1 and Shopify-style HMAC) and delivery dedup.

* **Standard Webhooks** (https://github.com/standard-webhooks/standard-webhooks,
  ``spec/standard-webhooks.md``): ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
  ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several
  space-separated); verified with the reference library, ``standardwebhooks.Webhook.verify``.
* **Shopify** (https://shopify.dev/docs/apps/build/webhooks/verify-deliveries):
  ``X-Shopify-Hmac-SHA256`` is the base64 HMAC-SHA256 of the raw body with the shared secret,
  compared in constant time; ``X-Shopify-Event-Id`` (or ``X-Shopify-Webhook-Id``) identifies the
  delivery; ``X-Shopify-Triggered-At`` dates it.

Both refuse a delivery dated more than five minutes from the kernel clock. The reference library
also checks the timestamp against the wall clock (its own ±5 minutes, not configurable); in a
running store the kernel clock is the wall clock, so the two agree.

Deliveries are recorded in ``inbound_deliveries`` (unique on channel and delivery id) once
processed, with an insert that ignores a row already there (``ON CONFLICT DO NOTHING`` on SQLite
and PostgreSQL alike), so two copies arriving at once both succeed and leave one row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from omniretail.storage import tables as t
from omniretail.storage.database import Database, dialect_insert

#: How far a delivery's timestamp may be from now, either way.
TOLERANCE = timedelta(minutes=5)
#: Longest delivery id accepted (the column holds 200 characters, with a scheme prefix).
MAX_DELIVERY_ID = 150


class Refused(Exception):
    """The delivery is not authentic, or not fresh: answered 401 with this reason."""


class Malformed(Exception):
    """The delivery's headers are unusable (not an authentication failure): answered 400."""


def standard_webhook(secret: str) -> Webhook:
    """The verifier for a ``whsec_...`` secret; ValueError if the secret is not usable."""
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        if len(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)) < 16:
            raise ValueError("the secret is shorter than 128 bits")
        return Webhook(secret)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a Standard Webhooks secret (whsec_<base64>): {exc}") from None


def _fresh(at: datetime, now: datetime) -> None:
    if at < now - TOLERANCE:
        raise Refused("the delivery is too old (more than 5 minutes): a replay?")
    if at > now + TOLERANCE:
        raise Refused("the delivery is dated more than 5 minutes in the future")


def _delivery_id(value: str, header: str) -> str:
    value = value.strip()
    if len(value) > MAX_DELIVERY_ID or not value.isprintable():
        raise Malformed(f"{header} must be at most {MAX_DELIVERY_ID} printable characters")
    return value


def verify_standard(verifier: Webhook, body: bytes, headers: Mapping[str, str], now: datetime) -> str:
    """The delivery id of an authentic, fresh Standard Webhooks delivery; else ``Refused``."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not (msg_id and stamp and signature):
        raise Refused("webhook-id, webhook-timestamp and webhook-signature are all required")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise Refused("webhook-timestamp must be whole unix seconds")
    skew = int(stamp) - now.timestamp()
    if skew < -TOLERANCE.total_seconds():
        raise Refused("the delivery is too old (more than 5 minutes): a replay?")
    if skew > TOLERANCE.total_seconds():
        raise Refused("the delivery is dated more than 5 minutes in the future")
    delivery = _delivery_id(msg_id, "webhook-id")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the body is not UTF-8: it cannot have been signed as sent") from None
    # The library splits each "version,signature" pair and base64-decodes it without guarding:
    # keep only well-formed v1 pairs, so a mangled header is a refusal, never a crash.
    pairs = [p for p in signature.split(" ") if p.count(",") == 1 and p.startswith("v1,") and _is_base64(p[3:])]
    if not pairs:
        raise Refused("webhook-signature has no v1 signature")
    try:
        verifier.verify(text, {**headers, "webhook-signature": " ".join(pairs)}, json_parse=False)
    except WebhookVerificationError as exc:
        raise Refused(f"the signature does not match ({exc})") from None
    return delivery


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _shopify_time(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Refused("X-Shopify-Triggered-At is not an ISO 8601 date-time") from None
    if at.tzinfo is None:
        raise Refused("X-Shopify-Triggered-At needs a time zone")
    return at


def verify_shopify(secrets: list[str], body: bytes, headers: Mapping[str, str], now: datetime) -> str:
    """The delivery id of an authentic, fresh Shopify-style delivery; else ``Refused``.
    ``secrets``: the current secret and, during a rotation, the previous one."""
    given = headers.get("x-shopify-hmac-sha256", "").strip()
    event_id = headers.get("x-shopify-event-id") or headers.get("x-shopify-webhook-id") or ""
    triggered = headers.get("x-shopify-triggered-at", "")
    if not (given and event_id and triggered):
        raise Refused("X-Shopify-Hmac-SHA256, X-Shopify-Event-Id and X-Shopify-Triggered-At are all required")
    _fresh(_shopify_time(triggered), now)
    delivery = _delivery_id(event_id, "X-Shopify-Event-Id")
    presented = given.encode("utf-8", "replace")
    matched = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise Refused("X-Shopify-Hmac-SHA256 does not match the body")
    return delivery


class Deliveries:
    """Processed webhook deliveries of one channel, by delivery id."""

    def __init__(self, db: Database, channel: str) -> None:
        self.db = db
        self.channel = channel

    async def seen(self, delivery_id: str) -> str | None:
        """The recorded result of a processed delivery, or None."""
        d = t.inbound_deliveries
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(d.c.result).where(d.c.channel == self.channel, d.c.delivery_id == delivery_id)
                )
            ).first()
        return None if row is None else (row[0] or "")

    async def record(self, delivery_id: str, now: datetime, result: str) -> bool:
        """Record a processed delivery; False if it was recorded already (by a concurrent copy)."""
        async with self.db.write() as conn:
            stmt = (
                dialect_insert(conn, t.inbound_deliveries)
                .values(channel=self.channel, delivery_id=delivery_id, received_at=now, result=result)
                .on_conflict_do_nothing(index_elements=["channel", "delivery_id"])
            )
            inserted = (await conn.execute(stmt)).rowcount
        return bool(inserted and inserted > 0)
