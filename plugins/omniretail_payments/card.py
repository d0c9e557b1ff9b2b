"""Cards through a payment service over HTTP (httpx), with signed webhooks for late answers.

The service's API (what ``fake_service.py`` implements, and what an adapter for a real payment
service maps onto); every POST carries ``Idempotency-Key`` (the framework's key, the same on a
retry) and, when ``api_key`` is set, ``Authorization: Bearer <api_key>``:

* ``POST /v1/payments`` ``{"reference", "amount", "currency", "token"}`` -> ``{"id", "status":
  "authorized" | "declined" | "pending", "reason"}``; ``reference`` is omniretail's payment id;
* ``POST /v1/payments/{reference}/capture`` ``{"amount"}`` -> ``{"status": "captured" | "failed"}``;
* ``POST /v1/payments/{reference}/void`` -> ``{"status": "voided" | "failed"}`` (a void of a
  reference the service never authorized succeeds and stops a late authorization);
* ``POST /v1/payments/{reference}/refunds`` ``{"amount"}`` -> ``{"status": "refunded" | "failed"}``.

A 4xx answer is a decline (its ``reason`` says why); a timeout, a connection error, a 409, 429 or
5xx means the outcome is unknown (``PaymentUnavailable``): asked again later with the same key.

Webhooks: ``POST /payments/<name>/webhooks`` (public, mounted by the gateway), Standard Webhooks
signed with ``webhook_secret`` (verified with the ``standardwebhooks`` library, which also refuses
a timestamp more than five minutes away). Body ``{"type": "payment.authorized" |
"payment.declined" | "payment.captured" | "payment.voided" | "payment.refunded", "data":
{"reference", "id", "reason"}}``. Each delivery is processed once per ``webhook-id``; a late one
(the checkout was settled meanwhile) or a repeat changes nothing. A delivery that arrives while a
request is settling the same checkout is answered 409 (``Retry-After``) and not recorded, so the
service's redelivery is processed.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.status_codes import HTTP_200_OK
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from omniretail.config import ConfigError, Secret
from omniretail.domain.payment import CaptureMode, OperationStatus, PaymentPending
from omniretail.gateway.problems import ApiError
from omniretail.payment import (
    AuthorizeRequest,
    PaymentContext,
    PaymentProviderSpec,
    PaymentRef,
    PaymentUnavailable,
    ProviderResult,
)
from omniretail.storage import tables as t

log = logging.getLogger("omniretail.payments.card")

NAME = "card"


class CardSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Base URL of the payment service (``https://pay.example.com``).
    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    #: Sent as ``Authorization: Bearer ...``, as env:NAME.
    api_key: Secret | None = None
    #: Standard Webhooks secret (``whsec_...``) the service signs its webhooks with, as env:NAME.
    webhook_secret: Secret | None = None
    #: Seconds to wait for the service's answer; past it the outcome is unknown (asked again later).
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0


def webhook_verifier(secret: str, key: str) -> Webhook:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        if len(base64.b64decode(raw, validate=True)) < 16:
            raise ValueError("shorter than 128 bits")
        return Webhook(secret)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(key, f"not a Standard Webhooks secret (whsec_<base64>): {exc}") from None


class WebhookData(msgspec.Struct, frozen=True, kw_only=True):
    reference: str
    id: str | None = None
    reason: str = ""


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    data: WebhookData


class CardProvider:
    def __init__(self, context: PaymentContext) -> None:
        self.kernel = context.kernel
        self.name = context.name
        self.settings: CardSettings = context.settings
        secret = self.settings.webhook_secret
        self.verifier = webhook_verifier(secret, f"payments.{self.name}.webhook_secret") if secret else None

    # -- the service ---------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
        import httpx  # loaded by the first card payment, not by every process that registers cards

        headers = {"Idempotency-Key": key}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        try:
            async with httpx.AsyncClient(
                base_url=self.settings.base_url, timeout=self.settings.timeout_seconds
            ) as client:
                response = await client.post(path, json=body, headers=headers)
        except httpx.TimeoutException:
            raise PaymentUnavailable(f"no answer within {self.settings.timeout_seconds} s") from None
        except httpx.HTTPError as exc:
            raise PaymentUnavailable(f"cannot reach the payment service: {exc!r}") from None
        if response.status_code >= 500 or response.status_code in (409, 429):
            raise PaymentUnavailable(f"payment service answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise PaymentUnavailable("payment service answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise PaymentUnavailable("payment service answered with something that is not an object")
        return response.status_code, data

    @staticmethod
    def _result(status: int, data: dict[str, Any], ok: str) -> ProviderResult:
        ref = data.get("id") if isinstance(data.get("id"), str) else None
        reason = str(data.get("reason") or data.get("detail") or "")
        if status >= 400:
            return ProviderResult.declined(reason or f"refused ({status})", provider_ref=ref)
        value = data.get("status")
        if value == ok:
            return ProviderResult.approved(provider_ref=ref)
        if value == "pending":
            return ProviderResult.pending(provider_ref=ref)
        return ProviderResult.declined(reason or str(value), provider_ref=ref)

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> ProviderResult:
        if not request.token:
            return ProviderResult.declined("no card token was given")
        status, data = await self._post(
            "/v1/payments",
            {
                "reference": request.payment_id,
                "amount": request.amount,
                "currency": request.currency,
                "token": request.token,
            },
            idempotency_key,
        )
        return self._result(status, data, "authorized")

    async def capture(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult:
        status, data = await self._post(
            f"/v1/payments/{payment.payment_id}/capture", {"amount": amount}, idempotency_key
        )
        return self._result(status, data, "captured")

    async def void(self, payment: PaymentRef, *, idempotency_key: str) -> ProviderResult:
        status, data = await self._post(f"/v1/payments/{payment.payment_id}/void", {}, idempotency_key)
        return self._result(status, data, "voided")

    async def refund(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult:
        status, data = await self._post(
            f"/v1/payments/{payment.payment_id}/refunds", {"amount": amount}, idempotency_key
        )
        return self._result(status, data, "refunded")

    # -- webhooks ------------------------------------------------------------------------------------

    def routes(self) -> Sequence[Any]:
        provider = self

        @post(
            "/webhooks",
            operation_id=f"{self.name}PaymentWebhook",
            status_code=HTTP_200_OK,
            opt={"public": True},
            summary="Signed payment results from the card payment service (Standard Webhooks)",
        )
        async def webhook(request: Request[Any, Any, Any]) -> dict[str, str]:
            body = await request.body()
            return {"result": await provider.receive(body, dict(request.headers))}

        return [webhook]

    async def receive(self, body: bytes, headers: dict[str, str]) -> str:
        """Verify, deduplicate and apply one webhook delivery; returns what happened."""
        if self.verifier is None:
            raise ApiError(401, "webhook-refused", f"payments.{self.name}.webhook_secret is not set")
        try:
            self.verifier.verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            # ValueError: a malformed signature header or a body that is not UTF-8 (the library
            # does not wrap those in its own error).
            raise ApiError(401, "webhook-signature", f"the webhook signature does not verify: {exc}") from None
        try:
            event = msgspec.json.decode(body, type=WebhookBody)
        except msgspec.DecodeError as exc:
            raise ApiError(400, "webhook-body", f"the webhook body is not a payment event: {exc}") from None
        delivery = headers.get("webhook-id", "")[:150]
        source = f"payments.{self.name}"
        db = self.kernel.db
        async with db.read() as conn:
            seen = await conn.scalar(
                select(t.inbound_deliveries.c.result).where(
                    t.inbound_deliveries.c.channel == source, t.inbound_deliveries.c.delivery_id == delivery
                )
            )
        if seen is not None:
            return "duplicate"
        result = await self._apply(event)
        dialect = sqlite if db.is_sqlite else postgresql
        async with db.write() as conn:
            await conn.execute(
                dialect.insert(t.inbound_deliveries)
                .values(channel=source, delivery_id=delivery, received_at=self.kernel.clock(), result=result)
                .on_conflict_do_nothing(index_elements=["channel", "delivery_id"])
            )
        return result

    async def _apply(self, event: WebhookBody) -> str:
        kernel = self.kernel
        try:
            payment = await kernel.payments.get(event.data.reference)
        except Exception:
            return "unknown payment"
        if payment.provider != self.name:
            return "not ours"
        if event.type in ("payment.authorized", "payment.declined"):
            if event.type == "payment.authorized":
                result = ProviderResult.approved(event.data.id)
            else:
                result = ProviderResult.declined(event.data.reason or "declined", event.data.id)
            try:
                attempt = await kernel.checkout.settle_payment(payment.id, result)
            except PaymentPending:
                # Being settled by a request right now: not recorded, so the redelivery counts.
                raise ApiError(
                    409,
                    "payment-busy",
                    "this payment is being settled; deliver again later",
                    headers={"Retry-After": "2"},
                ) from None
            return f"attempt {attempt.status.value}" if attempt else "no attempt"
        if event.type in ("payment.captured", "payment.voided", "payment.refunded"):
            # Ask again about this payment's pending operations (same keys: same answers).
            pending = [
                op
                for op in await kernel.payments.operations(payment.order_id or "")
                if op.payment_id == payment.id and op.status is OperationStatus.PENDING
            ]
            for op in pending:
                await kernel.payments.execute(op.id)
            return f"{len(pending)} operation(s) asked again"
        return "ignored"


SPEC = PaymentProviderSpec(
    name=NAME,
    title="Card",
    description="cards through a payment service over HTTP, with signed webhooks",
    settings=CardSettings,
    create=CardProvider,
    capture=CaptureMode.IMMEDIATE,
)
