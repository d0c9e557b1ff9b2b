"""Named domain errors. Every rule the domain enforces fails with one of these."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a business rule refused the operation. Maps to a 4xx at the gateway."""

    #: Stable, machine-readable code (also the last part of the problem+json ``type``).
    code = "domain-error"
    #: The field or key path the error is about, when there is one.
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class InvalidValue(DomainError):
    code = "invalid-value"


class NotFound(DomainError):
    code = "not-found"


class Conflict(DomainError):
    code = "conflict"


class CurrencyMismatch(InvalidValue):
    code = "currency-mismatch"


class IllegalTransition(Conflict):
    """An order was asked to move to a status its state machine does not allow from here."""

    code = "illegal-transition"

    def __init__(self, current: str, target: str, reason: str = "") -> None:
        detail = f"an order in status {current!r} cannot become {target!r}"
        super().__init__(detail + (f": {reason}" if reason else ""), field="status")
        self.current = current
        self.target = target


class OutOfStock(Conflict):
    """Not enough available units for a SKU at any location the channel sells from."""

    code = "out-of-stock"

    def __init__(self, sku: str, requested: int, location_id: str | None = None) -> None:
        where = f" at {location_id!r}" if location_id else ""
        super().__init__(f"not enough stock for {sku!r}{where} (requested {requested})", field="sku")
        self.sku = sku
        self.requested = requested
        self.location_id = location_id


class CartClosed(Conflict):
    code = "cart-closed"


class ReturnExceedsSold(InvalidValue):
    code = "return-exceeds-sold"


class IdentityConflict(Conflict):
    code = "identity-conflict"


class HandoffUsed(Conflict):
    code = "handoff-used"


class HandoffExpired(Conflict):
    code = "handoff-expired"
