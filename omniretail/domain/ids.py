"""Identifiers: sortable, unguessable ids with a type prefix, and readable order numbers."""

from __future__ import annotations

import base64
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


#: RFC 4648 base32 digits to Crockford's, lower case (``base64.b32encode`` does the arithmetic).
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")


def new_id(prefix: str) -> str:
    """A ULID-like id: 48-bit millisecond time then 80 random bits, Crockford base32, prefixed.

    Sortable by creation time, and with 80 random bits it is not guessable (ids are not secrets,
    but enumerating them must not be a way in).
    """
    # 128 bits as 26 digits (130 bits, the top two zero): shifted left by 30 they fill 20 bytes,
    # whose first 26 base32 digits are the id's.
    value = ((time.time_ns() // 1_000_000) << 80 | int.from_bytes(secrets.token_bytes(10), "big")) << 30
    return prefix.lower() + "_" + base64.b32encode(value.to_bytes(20, "big"))[:26].translate(_TO_CROCKFORD).decode()


def new_order_number() -> str:
    """A short number a person can read out or type: ``7K3M-9QXD`` (no I, L, O, U)."""
    raw = _b32(secrets.randbits(40), 8)
    return f"{raw[:4]}-{raw[4:]}"


def new_short_code(length: int = 6) -> str:
    """A short code (for cart handoff), Crockford base32 without ambiguous letters."""
    return _b32(secrets.randbits(5 * length), length)


def normalize_code(code: str) -> str:
    """Normalise a code a person typed or read out: case, dashes and look-alike letters."""
    table = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})
    return code.upper().replace("-", "").replace(" ", "").translate(table)
