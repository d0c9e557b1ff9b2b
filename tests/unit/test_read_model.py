"""The compact catalog read model answers exactly as plain lists and dicts of the same products
would, also after any sequence of patches (changes, archivals, new products)."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniretail.domain.catalog import Product, ProductStatus
from omniretail.services import read_model
from omniretail.services.read_model import CatalogSnapshot


def make(n: int, *, title: str = "Item", brand: str | None = "Acme", status: str = "active", rev: int = 1) -> Product:
    return msgspec.convert(
        {
            "id": f"prod_{n:06d}",
            "handle": f"item-{n}",
            "title": f"{title} {n}",
            "brand": brand,
            "category": "drinks" if n % 2 else "food",
            "status": status,
            "revision": rev,
            "variants": [
                {"sku": f"SKU-{n}-A", "prices": [{"amount": 100 + n, "currency": "EUR"}]},
                {"sku": f"SKU-{n}-B", "prices": [{"amount": 200 + n, "currency": "EUR"}]},
            ],
        },
        Product,
    )


def check(snap: CatalogSnapshot, expected: dict[str, Product]) -> None:
    ordered = [expected[k] for k in sorted(expected)]
    assert list(snap.products) == ordered
    assert len(snap.products) == len(ordered) == len(snap.by_id)
    assert [snap.products[i] for i in range(len(ordered))] == ordered
    assert snap.products[-1:] == ordered[-1:]
    for product in ordered:
        assert snap.by_id[product.id] == product and product.id in snap.by_id
        assert snap.by_handle[product.handle] == product
        for variant in product.variants:
            assert snap.by_sku[variant.sku] == (product, variant)
    assert len(snap.by_sku) == sum(len(p.variants) for p in ordered)
    assert set(snap.by_handle) == {p.handle for p in ordered}
    assert "prod_missing" not in snap.by_id and "nope" not in snap.by_sku
    with pytest.raises(KeyError):
        snap.by_id["prod_missing"]
    some = [p.id for p in ordered[::3]]
    assert snap.products_with_ids([*reversed(some), "prod_missing"]) == ordered[::3]
    # Pages with filters walk the same order as a list would.
    for brand, category, needle in ((None, None, None), ("Acme", None, None), (None, "food", "item 1")):
        want = [
            p
            for p in ordered
            if (brand is None or p.brand == brand)
            and (category is None or p.category == category)
            and (needle is None or needle in p.title.lower())
        ]
        got: list[Product] = []
        after = None
        while True:
            page, more = snap.page(after, 7, brand=brand, category=category, needle=needle)
            got.extend(page)
            if not more:
                break
            after = page[-1].id
        assert got == want


def test_lookups_pages_and_iteration_match_plain_collections() -> None:
    products = {p.id: p for p in (make(n, brand=None if n % 5 == 0 else "Acme") for n in range(100))}
    snap = CatalogSnapshot(7, random.sample(list(products.values()), len(products)))
    assert snap.revision == 7
    check(snap, products)


def test_decoded_blocks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_model, "CACHED_BLOCKS", 3)
    snap = CatalogSnapshot(1, [make(n) for n in range(200)])
    for i in range(0, 200, 3):
        snap.product_at(i)
    assert len(snap._cache) == 3
    list(snap.products)  # a full scan does not fill the cache
    assert len(snap._cache) == 3


def test_an_empty_catalog_grows_by_patches() -> None:
    snap = CatalogSnapshot(0, [])
    check(snap, {})
    assert snap.page(None, 10) == ([], False)
    added = {p.id: p for p in (make(n) for n in range(40))}
    snap = snap.patched(1, list(added.values()))
    check(snap, added)


ops = st.lists(st.tuples(st.sampled_from(["change", "archive", "add", "rehandle"]), st.integers(0, 159)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 120), batches=st.lists(ops, min_size=1, max_size=4))
def test_patches_match_a_rebuild(start: int, batches: list[list[tuple[str, int]]]) -> None:
    expected = {p.id: p for p in (make(n) for n in range(start))}
    snap = CatalogSnapshot(1, list(expected.values()))
    revision = 1
    for batch in batches:
        changed: dict[str, Product] = {}
        for op, n in batch:
            pid = f"prod_{n:06d}"
            current = changed.get(pid) or expected.get(pid)
            rev = (current.revision + 1) if current else 1
            if op == "add" or (op == "change" and current is None):
                changed[pid] = make(n, title="New", rev=rev)
            elif op == "change":
                changed[pid] = make(n, title="Changed", brand="Other", rev=rev)
            elif op == "archive" and current is not None:
                changed[pid] = make(n, status="archived", rev=rev)
            elif op == "rehandle" and current is not None:
                changed[pid] = msgspec.structs.replace(make(n, rev=rev), handle=f"renamed-{n}-{rev}")
        revision += 1
        snap = snap.patched(revision, list(changed.values()))
        for pid, product in changed.items():
            if product.status is ProductStatus.ACTIVE:
                expected[pid] = product
            else:
                expected.pop(pid, None)
        assert snap.revision == revision
        check(snap, expected)
