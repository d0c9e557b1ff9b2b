"""What a payment provider plugin declares and implements.

A plugin declares each provider it offers with ``register(PaymentProviderSpec(...))`` from the
``register_payment_providers`` hook. For each ``[payments.<name>]`` table in the configuration the
kernel calls the spec's ``create(PaymentContext)`` once and keeps the provider object it returns.

A provider has four async methods. Each takes ``idempotency_key``, a key the framework derives
from its own ids and sends again, unchanged, whenever it repeats the call (a client retrying with
the same Idempotency-Key, the recovery job, a webhook): the provider (or the payment service
behind it) must answer a repeat with the first call's result and never move money twice.

* ``authorize(request, idempotency_key=...)``: hold ``request.amount``;
* ``capture(payment, amount, idempotency_key=...)``: take what was held;
* ``void(payment, idempotency_key=...)``: release a hold that was not captured. Called also when
  the framework never learnt whether the authorization happened (a timeout): a void of an unknown
  payment must succeed and must make a later authorization with the same key fail;
* ``refund(payment, amount, idempotency_key=...)``: give back part or all of a capture.

Each returns a ``ProviderResult``: ``approved``, ``declined`` (a final no, with a reason) or
``pending`` (accepted, the answer comes later by webhook or by asking again). When the outcome
is unknown (a timeout, a connection error) raise ``PaymentUnavailable``: the framework keeps the
state it is in and asks again later with the same key.

A provider may also have ``routes() -> Sequence[Any]``: Litestar handlers mounted, public (no API
key), under ``/payments/<name>/``, for the provider's signed webhooks. They verify signatures
themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from omniretail.domain.order import Fulfilment
from omniretail.domain.payment import CaptureMode

if TYPE_CHECKING:
    from omniretail.kernel import Kernel


class ProviderStatus(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    PENDING = "pending"


class ProviderResult(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer to one call."""

    status: ProviderStatus
    #: The provider's own id for the payment (an authorization id, a ledger entry).
    provider_ref: str | None = None
    #: Why it was declined, for people (``insufficient funds``).
    reason: str = ""

    @classmethod
    def approved(cls, provider_ref: str | None = None) -> ProviderResult:
        return cls(status=ProviderStatus.APPROVED, provider_ref=provider_ref)

    @classmethod
    def declined(cls, reason: str, provider_ref: str | None = None) -> ProviderResult:
        return cls(status=ProviderStatus.DECLINED, reason=reason, provider_ref=provider_ref)

    @classmethod
    def pending(cls, provider_ref: str | None = None) -> ProviderResult:
        return cls(status=ProviderStatus.PENDING, provider_ref=provider_ref)


class PaymentUnavailable(Exception):
    """The provider's answer is unknown (timeout, connection error, 5xx). Nothing is assumed:
    the framework asks again later with the same idempotency key."""


class AuthorizeRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to authorize. The amount is the total the server computed; never a client's number."""

    payment_id: str
    amount: int
    currency: str
    channel: str
    cart_id: str
    fulfilment: Fulfilment
    #: The identified customer paying (a signed-in customer or one a channel identified), if any.
    customer_id: str | None = None
    #: Opaque payment details from the storefront (a card token); None for most providers.
    token: str | None = None


class PaymentRef(msgspec.Struct, frozen=True, kw_only=True):
    """An authorized payment, for capture, void and refund."""

    payment_id: str
    amount: int
    currency: str
    provider_ref: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    #: The key the payment was authorized with (a void of an unknown payment names it).
    authorize_key: str


class PaymentProvider(Protocol):
    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> ProviderResult: ...
    async def capture(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult: ...
    async def void(self, payment: PaymentRef, *, idempotency_key: str) -> ProviderResult: ...
    async def refund(self, payment: PaymentRef, amount: int, *, idempotency_key: str) -> ProviderResult: ...


class PaymentProviderSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A payment provider a plugin offers."""

    #: Config table name (``[payments.<name>]``), the ``provider`` of a checkout's payment and the
    #: URL segment of its webhooks (``/payments/<name>/``).
    name: str
    title: str
    description: str = ""
    #: The provider's frozen settings Struct (``forbid_unknown_fields=True``), or None.
    settings: type[msgspec.Struct] | None = None
    #: ``create(context) -> provider``: called once per kernel for a configured provider.
    create: Callable[[PaymentContext], Any]
    #: When payments are captured unless ``[payments.<name>] capture`` says otherwise.
    capture: CaptureMode = CaptureMode.IMMEDIATE
    #: Only for a customer the channel identified (signed in, loyalty card): a stored-value wallet.
    requires_customer: bool = False
    #: Fulfilment methods the provider can pay for (empty: any), e.g. pay at pickup.
    fulfilments: frozenset[Fulfilment] = frozenset()

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"payment provider name {self.name!r} must be a lower-case identifier")


class PaymentContext:
    """Handed to ``PaymentProviderSpec.create``: the provider's name, settings and the kernel."""

    def __init__(self, spec: PaymentProviderSpec, settings: Any, capture: CaptureMode, kernel: Kernel) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        #: The capture mode in force (configuration, else the spec's default).
        self.capture = capture
        self.kernel = kernel

    def __repr__(self) -> str:
        return f"<PaymentContext {self.name}>"


#: The ``register`` callback handed to ``register_payment_providers``.
RegisterPaymentProvider = Callable[[PaymentProviderSpec], None]
