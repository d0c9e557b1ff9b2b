"""Money: integer minor units and an ISO 4217 currency code. Never a float."""

from __future__ import annotations

from typing import Annotated

import msgspec

from omniretail.domain.errors import CurrencyMismatch, InvalidValue

Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code")]

# ISO 4217 minor-unit exponents that differ from 2. Everything else has two decimals.
_EXPONENTS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3, "CLF": 4, "UYW": 4,
}  # fmt: skip


def minor_exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (JPY 0, EUR 2, KWD 3)."""
    return _EXPONENTS.get(currency, 2)


class Money(msgspec.Struct, frozen=True, kw_only=True):
    """An amount in the currency's minor units (cents for EUR/USD, yen for JPY)."""

    amount: int
    currency: Currency

    def __post_init__(self) -> None:
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise InvalidValue(f"currency {self.currency!r} is not an ISO 4217 code", field="currency")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=0, currency=currency)

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def times(self, quantity: int) -> Money:
        return Money(amount=self.amount * quantity, currency=self.currency)

    def decimal_string(self) -> str:
        """``"15.00"`` for 1500 EUR cents: the number channel feeds write before the code."""
        exp = minor_exponent(self.currency)
        sign = "-" if self.amount < 0 else ""
        whole, frac = divmod(abs(self.amount), 10**exp) if exp else (abs(self.amount), 0)
        return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"

    def feed_string(self) -> str:
        """``"15.00 USD"``: the price format of Google Merchant and Meta catalog feeds."""
        return f"{self.decimal_string()} {self.currency}"
