"""Payments, checkout attempts and the loyalty wallet.

Every amount is an integer in minor units of the payment's currency. A payment's counters only
move forward through conditional statements in storage; the invariants below are also CHECK
constraints in the schema:

* ``0 <= captured <= authorized``;
* ``0 <= refunded + refund_pending <= captured``: never refund more than was taken.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

from omniretail.domain.errors import Conflict, DomainError, InvalidValue


class CaptureMode(StrEnum):
    """When an authorized payment is captured."""

    #: Right after the order is written.
    IMMEDIATE = "immediate"
    #: When the goods are handed over: the order is collected or shipped.
    ON_FULFILMENT = "on_fulfilment"


class PaymentStatus(StrEnum):
    AUTHORIZING = "authorizing"
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    #: A capture is being asked of the provider (an operation is pending).
    CAPTURING = "capturing"
    CAPTURED = "captured"
    #: A void is being asked of the provider.
    VOIDING = "voiding"
    VOIDED = "voided"


class OperationKind(StrEnum):
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


class OperationStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AttemptStatus(StrEnum):
    """A checkout with payment, one row per try (one live try per cart)."""

    #: Stock holds are being taken (inside one transaction: never seen committed unless the
    #: process died between the holds and the provider call).
    RESERVING = "reserving"
    #: Stock is held; the provider's answer is awaited (or was lost: a timeout).
    AUTHORIZING = "authorizing"
    #: The order is written.
    COMPLETED = "completed"
    #: The provider declined; the holds were released.
    DECLINED = "declined"
    #: Undone: the authorization (if any) voided and the holds released.
    ABANDONED = "abandoned"


#: Attempts still in between: a retry with the same key, a webhook or the recovery job settles them.
LIVE_ATTEMPTS = frozenset({AttemptStatus.RESERVING, AttemptStatus.AUTHORIZING})


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment of an order (or of a checkout attempt, before the order exists)."""

    id: str
    provider: str
    status: PaymentStatus
    capture_mode: CaptureMode
    currency: str
    #: What was asked for: the order total computed by the server.
    amount: int
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    #: Refunds asked of the provider and not yet confirmed (already counted against ``captured``).
    refund_pending: int = 0
    order_id: str | None = None
    attempt_id: str | None = None
    customer_id: str | None = None
    #: The provider's own id for the payment, once known.
    provider_ref: str | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise InvalidValue("a payment amount cannot be negative", field="amount")

    @property
    def refundable(self) -> int:
        """What may still be refunded: captured minus refunded and refunds in flight."""
        return self.captured - self.refunded - self.refund_pending

    @property
    def authorize_key(self) -> str:
        """The idempotency key of this payment's authorization (the same on every retry)."""
        return f"{self.id}.authorize"


class PaymentOperation(msgspec.Struct, frozen=True, kw_only=True):
    """A capture, void or refund asked of the provider; retried with the same key until it ends."""

    id: str
    payment_id: str
    kind: OperationKind
    amount: int
    status: OperationStatus = OperationStatus.PENDING
    idempotency_key: str
    reason: str = ""
    attempts: int = 0
    last_error: str | None = None
    channel: str = "system"
    actor: str = "system"
    created_at: datetime
    updated_at: datetime


class AttemptLine(msgspec.Struct, frozen=True, kw_only=True):
    """A cart line as priced and held when the attempt began."""

    line_no: int
    sku: str
    quantity: int
    location_id: str
    reservation_id: str


class CheckoutAttempt(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    cart_id: str
    idempotency_key: str
    channel: str
    status: AttemptStatus
    customer_id: str | None
    currency: str
    #: The total the server computed when the attempt began (what is authorized).
    total: int
    cart_version: int
    payment_id: str
    lines: tuple[AttemptLine, ...]
    #: The checkout request (fulfilment, contact, payment choice), as JSON.
    request: bytes
    order_id: str | None = None
    reason: str | None = None
    #: When the stock holds lapse: an attempt not completed by then is undone.
    expires_at: datetime
    created_at: datetime
    updated_at: datetime

    @property
    def live(self) -> bool:
        return self.status in LIVE_ATTEMPTS


# -- wallet ------------------------------------------------------------------------------------


class LedgerKind(StrEnum):
    TOP_UP = "top_up"
    PAY = "pay"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    #: Loyalty points earned for an order (money unchanged).
    EARN = "earn"


class Wallet(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's stored value and loyalty points."""

    customer_id: str
    currency: str
    balance: int = 0
    points: int = 0
    #: Order totals counted for tiers (minor units).
    lifetime_spend: int = 0


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the append-only wallet ledger."""

    seq: int
    customer_id: str
    kind: LedgerKind
    #: Signed change of the balance (minor units).
    amount: int
    #: Signed change of the points.
    points: int
    balance_after: int
    points_after: int
    #: Unique: a second write with the same reference changes nothing.
    reference: str
    order_id: str | None = None
    channel: str
    actor: str
    note: str = ""
    created_at: datetime


# -- errors ------------------------------------------------------------------------------------


class PaymentDeclined(DomainError):
    """The provider refused the payment. Nothing was ordered; stock holds were released."""

    code = "payment-declined"


class PaymentPending(Conflict):
    """The provider's answer is not known yet (a timeout, or an asynchronous result). Retry with
    the same Idempotency-Key: the checkout is finished or undone, never done twice."""

    code = "payment-pending"
    #: Not the request's final answer: the gateway does not store it for the Idempotency-Key.
    final = False
    #: Seconds a client should wait before retrying.
    retry_after = 2


class CheckoutInProgress(Conflict):
    """Another checkout of this cart (another Idempotency-Key) is still in between."""

    code = "checkout-in-progress"
    final = False
    retry_after = 2


class CheckoutAbandoned(Conflict):
    """This attempt was undone (the answer came too late or the cart changed); check out again
    with a new Idempotency-Key."""

    code = "checkout-abandoned"


class RefundExceedsCaptured(InvalidValue):
    code = "refund-exceeds-captured"


class InsufficientFunds(Conflict):
    code = "insufficient-funds"


class DuplicateReference(Exception):
    """A ledger row with this reference exists: the write it belongs to happened already."""


def split_refund(line_total: int, quantity: int, returned_before: int, returning: int) -> int:
    """The share of a line's total for ``returning`` more units, so that returning every unit,
    in any number of steps, refunds exactly ``line_total`` (integer minor units, no drift)."""
    if quantity <= 0:
        return 0
    after = returned_before + returning
    return line_total * after // quantity - line_total * returned_before // quantity
