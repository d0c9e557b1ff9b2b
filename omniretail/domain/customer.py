"""One customer record, whatever channel they arrive from, through their identities."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

import msgspec

from omniretail.domain.errors import InvalidValue


class IdentityKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    LOYALTY_CARD = "loyalty_card"
    MARKETPLACE_BUYER = "marketplace_buyer"
    SOCIAL_HANDLE = "social_handle"
    VOICE_ACCOUNT = "voice_account"


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_identity(kind: IdentityKind, value: str) -> str:
    """The canonical form two channels agree on: case-folded e-mail, digits-only phone, etc."""
    raw = value.strip()
    if not raw:
        raise InvalidValue(f"{kind.value} is empty", field=kind.value)
    if kind is IdentityKind.EMAIL:
        if not _EMAIL.match(raw):
            raise InvalidValue(f"{raw!r} is not an e-mail address", field="email")
        return raw.lower()
    if kind is IdentityKind.PHONE:
        digits = re.sub(r"[\s().\-]", "", raw)
        if digits.startswith("00"):
            digits = "+" + digits[2:]
        if not re.fullmatch(r"\+?[0-9]{6,15}", digits):
            raise InvalidValue(f"{raw!r} is not a phone number", field="phone")
        return digits
    if kind is IdentityKind.SOCIAL_HANDLE:
        return raw.lower().lstrip("@")
    if kind is IdentityKind.LOYALTY_CARD:
        return raw.upper().replace(" ", "").replace("-", "")
    return raw


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """A way a channel knows the customer. ``namespace`` scopes ids such as a marketplace's."""

    kind: IdentityKind
    value: str
    namespace: str = ""

    def normalized(self) -> Identity:
        return Identity(kind=self.kind, value=normalize_identity(self.kind, self.value), namespace=self.namespace)


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str = ""
    tier: str | None = None
    identities: tuple[Identity, ...] = ()
    created_at: datetime
    #: Set when this record was merged into another: the surviving customer's id.
    merged_into: str | None = None

    def identity(self, kind: IdentityKind) -> str | None:
        for identity in self.identities:
            if identity.kind is kind:
                return identity.value
        return None
