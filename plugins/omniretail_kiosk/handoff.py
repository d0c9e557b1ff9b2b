"""QR handoff of a kiosk cart to the shopper's phone.

Two forms:

* the web shop's checkout URL ``/channels/webshop/checkout?products=SKU:QTY,...`` (the same shape
  Meta and Google send shoppers to): the phone rebuilds the cart's lines in a new web cart;
* a short-lived signed code opening ``/channels/<kiosk>/handoff/<code>``: the phone continues the
  *same* cart. The code is ``base64url(cart_id ":" expiry) "." base64url(mac)``, where ``mac`` is
  HMAC-SHA256 (truncated to 128 bits, to keep the QR code small) with ``handoff_secret`` over a
  purpose label, the channel name and the payload. It carries no secret; whoever holds it until it
  expires can open the cart, exactly as whoever scans the screen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

import segno

from omniretail.domain.cart import CartLine

#: Bytes of the HMAC-SHA256 kept in a code (128 bits).
MAC_BYTES = 16
_LABEL = b"omniretail.kiosk.handoff.v1"
#: The web shop checkout URL takes at most this many lines.
CHECKOUT_MAX_LINES = 50


class BadCode(Exception):
    """The code is malformed or its signature does not match."""


class ExpiredCode(Exception):
    """The code was genuine but has expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadCode("not base64url") from None


def _mac(secret: str, channel: str, payload: bytes) -> bytes:
    message = _LABEL + b"\n" + channel.encode() + b"\n" + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:MAC_BYTES]


def sign(secret: str, channel: str, cart_id: str, expires_at: datetime) -> str:
    payload = f"{cart_id}:{int(expires_at.timestamp())}".encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, channel, payload))}"


def verify(secret: str, channel: str, code: str, now: datetime) -> tuple[str, datetime]:
    """(cart id, expiry) of a genuine, unexpired code; ``BadCode`` or ``ExpiredCode`` otherwise."""
    if len(code) > 200 or code.count(".") != 1:
        raise BadCode("malformed")
    raw_payload, raw_mac = code.split(".")
    payload, mac = _unb64(raw_payload), _unb64(raw_mac)
    if not hmac.compare_digest(mac, _mac(secret, channel, payload)):
        raise BadCode("signature mismatch")
    cart_id, sep, expiry = payload.decode("ascii", "replace").rpartition(":")
    if not sep or not cart_id or not expiry.isdigit():
        raise BadCode("malformed payload")
    try:
        expires_at = datetime.fromtimestamp(int(expiry), UTC)
    except (OverflowError, ValueError, OSError):
        raise BadCode("expiry out of range") from None
    if now >= expires_at:
        raise ExpiredCode(cart_id)
    return cart_id, expires_at


def checkout_url(base_url: str, lines: Sequence[CartLine], coupon: str | None, source: str) -> str | None:
    """The web shop checkout URL that rebuilds these lines; None if there are too many lines."""
    if not lines or len(lines) > CHECKOUT_MAX_LINES:
        return None
    query = {"products": ",".join(f"{x.sku}:{x.quantity}" for x in lines)}
    if coupon:
        query["coupon"] = coupon
    query |= {"utm_source": source, "utm_medium": "qr_handoff"}
    return f"{base_url.rstrip('/')}/channels/webshop/checkout?{urlencode(query)}"


def _qr(url: str) -> segno.QRCode:
    return segno.make_qr(url, error="m")


def qr_svg(url: str) -> str:
    """A standalone SVG document (with its namespace, no XML declaration) of the QR code of
    ``url``: usable inline in HTML, as a data URI or as an image/svg+xml response."""
    buffer = io.BytesIO()
    _qr(url).save(buffer, kind="svg", scale=4, border=4, xmldecl=False, title="Scan to continue on your phone")
    return buffer.getvalue().decode()


def qr_png(url: str) -> bytes:
    buffer = io.BytesIO()
    _qr(url).save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()
