"""The baseline for ``catalog_read_ratio``: a bare Litestar handler that returns a page of 20
products from memory, as msgspec Structs of the same JSON shape the gateway sends.

No database, no auth, no middleware: what Litestar on granian costs by itself. The page is the
gateway's own ``GET /v1/products?limit=20`` response, captured in the same run and decoded into
the Structs below (``$OMNIRETAIL_BENCH_FIXTURE`` names the file), so both servers send the same
bytes. Served exactly as ``omniretail serve`` serves the gateway:

    python -m benchmarks.bare_app --port 8001
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec
from litestar import Litestar, get

FIXTURE_ENV = "OMNIRETAIL_BENCH_FIXTURE"


class MoneyOut(msgspec.Struct, frozen=True):
    amount: int
    currency: str


class VariantOut(msgspec.Struct, frozen=True):
    sku: str
    title: str
    gtin: str | None
    mpn: str | None
    attributes: dict[str, str]
    price: MoneyOut | None
    list_price: MoneyOut | None
    availability: str
    available: int


class MediaOut(msgspec.Struct, frozen=True):
    url: str
    alt: str


class ProductOut(msgspec.Struct, frozen=True):
    id: str
    handle: str
    title: str
    description: str
    brand: str | None
    condition: str
    category: str | None
    media: list[MediaOut]
    attributes: dict[str, str]
    variants: list[VariantOut]
    revision: int


class Page(msgspec.Struct, frozen=True):
    items: list[ProductOut]
    next_cursor: str | None = None


def load_page(path: str | os.PathLike[str]) -> Page:
    return msgspec.json.decode(Path(path).read_bytes(), type=Page)


def app() -> Litestar:
    fixture = os.environ.get(FIXTURE_ENV)
    if not fixture:
        raise RuntimeError(f"set {FIXTURE_ENV} to a page of products (JSON)")
    page = load_page(fixture)

    @get("/v1/products")
    async def list_products(limit: int = 20) -> Page:
        return page if limit >= len(page.items) else Page(items=page.items[:limit], next_cursor=page.next_cursor)

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[list_products, health], debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    from granian import Granian
    from granian.constants import Interfaces

    # The same server settings as ``omniretail serve`` (omniretail/cli.py).
    Granian(
        "benchmarks.bare_app:app",
        factory=True,
        interface=Interfaces.ASGI,
        address=args.host,
        port=args.port,
        workers=1,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
