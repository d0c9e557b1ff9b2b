"""The publication pipeline: render what changed, record everything, withdraw what left."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from omniretail import hookimpl
from omniretail.channel import ChannelContext, ChannelSpec, RegisterChannel
from omniretail.domain.catalog import Product
from omniretail.domain.errors import InvalidValue
from omniretail.kernel import Kernel
from omniretail.publishing import Publisher
from omniretail.services.clock import FakeClock
from omniretail.storage.publications import PublicationStore
from tests.conftest import store_config
from tests.integration.helpers import draft


class Probe:
    """A channel that counts its renders, rejects products without a brand, and can fail."""

    def __init__(self) -> None:
        self.rendered: list[str] = []
        self.flaky: dict[str, int] = {}

    @hookimpl
    def register_channels(self, register: RegisterChannel) -> None:
        register(ChannelSpec(name="probe", title="Probe"))

    @hookimpl
    def render_listing(self, channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
        self.rendered.append(product.handle)
        if self.flaky.get(product.handle, 0) > 0:
            self.flaky[product.handle] -= 1
            raise ConnectionError("renderer hiccup")
        if not product.brand:
            raise InvalidValue("a listing needs a brand", field="brand")
        price = product.variants[0].prices[0].amount
        return {"id": product.id, "title": product.title, "price": price, "stock": dict(stock)}


@pytest.fixture
async def probe(db_url: str, tmp_path: Path, clock: FakeClock) -> Any:
    plugin = Probe()
    config = store_config(db_url)
    config["channels"] = {"probe": {"locations": ["wh"]}}
    kernel = Kernel.from_config(config, plugins=[plugin], entry_points=False, base_dir=str(tmp_path), clock=clock)
    async with kernel:
        for i in range(5):
            await kernel.catalog.create(draft(f"P-{i}", brand="Acme"))
        await kernel.catalog.create(draft("NOBRAND"))
        yield kernel, plugin


async def test_first_publish_renders_all_and_records_rejections(probe: Any) -> None:
    kernel, _ = probe
    run = await Publisher(kernel).publish("probe")
    assert (run.total, run.rendered, run.created, run.rejected, run.failed) == (6, 6, 5, 1, 0)
    store = PublicationStore(kernel.db)
    rejected = await store.records("probe", status="rejected")
    assert len(rejected) == 1 and rejected[0].reason == "brand: a listing needs a brand"
    listings = [msgspec.json.decode(c) async for c in store.listings("probe")]
    assert sorted(x["title"] for x in listings) == [f"Item P-{i}" for i in range(5)]


async def test_republish_renders_only_what_changed(probe: Any) -> None:
    kernel, plugin = probe
    publisher = Publisher(kernel)
    await publisher.publish("probe")
    plugin.rendered.clear()
    again = await publisher.publish("probe")
    # Incremental: nothing changed since the first run, so nothing is even looked at.
    assert (again.mode, again.total, again.rendered, again.created, again.updated) == ("incremental", 0, 0, 0, 0)
    assert plugin.rendered == []
    # A full run looks at every product and still renders none (their input hashes held).
    forced = await publisher.publish("probe", full=True)
    assert (forced.mode, forced.total, forced.rendered, forced.unchanged) == ("full", 6, 0, 6)
    # One product edited, another's stock moved: only those two render; only they are logged.
    p1 = (await kernel.catalog.snapshot()).by_handle["p-1"]
    await kernel.catalog.update(p1.id, draft("P-1", price=1500, brand="Acme"))
    await kernel.inventory.adjust("P-3", "wh", 7)
    third = await publisher.publish("probe")
    assert sorted(plugin.rendered) == ["p-1", "p-3"]
    assert (third.mode, third.total, third.rendered, third.updated, third.unchanged) == ("incremental", 2, 2, 2, 0)
    history = await PublicationStore(kernel.db).history(channel="probe", run_id=third.id)
    assert sorted((h.action, h.product_id) for h in history) == sorted(
        [("updated", p1.id), ("updated", (await kernel.catalog.snapshot()).by_handle["p-3"].id)]
    )
    # Stock at a location the channel does not sell from changes nothing.
    plugin.rendered.clear()
    await kernel.inventory.adjust("P-2", "store-a", 5)
    assert (await publisher.publish("probe")).rendered == 0


async def test_a_new_revision_with_identical_listing_bytes_is_not_a_change(probe: Any) -> None:
    kernel, plugin = probe
    publisher = Publisher(kernel)
    await publisher.publish("probe")
    p2 = (await kernel.catalog.snapshot()).by_handle["p-2"]
    await kernel.catalog.update(p2.id, draft("P-2", brand="Acme", description="only the description changed"))
    plugin.rendered.clear()
    run = await publisher.publish("probe")
    assert plugin.rendered == ["p-2"]  # its inputs moved, so it was rendered...
    assert (run.rendered, run.updated, run.unchanged) == (1, 0, 1)  # ...but the probe's listing is the same
    assert await PublicationStore(kernel.db).history(channel="probe", run_id=run.id) == []


async def test_archived_products_are_withdrawn_once(probe: Any) -> None:
    kernel, _ = probe
    publisher = Publisher(kernel)
    await publisher.publish("probe")
    p0 = (await kernel.catalog.snapshot()).by_handle["p-0"]
    await kernel.catalog.set_status(p0.id, "archived")
    run = await publisher.publish("probe")
    assert run.withdrawn == 1
    record = await PublicationStore(kernel.db).record("probe", p0.id)
    assert record is not None and record.status == "withdrawn"
    assert len([c async for c in PublicationStore(kernel.db).listings("probe")]) == 4
    assert (await publisher.publish("probe")).withdrawn == 0


async def test_transient_failures_are_retried_then_recorded(probe: Any) -> None:
    kernel, plugin = probe
    plugin.flaky = {"p-2": 2, "p-4": 99}
    run = await Publisher(kernel).publish("probe")
    assert run.failed == 1 and run.created == 4  # p-2 succeeded on its third try
    failed = await PublicationStore(kernel.db).records("probe", status="failed")
    assert [f.reason for f in failed] == ["ConnectionError: renderer hiccup"]
    plugin.flaky = {}
    retry = await Publisher(kernel).publish("probe")
    assert (retry.rendered, retry.created, retry.failed) == (1, 1, 0)


async def test_incremental_runs_see_lapsed_holds_and_late_commits(probe: Any, clock: FakeClock) -> None:
    """Stock moves without a catalog change: a hold that lapses (no write at all), and a change
    stamped just before the previous run's mark but committed after it read stock."""
    from sqlalchemy import update

    from omniretail.storage import tables as t

    kernel, plugin = probe
    publisher = Publisher(kernel)
    await kernel.inventory.adjust("P-1", "wh", 10)
    await kernel.inventory.adjust("P-3", "wh", 1)
    await kernel.inventory.reserve("P-1", "wh", 4, reference="test-hold", minutes=15)
    first = await publisher.publish("probe")
    p1 = (await kernel.catalog.snapshot()).by_handle["p-1"]
    record = await PublicationStore(kernel.db).record("probe", p1.id)
    assert record is not None and msgspec.json.decode(record.content or b"")["stock"] == {"P-1": 6}
    # The hold lapses: no row changes, yet the next incremental run picks P-1 up.
    clock.advance(minutes=16)
    plugin.rendered.clear()
    lapsed = await publisher.publish("probe")
    assert (lapsed.mode, plugin.rendered) == ("incremental", ["p-1"])
    record = await PublicationStore(kernel.db).record("probe", p1.id)
    assert record is not None and msgspec.json.decode(record.content or b"")["stock"] == {"P-1": 10}
    # A write stamped 5 s before the last run's mark (in flight while that run read stock).
    async with kernel.db.read() as conn:
        mark = await conn.scalar(select(t.publication_runs.c.stock_mark_us).where(t.publication_runs.c.id == lapsed.id))
    assert mark is not None and first.id != lapsed.id
    async with kernel.db.write() as conn:
        await conn.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == "P-3", t.stock_levels.c.location_id == "wh")
            .values(on_hand=t.stock_levels.c.on_hand + 2, changed_us=mark - 5_000_000)
        )
    plugin.rendered.clear()
    late = await publisher.publish("probe")
    assert plugin.rendered == ["p-3"] and late.updated == 1


