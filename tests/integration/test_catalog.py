from __future__ import annotations

import json

import pytest

from omniretail.domain.errors import InvalidValue, NotFound
from omniretail.domain.events import ProductChanged
from omniretail.kernel import Kernel
from tests.integration.helpers import draft


async def test_create_update_keeps_revisions_and_bumps_catalog_revision(kernel: Kernel) -> None:
    product = await kernel.catalog.create(draft("MUG-1", brand="Acme"))
    rev0 = (await kernel.catalog.snapshot()).revision
    updated = await kernel.catalog.update(product.id, draft("MUG-1", price=1200, brand="Acme"))
    assert updated.revision == 2 and updated.id == product.id
    assert [r for r, _, _ in await kernel.catalog.revisions(product.id)] == [1, 2]
    snap = await kernel.catalog.snapshot()
    assert snap.revision > rev0
    assert snap.by_sku["MUG-1"][1].prices[0].amount == 1200
    # Saving the same content again creates no revision.
    same = await kernel.catalog.update(product.id, draft("MUG-1", price=1200, brand="Acme"))
    assert same.revision == 2
    async with kernel.uow.read() as tx:
        events = [e for _, e in await tx.events.for_customer("nobody")]
    assert events == []


async def test_sku_cannot_belong_to_two_products(kernel: Kernel) -> None:
    await kernel.catalog.create(draft("DUP-1"))
    with pytest.raises(InvalidValue, match="belongs to another product"):
        await kernel.catalog.create(draft("DUP-1", handle="other"))
    with pytest.raises(NotFound):
        await kernel.catalog.get("prod_missing")


async def test_archived_products_leave_the_read_model(kernel: Kernel) -> None:
    product = await kernel.catalog.create(draft("OLD-1"))
    assert "OLD-1" in (await kernel.catalog.snapshot()).by_sku
    await kernel.catalog.set_status(product.id, "archived")
    assert "OLD-1" not in (await kernel.catalog.snapshot()).by_sku


async def test_json_import_is_all_or_nothing(kernel: Kernel) -> None:
    good = [
        {
            "handle": "a",
            "title": "A",
            "variants": [{"sku": "A-1", "prices": [{"amount": 100, "currency": "EUR"}]}],
        }
    ]
    result = await kernel.catalog.import_json(json.dumps(good).encode())
    assert (result.created, result.updated) == (1, 0)
    bad = [*good, {"handle": "b", "title": "B", "price": 5, "variants": []}]  # unknown field: price
    with pytest.raises(InvalidValue, match="import rejected"):
        await kernel.catalog.import_json(json.dumps(bad).encode())
    assert sorted((await kernel.catalog.snapshot()).by_handle) == ["a"]
    again = await kernel.catalog.import_json(json.dumps(good).encode())
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)


CSV = """handle,title,brand,sku,variant_title,gtin,price,price_vip,currency,voice_name,voice_synonyms
latte,Caffe Latte,Riverside,LATTE-R,Regular,4006381333931,4.50,3.80,EUR,latte,cafe latte|milk coffee
latte,Caffe Latte,Riverside,LATTE-L,Large,,5.20,4.40,EUR,latte,
beans,Beans,Riverside,BEANS-1,,,12.90,,EUR,,
"""


async def test_csv_import_groups_variants_and_reads_tier_prices(kernel: Kernel) -> None:
    result = await kernel.catalog.import_csv(CSV)
    assert (result.created, result.errors) == (2, ())
    latte = (await kernel.catalog.snapshot()).by_handle["latte"]
    assert [v.sku for v in latte.variants] == ["LATTE-R", "LATTE-L"]
    assert latte.variants[0].price_for("EUR", "vip").amount == 380  # type: ignore[union-attr]
    assert latte.channel_content.voice.synonyms == ("cafe latte", "milk coffee")  # type: ignore[union-attr]


async def test_csv_errors_name_the_row_and_change_nothing(kernel: Kernel) -> None:
    bad = CSV.replace("5.20", "5.2x").replace("4006381333931", "4006381333932")
    result = await kernel.catalog.import_csv(bad)
    assert result.created == 0
    assert sorted(e.row for e in result.errors) == [2, 3]
    assert (await kernel.catalog.snapshot()).products == []
    with pytest.raises(InvalidValue, match="lacks column"):
        await kernel.catalog.import_csv("handle,title\nx,y\n")


async def test_catalog_changes_are_events(kernel: Kernel) -> None:
    from omniretail.storage.outbox import OutboxStore

    await kernel.catalog.create(draft("EVT-1"))
    batch = await OutboxStore(kernel.db).claim("t", kernel.clock(), limit=10, lease_seconds=5)
    assert [type(e) for _, _, e in batch] == [ProductChanged]
