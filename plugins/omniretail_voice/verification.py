"""Verifying that a request comes from Alexa, for a skill hosted as a web service.

The checks Amazon lists ("Host a Custom Skill as a Web Service"), in order:

1. ``SignatureCertChainUrl``: ``https``, host ``s3.amazonaws.com`` (any case), port 443 if
   given, and a path that starts with ``/echo.api/`` once normalised (``/echo.api/../x`` does
   not). The normalised URL is the one fetched.
2. The PEM chain at that URL (fetched once per URL, then cached): the first certificate signs;
   it must be valid now, name ``echo-api.amazon.com`` in its subject alternative names and chain
   up to a trusted root (``cryptography.x509.verification``; the default trust store is the
   Mozilla bundle from ``certifi``).
3. ``Signature-256``: base64 RSA PKCS#1 v1.5 over the SHA-256 of the raw body, checked with the
   signing certificate's key. The older SHA-1 ``Signature`` header is not accepted.
4. The request's ``timestamp`` within 150 seconds of now (checked by the caller once the body is
   parsed: see ``check_timestamp``).

Any failure raises ``VerificationFailed`` and nothing else happens. The certificate fetcher and
the trust roots are constructor arguments (and module attributes, ``fetch_chain`` and
``trust_roots``, used when none is given) so tests can sign with their own CA.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import posixpath
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import DNSName
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

log = logging.getLogger("omniretail.voice")

CERT_HEADER = "SignatureCertChainUrl"
SIGNATURE_HEADER = "Signature-256"
CERT_HOST = "s3.amazonaws.com"
CERT_PATH = "/echo.api/"
SIGNER_NAME = "echo-api.amazon.com"
#: How far a request's timestamp may be from now, either way.
TOLERANCE = timedelta(seconds=150)
#: A certificate chain larger than this is not Amazon's.
MAX_CHAIN_BYTES = 64 * 1024
#: Chains kept in memory (Amazon rotates its signing certificate rarely).
CACHE_SIZE = 16

ChainFetcher = Callable[[str], Awaitable[bytes]]


class VerificationFailed(Exception):
    """The request is not a genuine, fresh Alexa request; ``code`` says which check failed."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def certificate_url(raw: str) -> str:
    """The normalised certificate chain URL, if it is one Alexa uses; else VerificationFailed."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise VerificationFailed("alexa-certificate-url", f"{CERT_HEADER} is not a URL") from None
    if parts.scheme.lower() != "https":
        raise VerificationFailed("alexa-certificate-url", f"{CERT_HEADER} must be an https URL")
    if (parts.hostname or "").lower() != CERT_HOST or parts.username is not None or parts.password is not None:
        raise VerificationFailed("alexa-certificate-url", f"{CERT_HEADER} must be on {CERT_HOST}")
    if port is not None and port != 443:
        raise VerificationFailed("alexa-certificate-url", f"{CERT_HEADER} must use port 443")
    if parts.query or parts.fragment:
        raise VerificationFailed("alexa-certificate-url", f"{CERT_HEADER} must not have a query or fragment")
    path = unquote(parts.path)
    normalised = posixpath.normpath(path) if path else ""
    if path.endswith("/") and normalised != "/":
        normalised += "/"
    if not normalised.startswith(CERT_PATH) or len(normalised) <= len(CERT_PATH):
        raise VerificationFailed("alexa-certificate-url", f"{CERT_HEADER} must be under {CERT_PATH}")
    return f"https://{CERT_HOST}{normalised}"


async def fetch_chain(url: str) -> bytes:
    """Download a PEM certificate chain (no redirects, bounded size)."""
    async with (
        httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise VerificationFailed("alexa-certificate", f"the certificate chain answered {response.status_code}")
        data = b""
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > MAX_CHAIN_BYTES:
                raise VerificationFailed("alexa-certificate", "the certificate chain is too large")
        return data


@functools.cache
def trust_roots() -> tuple[x509.Certificate, ...]:
    """The default trust store: the Mozilla CA bundle shipped by ``certifi``."""
    import certifi

    with open(certifi.where(), "rb") as f:
        pem = f.read()
    roots = []
    marker = b"-----END CERTIFICATE-----"
    for block in pem.split(marker):
        if b"-----BEGIN CERTIFICATE-----" not in block:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                roots.append(x509.load_pem_x509_certificate(block + marker))
            except ValueError:
                continue
    return tuple(roots)


def _policy_store(roots: Sequence[x509.Certificate]) -> Store:
    return Store(list(roots))


class Verifier:
    """Verifies Alexa request signatures. One per mounted voice channel; caches chains per URL."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        fetch: ChainFetcher | None = None,
        roots: Sequence[x509.Certificate] | None = None,
    ) -> None:
        self.clock = clock
        self._fetch = fetch
        self._roots = tuple(roots) if roots is not None else None
        self._store: Store | None = None
        self._chains: OrderedDict[str, list[x509.Certificate]] = OrderedDict()

    def _trust_store(self) -> Store:
        if self._store is None:
            self._store = _policy_store(self._roots if self._roots is not None else trust_roots())
        return self._store

    async def _chain(self, url: str) -> list[x509.Certificate]:
        cached = self._chains.get(url)
        if cached is not None:
            self._chains.move_to_end(url)
            return cached
        fetch = self._fetch or fetch_chain
        try:
            pem = await fetch(url)
        except VerificationFailed:
            raise
        except Exception as exc:  # network trouble: the request cannot be verified
            log.warning("could not fetch the Alexa certificate chain %s: %s", url, exc)
            raise VerificationFailed("alexa-certificate", "the certificate chain could not be fetched") from None
        try:
            chain = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise VerificationFailed("alexa-certificate", "the certificate chain is not PEM") from None
        if not chain:
            raise VerificationFailed("alexa-certificate", "the certificate chain is empty")
        self._chains[url] = chain
        while len(self._chains) > CACHE_SIZE:
            self._chains.popitem(last=False)
        return chain

    def _check_chain(self, chain: list[x509.Certificate], now: datetime) -> x509.Certificate:
        leaf, intermediates = chain[0], chain[1:]
        # Amazon's list asks for the name, the dates and the chain; not for a TLS server EKU.
        ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
        )
        verifier = (
            PolicyBuilder()
            .store(self._trust_store())
            .time(now)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
            .build_server_verifier(DNSName(SIGNER_NAME))
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise VerificationFailed("alexa-certificate", f"the signing certificate is not valid: {exc}") from None
        return leaf

    async def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check the certificate URL, the chain and the body's signature (steps 1 to 3)."""
        raw_url = headers.get(CERT_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not raw_url or not signature:
            raise VerificationFailed(
                "alexa-signature-missing", f"an Alexa request carries {CERT_HEADER} and {SIGNATURE_HEADER}"
            )
        url = certificate_url(raw_url)
        try:
            signature_bytes = base64.b64decode(signature.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("alexa-signature", f"{SIGNATURE_HEADER} is not base64") from None
        leaf = self._check_chain(await self._chain(url), self.clock())
        key = leaf.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise VerificationFailed("alexa-certificate", "the signing certificate has no RSA key")
        try:
            key.verify(signature_bytes, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise VerificationFailed("alexa-signature", "the request signature does not match its body") from None

    def check_timestamp(self, timestamp: datetime | None) -> None:
        """Step 4: the request was made within 150 seconds of now."""
        if timestamp is None:
            raise VerificationFailed("alexa-timestamp", "the request has no valid timestamp")
        if abs(self.clock() - timestamp) > TOLERANCE:
            raise VerificationFailed("alexa-timestamp", "the request timestamp is more than 150 seconds from now")