#: A publication run row's counts, all zero (runs inserted by hand below).
NO_COUNTS = dict.fromkeys(
    ("total", "rendered", "unchanged", "created", "updated", "rejected", "withdrawn", "failed"), 0
)


async def test_a_slow_run_that_overlapped_is_looked_at_again(probe: Any, clock: FakeClock) -> None:
    """Run A starts, P changes, run B publishes P as changed and finishes, then A (slow) finishes
    and writes P as it saw it. The next incremental run must look at P again."""
    from datetime import timedelta

    from sqlalchemy import insert, update

    from omniretail.storage import tables as t

    kernel, plugin = probe
    publisher = Publisher(kernel)
    await publisher.publish("probe")
    store = PublicationStore(kernel.db)
    p1 = (await kernel.catalog.snapshot()).by_handle["p-1"]
    stale = await store.record("probe", p1.id)  # what a run started now would write for P-1
    first = (await store.runs(channel="probe"))[0]
    async with kernel.db.read() as conn:
        marks = (
            await conn.execute(
                select(
                    t.publication_runs.c.catalog_revision,
                    t.publication_runs.c.stock_mark_us,
                    t.publication_runs.c.settings_hash,
                ).where(t.publication_runs.c.id == first.id)
            )
        ).one()
    a_started = clock()
    clock.advance(seconds=1)
    await kernel.catalog.update(p1.id, draft("P-1", price=2500, brand="Acme"))
    b = await publisher.publish("probe")  # B renders the new P-1
    assert b.updated == 1
    clock.advance(seconds=1)
    # A finishes now, having written P-1 as of its start.
    assert stale is not None
    async with kernel.db.write() as conn:
        await conn.execute(
            insert(t.publication_runs).values(
                id="run_slow_a",
                channel="probe",
                status="done",
                trigger="test",
                started_at=a_started,
                finished_at=clock(),
                catalog_revision=marks.catalog_revision,
                stock_mark_us=marks.stock_mark_us,
                settings_hash=marks.settings_hash,
                **NO_COUNTS,
            )
        )
        await conn.execute(
            update(t.publications)
            .where(t.publications.c.channel == "probe", t.publications.c.product_id == p1.id)
            .values(input_hash=stale.input_hash, content_hash=stale.content_hash, content=stale.content)
        )
    plugin.rendered.clear()
    clock.advance(seconds=1)
    again = await publisher.publish("probe")
    assert "p-1" in plugin.rendered and again.updated == 1  # A's overwrite is repaired
    record = await store.record("probe", p1.id)
    assert record is not None and msgspec.json.decode(record.content or b"")["price"] == 2500
    # The run after that starts from the repair run's own marks again.
    assert (await publisher.publish("probe")).total == 0
    # A run still marked running pulls the marks back while it may be alive, not when dead.
    last = (await store.runs(channel="probe"))[0]
    for run_id, started in (("run_alive", last.started_at - timedelta(minutes=5)), ("run_dead", None)):
        async with kernel.db.write() as conn:
            await conn.execute(
                insert(t.publication_runs).values(
                    id=run_id,
                    channel="probe",
                    status="running",
                    trigger="test",
                    started_at=started or last.started_at - timedelta(hours=2),
                    catalog_revision=0 if run_id == "run_dead" else 1,
                    stock_mark_us=1,
                    settings_hash="x",
                    **NO_COUNTS,
                )
            )
    mark = await store.watermark("probe")
    assert mark is not None and mark.run_id == last.id and mark.catalog_revision == 1  # alive: yes; dead: no


