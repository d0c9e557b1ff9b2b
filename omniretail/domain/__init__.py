"""The domain: value objects, entities, rules and events. Imports only the stdlib and msgspec."""

from omniretail.domain.cart import Cart, CartLine, CartStatus
from omniretail.domain.catalog import (
    ChannelContent,
    Condition,
    Media,
    Price,
    Product,
    ProductStatus,
    SocialContent,
    Variant,
    VoiceContent,
)
from omniretail.domain.customer import Customer, Identity, IdentityKind
from omniretail.domain.errors import (
    CartClosed,
    Conflict,
    CurrencyMismatch,
    DomainError,
    IdentityConflict,
    IllegalTransition,
    InvalidValue,
    NotFound,
    OutOfStock,
    ReturnExceedsSold,
)
from omniretail.domain.inventory import (
    Availability,
    LocationKind,
    Reservation,
    ReservationStatus,
    StockLevel,
    StockLocation,
)
from omniretail.domain.money import Money
from omniretail.domain.order import Fulfilment, Order, OrderLine, OrderStatus

__all__ = [
    "Availability",
    "Cart",
    "CartClosed",
    "CartLine",
    "CartStatus",
    "ChannelContent",
    "Condition",
    "Conflict",
    "CurrencyMismatch",
    "Customer",
    "DomainError",
    "Fulfilment",
    "Identity",
    "IdentityConflict",
    "IdentityKind",
    "IllegalTransition",
    "InvalidValue",
    "LocationKind",
    "Media",
    "Money",
    "NotFound",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OutOfStock",
    "Price",
    "Product",
    "ProductStatus",
    "Reservation",
    "ReservationStatus",
    "ReturnExceedsSold",
    "SocialContent",
    "StockLevel",
    "StockLocation",
    "Variant",
    "VoiceContent",
]
