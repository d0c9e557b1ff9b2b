"""The publication pipeline: publish the one catalog to every enabled channel.

Rendering a product for a channel is the plugin's job (``render_listing``); the pipeline owns
the rest: deciding what to render, hashing, batching, recording and retrying.

* A product is rendered again only when what its rendering depends on moved: its revision, its
  stock at the channel's locations, or the channel's settings (``input_hash``).
* A rendering counts as a change only when its bytes differ (``content_hash``): only changes are
  recorded in the history and served as new.
* A run is incremental when the channel's last finished run left its marks (catalog revision,
  wall-clock stock mark, settings hash) and the settings are unchanged: it looks only at products
  changed since that revision, products whose stock moved since that mark, and products that
  failed; a 1 % change of a large catalog costs about 1 % of a full run. ``full=True`` (``omniretail
  catalog publish --full``) looks at every product, as the first run does.
* A product no longer active (archived, removed) that was published is withdrawn.
* ``InvalidValue`` from a plugin rejects the product with that reason (e.g. a marketplace
  listing without GTIN or brand); any other exception is retried, then recorded as failed and
  tried again at the next publish.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import msgspec

from omniretail.config import Secret
from omniretail.domain.catalog import Product
from omniretail.domain.errors import InvalidValue, NotFound
from omniretail.domain.ids import new_id
from omniretail.kernel import Kernel
from omniretail.services.catalog import CatalogSnapshot
from omniretail.storage.publications import Current, PublicationStore, RunRecord, Watermark

log = logging.getLogger("omniretail.publishing")

BATCH = 1000
RENDER_ATTEMPTS = 3
#: Stock changes are found by a wall-clock mark taken when the previous run started. A change
#: stamped before that mark but committed after the run read stock (a transaction in flight, or
#: another host's clock running behind) is still found if it is less than this much older.
STOCK_MARK_MARGIN_US = 60_000_000
#: Decoded candidate products a publisher keeps between channels (about 4 KB each).
DECODED_LIMIT = 20_000
_encoder = msgspec.json.Encoder(order="deterministic")

Progress = Callable[[int, int], None]


def _hide_secret(value: Any) -> Any:
    """Secrets never change a rendering (and never reach a hash input)."""
    if isinstance(value, Secret):
        return "***"
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Publisher:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.store = PublicationStore(kernel.db)
        #: Candidate products decoded for one snapshot, shared by the channels' incremental runs.
        self._decoded: tuple[CatalogSnapshot, dict[str, Product]] | None = None

    def channels(self, only: str | None = None) -> list[str]:
        names = sorted(self.kernel.channels)
        if only is None:
            return names
        if only not in self.kernel.channels:
            raise NotFound(f"no enabled channel {only!r} (enabled: {', '.join(names) or 'none'})", field="channel")
        return [only]

    def _settings_hash(self, channel: str) -> bytes:
        ctx = self.kernel.channels[channel]
        store = self.kernel.config.store
        raw = _encoder.encode(
            [
                msgspec.to_builtins(ctx.settings, enc_hook=_hide_secret) if ctx.settings is not None else None,
                list(ctx.locations),
                store.currency,
                store.base_url,
                store.locale,
            ]
        )
        return hashlib.blake2b(raw, digest_size=16).digest()

    async def publish(
        self, channel: str, *, trigger: str = "cli", progress: Progress | None = None, full: bool = False
    ) -> RunRecord:
        """Publish the active catalog to one channel; returns the run's record.

        Incremental when the channel's last finished run left its marks and the channel's
        settings are the same: only products changed since that run's catalog revision, products
        whose stock moved since its stock mark (less :data:`STOCK_MARK_MARGIN_US`), and products
        that failed last time are looked at. Otherwise, or with ``full=True``, every product is.
        Either way a product is rendered again only if its input hash moved."""
        kernel = self.kernel
        ctx = kernel.channels[channel]
        render = kernel.channel_hook(channel, "render_listing")
        run_id = new_id("run")
        started_at = kernel.clock()
        # Taken before anything is read: a change committed from here on is newer than the mark.
        stock_mark_us = time.time_ns() // 1000
        kernel.catalog.invalidate()  # this run's catalog revision is the current one
        snapshot = await kernel.catalog.snapshot()
        salt = self._settings_hash(channel)
        await self.store.start_run(
            run_id, channel, trigger, started_at, marks=(snapshot.revision, stock_mark_us, salt.hex())
        )
        counts = dict.fromkeys(
            ("total", "rendered", "unchanged", "created", "updated", "rejected", "withdrawn", "failed"), 0
        )
        mode = "full"
        try:
            previous = None if full else await self.store.watermark(channel)
            if previous is not None and previous.settings_hash == salt.hex():
                mode = "incremental"
                candidates = await self._changed_since(channel, previous, snapshot)
                products: Sequence[Product] = self._products(snapshot, candidates)
                existing = await self.store.current(channel, candidates)
                stock = await self._stock([v.sku for p in products for v in p.variants], ctx.locations)
            else:
                candidates = None
                products = snapshot.products
                existing = await self.store.current(channel)
                stock = await kernel.inventory.available_everywhere(ctx.locations)
            total = len(products)
            counts["total"] = total
            rows: list[dict[str, Any]] = []
            entries: list[dict[str, Any]] = []
            for index, product in enumerate(products, start=1):
                self._publish_one(
                    run_id, channel, product, stock, existing.get(product.id), salt, render, rows, entries, counts
                )
                if len(rows) >= BATCH:
                    await self.store.write_batch(rows, entries)
                    rows, entries = [], []
                if progress is not None and (index % 500 == 0 or index == total):
                    progress(index, total)
            active = snapshot.by_id
            now = kernel.clock()
            for product_id, current in existing.items():
                if product_id in active or current.status == "withdrawn":
                    continue
                counts["withdrawn"] += 1
                rows.append(
                    self._row(run_id, channel, product_id, "withdrawn", current.input_hash, None, None, None, 0)
                )
                entries.append(self._entry(run_id, channel, product_id, "withdrawn", None, "no longer active", 0))
                if len(rows) >= BATCH:
                    await self.store.write_batch(rows, entries)
                    rows, entries = [], []
            await self.store.write_batch(rows, entries)
            if progress is not None and total == 0:
                progress(0, 0)
            await self.store.finish_run(run_id, counts, now, mode=mode)
        except Exception as exc:
            log.exception("publishing to %s failed", channel)
            await self.store.finish_run(run_id, counts, kernel.clock(), error=repr(exc), mode=mode)
            raise
        run = await self.store.run(run_id)
        assert run is not None
        return run

    async def _changed_since(self, channel: str, previous: Watermark, snapshot: CatalogSnapshot) -> list[str]:
        """Products that may render differently than at the ``previous`` run, by id."""
        kernel = self.kernel
        # Changed after the previous marks and no later than this run's snapshot (a change after it
        # is the next run's: this run's mark is the snapshot's revision).
        ids = set(await kernel.catalog.changed_ids(previous.catalog_revision, upto=snapshot.revision))
        margin = STOCK_MARK_MARGIN_US
        moved = await kernel.inventory.moved_since(
            kernel.channels[channel].locations,
            previous.stock_mark_us - margin,
            previous.started_at - timedelta(microseconds=margin),
        )
        for sku in moved:
            hit = snapshot.by_sku.get(sku)
            if hit is not None:
                ids.add(hit[0].id)
        ids.update(await self.store.product_ids(channel, "failed"))
        return sorted(ids)

    def _products(self, snapshot: CatalogSnapshot, ids: list[str]) -> list[Product]:
        """The snapshot's products of ``ids``, decoded once for all the channels this publisher
        goes through (each channel's candidates are mostly the same changed products)."""
        cached = self._decoded if self._decoded is not None and self._decoded[0] is snapshot else None
        known = cached[1] if cached is not None else {}
        missing = [pid for pid in ids if pid not in known]
        if missing:
            fresh = snapshot.products_with_ids(missing)
            if len(known) + len(fresh) <= DECODED_LIMIT:
                known = {**known, **{p.id: p for p in fresh}}
                self._decoded = (snapshot, known)
            else:
                known = {**{pid: known[pid] for pid in ids if pid in known}, **{p.id: p for p in fresh}}
        return [known[pid] for pid in ids if pid in known]

    async def _stock(self, skus: list[str], locations: tuple[str, ...]) -> dict[str, int]:
        stock: dict[str, int] = {}
        for start in range(0, len(skus), 1000):
            stock.update(await self.kernel.inventory.available(skus[start : start + 1000], locations))
        return stock

    def _publish_one(
        self,
        run_id: str,
        channel: str,
        product: Product,
        stock: Mapping[str, int],
        current: Current | None,
        salt: bytes,
        render: Any,
        rows: list[dict[str, Any]],
        entries: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> None:
        units = {v.sku: max(stock.get(v.sku, 0), 0) for v in product.variants}
        input_hash = _digest(salt + _encoder.encode([product.id, product.revision, units]))
        if current is not None and current.input_hash == input_hash and current.status in ("published", "rejected"):
            counts["unchanged"] += 1
            return
        ctx = self.kernel.channels[channel]
        counts["rendered"] += 1
        error: Exception | None = None
        listing: Any = None
        for _attempt in range(RENDER_ATTEMPTS):
            try:
                listing = render(channel=ctx, product=product, stock=units)
                error = None
                break
            except InvalidValue as exc:
                reason = exc.message if not exc.field else f"{exc.field}: {exc.message}"
                if current is None or current.status != "rejected" or current.reason != reason:
                    counts["rejected"] += 1
                    entries.append(self._entry(run_id, channel, product.id, "rejected", None, reason, product.revision))
                else:
                    counts["unchanged"] += 1
                rows.append(
                    self._row(run_id, channel, product.id, "rejected", input_hash, None, None, reason, product.revision)
                )
                return
            except Exception as exc:  # a plugin bug or a transient failure: retried
                error = exc
        if error is not None:
            counts["failed"] += 1
            reason = f"{type(error).__name__}: {error}"
            rows.append(self._row(run_id, channel, product.id, "failed", "", None, None, reason, product.revision))
            entries.append(self._entry(run_id, channel, product.id, "failed", None, reason, product.revision))
            return
        if listing is None:  # this channel does not list products
            counts["unchanged"] += 1
            return
        content = _encoder.encode(listing)
        content_hash = _digest(content)
        if current is not None and current.status == "published" and current.content_hash == content_hash:
            counts["unchanged"] += 1
            rows.append(
                self._row(
                    run_id, channel, product.id, "published", input_hash, content_hash, content, None, product.revision
                )
            )
            return
        action = "updated" if current is not None and current.status == "published" else "created"
        counts[action] += 1
        rows.append(
            self._row(
                run_id, channel, product.id, "published", input_hash, content_hash, content, None, product.revision
            )
        )
        entries.append(self._entry(run_id, channel, product.id, action, content_hash, None, product.revision))

    def _row(
        self,
        run_id: str,
        channel: str,
        product_id: str,
        status: str,
        input_hash: str,
        content_hash: str | None,
        content: bytes | None,
        reason: str | None,
        revision: int,
    ) -> dict[str, Any]:
        return {
            "channel": channel,
            "product_id": product_id,
            "status": status,
            "input_hash": input_hash,
            "content_hash": content_hash,
            "content": content,
            "reason": reason,
            "product_revision": revision,
            "run_id": run_id,
            "updated_at": self.kernel.clock(),
        }

    def _entry(
        self,
        run_id: str,
        channel: str,
        product_id: str,
        action: str,
        content_hash: str | None,
        reason: str | None,
        revision: int,
    ) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "channel": channel,
            "product_id": product_id,
            "action": action,
            "content_hash": content_hash,
            "reason": reason,
            "product_revision": revision,
            "at": self.kernel.clock(),
        }