async def test_changed_channel_settings_make_a_full_run(probe: Any) -> None:
    kernel, plugin = probe
    publisher = Publisher(kernel)
    await publisher.publish("probe")
    assert (await publisher.publish("probe")).mode == "incremental"
    kernel.channels["probe"].locations = ("wh", "store-a")
    plugin.rendered.clear()
    run = await publisher.publish("probe")
    assert (run.mode, run.total, run.rendered) == ("full", 6, 6)  # the stock it sells from changed


async def test_unknown_channel_is_named(probe: Any) -> None:
    from omniretail.domain.errors import NotFound

    with pytest.raises(NotFound, match="nosuch"):
        Publisher(probe[0]).channels("nosuch")


async def test_publish_job_through_the_api_and_the_worker(api: Any) -> None:
    from omniretail.background import JobRunner

    admin = api.h("admin")
    r = await api.client.post("/v1/admin/publications", json={"channel": "webshop"}, headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job_id = r.json()["id"]
    assert (await JobRunner(api.kernel).run_once()) is not None
    job = (await api.client.get(f"/v1/admin/jobs/{job_id}", headers=admin)).json()
    assert job["status"] == "done", job
    run_id = job["result"]["runs"][0]
    run = (await api.client.get(f"/v1/admin/publications/runs/{run_id}", headers=admin)).json()
    assert run["channel"] == "webshop" and run["created"] == 6
    records = (await api.client.get("/v1/admin/publications/webshop", headers=admin)).json()["items"]
    assert len(records) == 6 and {r["status"] for r in records} == {"published"}
    one = (await api.client.get(f"/v1/admin/publications/webshop/{records[0]['product_id']}", headers=admin)).json()
    assert one["listing"][0]["price"].endswith(" EUR")
    history = (await api.client.get("/v1/admin/publications/history", params={"run_id": run_id}, headers=admin)).json()[
        "items"
    ]
    assert len(history) == 6
    bad = await api.client.post("/v1/admin/publications", json={"channel": "nosuch"}, headers=admin)
    assert bad.status_code == 404
    assert (await api.client.post("/v1/admin/publications", headers=api.h("webshop"))).status_code == 403
