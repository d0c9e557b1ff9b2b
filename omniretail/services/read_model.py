"""The catalog read model: the active catalog at one revision, in memory, compactly.

A decoded :class:`Product` costs about 4 KB of Python objects, so 100,000 of them would cost
400 MB in every gateway and worker process. Here products are kept encoded (msgpack) in blocks
of :data:`BLOCK` consecutive products, each block zlib-compressed, and decoded on access; the
most recently used blocks stay decoded (:data:`CACHED_BLOCKS`). What lookups and listings need
without decoding is kept apart: the sorted ids, handle and SKU indexes (pointing at ids, so the
id strings are shared), and each product's title, brand and category for the listing filters.
About 0.5 KB per product in all.

A snapshot is immutable: a catalog change makes a new one (:meth:`CatalogSnapshot.patched`),
which re-encodes only the blocks the change touches and shares the others.
"""

from __future__ import annotations

import bisect
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

import msgspec

from omniretail.domain.catalog import Product, ProductStatus, Variant

#: Products per compressed block: a miss decodes one block (~0.1 ms).
BLOCK = 16
#: Decoded blocks kept per snapshot (BLOCK * CACHED_BLOCKS products, about 4 KB each).
CACHED_BLOCKS = 32

_encoder = msgspec.msgpack.Encoder()
_block_decoder = msgspec.msgpack.Decoder(list[Product])


_raw_list = msgspec.msgpack.Decoder(list[msgspec.Raw])
_product_decoder = msgspec.msgpack.Decoder(Product)

# A block is a zlib-compressed msgpack array whose items are each product's own msgpack bytes:
# splitting a block into those (``_raws``) costs microseconds, so a change re-packs its block and
# a lookup decodes its one product without decoding the other fifteen.


def _pack_raw(items: Sequence[bytes | msgspec.Raw]) -> bytes:
    return zlib.compress(_encoder.encode([msgspec.Raw(x) if isinstance(x, bytes) else x for x in items]), 1)


def _pack(products: Sequence[Product]) -> bytes:
    return _pack_raw([_encoder.encode(p) for p in products])


def _raws(block: bytes) -> list[msgspec.Raw]:
    raws: list[msgspec.Raw] = _raw_list.decode(zlib.decompress(block))
    return raws


def _decode(raw: msgspec.Raw | bytes) -> Product:
    product: Product = _product_decoder.decode(raw)
    return product


def _unpack(block: bytes) -> list[Product]:
    return [_decode(raw) for raw in _raws(block)]


class CatalogSnapshot:
    """The active catalog at one revision: what catalog reads, carts and publishing use.

    ``products`` (a sequence, by id), ``by_id``, ``by_handle`` and ``by_sku`` (mappings) read
    like plain collections; products are decoded as they are reached."""

    revision: int
    _ids: list[str]
    _titles: _Titles
    _brands: list[str | None]
    _categories: list[str | None]
    _blocks: list[bytes]
    _block_starts: list[int]
    _handles: _SortedIndex
    _skus: _SortedIndex
    _cache: OrderedDict[int, list[Product]]

    def __init__(self, revision: int, products: Iterable[Product]) -> None:
        builder = SnapshotBuilder()
        builder.add(sorted(products, key=lambda p: p.id))
        builder.fill(self, revision)

    # -- access ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def _block_of(self, index: int) -> int:
        return bisect.bisect_right(self._block_starts, index) - 1

    def _decoded(self, block_no: int) -> list[Product]:
        hit = self._cache.get(block_no)
        if hit is not None:
            self._cache.move_to_end(block_no)
            return hit
        products = _unpack(self._blocks[block_no])
        self._cache[block_no] = products
        if len(self._cache) > CACHED_BLOCKS:
            self._cache.popitem(last=False)
        return products

    def product_at(self, index: int) -> Product:
        if not 0 <= index < len(self._ids):
            raise IndexError(index)
        block_no = self._block_of(index)
        return self._decoded(block_no)[index - self._block_starts[block_no]]

    def position(self, product_id: str) -> int | None:
        i = bisect.bisect_left(self._ids, product_id)
        return i if i < len(self._ids) and self._ids[i] == product_id else None

    def iterate(self, start: int = 0) -> Iterator[Product]:
        """Every product from ``start`` on, in id order; blocks decoded once, not cached (a
        full scan does not evict what requests are using)."""
        if start >= len(self._ids):
            return
        first = self._block_of(start)
        for block_no in range(first, len(self._blocks)):
            cached = self._cache.get(block_no)
            products = cached if cached is not None else _unpack(self._blocks[block_no])
            offset = start - self._block_starts[block_no] if block_no == first else 0
            yield from products[offset:]

    def products_with_ids(self, ids: Iterable[str]) -> list[Product]:
        """The products of these ids that are in the snapshot, in id order; each block decoded
        once (and not cached: a batch does not evict what requests are using)."""
        positions = sorted({pos for pid in ids if (pos := self.position(pid)) is not None})
        found: list[Product] = []
        block_no = -1
        cached: list[Product] | None = None
        raws: list[msgspec.Raw] = []
        for pos in positions:
            wanted = self._block_of(pos)
            if wanted != block_no:
                block_no = wanted
                cached = self._cache.get(block_no)
                raws = [] if cached is not None else _raws(self._blocks[block_no])
            offset = pos - self._block_starts[block_no]
            found.append(cached[offset] if cached is not None else _decode(raws[offset]))
        return found

    @property
    def products(self) -> _Products:
        return _Products(self)

    @property
    def by_id(self) -> _ById:
        return _ById(self)

    @property
    def by_handle(self) -> _ByKey:
        return _ByKey(self, self._handles)

    @property
    def by_sku(self) -> _BySku:
        return _BySku(self)

    def index_after(self, product_id: str | None) -> int:
        return 0 if not product_id else bisect.bisect_right(self._ids, product_id)

    def page(
        self,
        after: str | None,
        limit: int,
        *,
        brand: str | None = None,
        category: str | None = None,
        needle: str | None = None,
    ) -> tuple[list[Product], bool]:
        """Up to ``limit`` products after the id ``after`` that match the filters (a title
        containing ``needle``, lowercase), and whether there are more. Only matches are decoded."""
        found: list[int] = []
        start = self.index_after(after)
        total = len(self._ids)
        candidates: Iterable[int] = range(start, total) if needle is None else self._titles.matches(needle, start)
        for index in candidates:
            if len(found) > limit:
                break
            if (brand is None or self._brands[index] == brand) and (
                category is None or self._categories[index] == category
            ):
                found.append(index)
        more = len(found) > limit
        return [self.product_at(i) for i in found[:limit]], more

    # -- change ---------------------------------------------------------------------------------

    def patched(self, revision: int, changed: Sequence[Product]) -> CatalogSnapshot:
        """A new snapshot at ``revision``: this one with ``changed`` products replaced (those no
        longer active dropped, new ones added). Untouched blocks are shared, not re-encoded."""
        new = object.__new__(CatalogSnapshot)
        new.revision = revision
        new._cache = OrderedDict()
        replaced = {p.id: p for p in changed}
        if not replaced:
            new._ids, new._titles = self._ids, self._titles
            new._brands, new._categories = self._brands, self._categories
            new._blocks, new._block_starts = self._blocks, self._block_starts
            new._handles, new._skus = self._handles, self._skus
            return new
        # Which blocks a change touches: those holding a changed id now, and those a new id
        # would fall into (ids sort by creation, so new products land in the last block).
        touched: set[int] = set()
        added: list[Product] = []
        for pid, product in replaced.items():
            pos = self.position(pid)
            if pos is not None:
                touched.add(self._block_of(pos))
            elif product.status is ProductStatus.ACTIVE:
                added.append(product)
        added.sort(key=lambda p: p.id)
        if self._blocks:
            for product in added:
                at = min(bisect.bisect_left(self._ids, product.id), len(self._ids) - 1)
                touched.add(self._block_of(at))
        gone = {pid for pid in replaced if self.position(pid) is not None}  # their index entries go
        blocks: list[bytes] = []
        # Per new block: None (an old block, shared) or its entries: (id, old position or None,
        # the new product or None).
        rows: list[list[tuple[str, int | None, Product | None]] | None] = []
        pending = list(added)
        last_touched = max(touched) if touched else -1
        for block_no, block in enumerate(self._blocks):
            if block_no not in touched:
                blocks.append(block)
                rows.append(None)
                continue
            lo = self._block_starts[block_no]
            entries: list[tuple[str, int | None, Product | None]] = []
            payload: dict[str, msgspec.Raw | bytes] = {}
            for offset, raw in enumerate(_raws(block)):
                pid = self._ids[lo + offset]
                current = replaced.get(pid)
                if current is None:
                    entries.append((pid, lo + offset, None))
                    payload[pid] = raw
                elif current.status is ProductStatus.ACTIVE:
                    entries.append((pid, None, current))
                    payload[pid] = _encoder.encode(current)
            # New products sorting inside or before the next block join this one (the last
            # touched block takes whatever sorts after everything).
            upper = self._ids[self._block_starts[block_no + 1]] if block_no + 1 < len(self._blocks) else None
            keep: list[Product] = []
            for product in pending:
                if block_no == last_touched or (upper is not None and product.id < upper):
                    entries.append((product.id, None, product))
                    payload[product.id] = _encoder.encode(product)
                else:
                    keep.append(product)
            pending = keep
            entries.sort(key=lambda e: e[0])
            for start in range(0, len(entries), BLOCK):
                part = entries[start : start + BLOCK]
                blocks.append(_pack_raw([payload[e[0]] for e in part]))
                rows.append(part)
        for start in range(0, len(pending), BLOCK):  # the snapshot was empty
            part_products = pending[start : start + BLOCK]
            blocks.append(_pack(part_products))
            rows.append([(p.id, None, p) for p in part_products])
        # Rebuild the per-position columns: shared blocks copy theirs, re-packed ones per entry.
        new._block_starts = []
        new._ids, new._brands, new._categories = [], [], []
        titles = _TitlesBuilder()
        handle_pairs: list[tuple[str, str]] = []
        sku_pairs: list[tuple[str, str]] = []
        old_positions = {id(block): no for no, block in enumerate(self._blocks)}
        for block_no, row in enumerate(rows):
            new._block_starts.append(len(new._ids))
            if row is None:
                old_no = old_positions[id(blocks[block_no])]
                lo = self._block_starts[old_no]
                hi = self._block_starts[old_no + 1] if old_no + 1 < len(self._block_starts) else len(self._ids)
                new._ids.extend(self._ids[lo:hi])
                titles.add_range(self._titles, lo, hi)
                new._brands.extend(self._brands[lo:hi])
                new._categories.extend(self._categories[lo:hi])
                continue
            for pid, old_pos, fresh in row:
                new._ids.append(pid)
                if fresh is None:
                    assert old_pos is not None
                    titles.add(self._titles.at(old_pos))
                    new._brands.append(self._brands[old_pos])
                    new._categories.append(self._categories[old_pos])
                else:
                    titles.add(fresh.title)
                    new._brands.append(_intern(fresh.brand))
                    new._categories.append(_intern(fresh.category))
                    handle_pairs.append((fresh.handle, fresh.id))
                    sku_pairs.extend((variant.sku, fresh.id) for variant in fresh.variants)
        new._blocks = blocks
        new._titles = titles.finish()
        new._handles = self._handles.rebuilt(gone, handle_pairs)
        new._skus = self._skus.rebuilt(gone, sku_pairs)
        return new


class SnapshotBuilder:
    """Builds a snapshot from products given in id order, a chunk at a time, so that loading a
    large catalog never holds more than a chunk decoded (a peak of decoded products would stay
    in the process's memory long after they are freed)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.titles = _TitlesBuilder()
        self.brands: list[str | None] = []
        self.categories: list[str | None] = []
        self.blocks: list[bytes] = []
        self.block_starts: list[int] = []
        self.handles: dict[str, str] = {}
        self.skus: dict[str, str] = {}
        self._pending: list[Product] = []

    def add(self, products: Iterable[Product]) -> None:
        for product in products:
            if self.ids and product.id <= self.ids[-1]:
                raise ValueError("products must come in increasing id order")
            pid = product.id
            self.ids.append(pid)
            self.titles.add(product.title)
            self.brands.append(_intern(product.brand))
            self.categories.append(_intern(product.category))
            self.handles[product.handle] = pid
            for variant in product.variants:
                self.skus[variant.sku] = pid
            self._pending.append(product)
            if len(self._pending) == BLOCK:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.block_starts.append(len(self.ids) - len(self._pending))
            self.blocks.append(_pack(self._pending))
            self._pending = []

    def fill(self, snapshot: CatalogSnapshot, revision: int) -> None:
        self._flush()
        snapshot.revision = revision
        snapshot._ids, snapshot._titles = self.ids, self.titles.finish()
        snapshot._brands, snapshot._categories = self.brands, self.categories
        snapshot._blocks, snapshot._block_starts = self.blocks, self.block_starts
        snapshot._handles, snapshot._skus = _SortedIndex(self.handles), _SortedIndex(self.skus)
        snapshot._cache = OrderedDict()

    def finish(self, revision: int) -> CatalogSnapshot:
        snapshot = object.__new__(CatalogSnapshot)
        self.fill(snapshot, revision)
        return snapshot


class _SortedIndex:
    """A read-only str -> product id map as two parallel sorted lists: a third of a dict's
    memory (no hash table; the ids are the snapshot's own strings)."""

    __slots__ = ("keys", "values")

    def __init__(self, entries: dict[str, str]) -> None:
        # From a dict: its table is one large allocation, freed whole (a list of pairs would
        # leave its many small tuples' memory to the process).
        self.keys: list[str] = sorted(entries)
        self.values: list[str] = [entries[k] for k in self.keys]

    def get(self, key: str) -> str | None:
        i = bisect.bisect_left(self.keys, key)
        return self.values[i] if i < len(self.keys) and self.keys[i] == key else None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def rebuilt(self, dropped_ids: set[str], added: list[tuple[str, str]]) -> _SortedIndex:
        """This index without the entries of ``dropped_ids``, with ``added`` (merged in order:
        a small change costs a pass over the lists, not a sort of them)."""
        if dropped_ids:
            keep = [i for i, v in enumerate(self.values) if v not in dropped_ids]
            keys = [self.keys[i] for i in keep]
            values = [self.values[i] for i in keep]
        else:
            keys, values = self.keys, self.values
        new = object.__new__(_SortedIndex)
        if not added:
            new.keys, new.values = list(keys), list(values)
            return new
        merged_keys: list[str] = []
        merged_values: list[str] = []
        at = 0
        for key, value in sorted(dict(added).items()):
            i = bisect.bisect_left(keys, key, at)
            merged_keys.extend(keys[at:i])
            merged_values.extend(values[at:i])
            if i < len(keys) and keys[i] == key:  # a key moved to another product: the new one wins
                i += 1
            merged_keys.append(key)
            merged_values.append(value)
            at = i
        merged_keys.extend(keys[at:])
        merged_values.extend(values[at:])
        new.keys, new.values = merged_keys, merged_values
        return new


class _Titles:
    """Every product's title, lowercased, in one string (newline-separated) with start offsets:
    a title search is ``str.find`` over it instead of a loop over 100,000 strings."""

    __slots__ = ("offsets", "text")

    def __init__(self, text: str, offsets: array[int]) -> None:
        self.text = text
        self.offsets = offsets

    def at(self, index: int) -> str:
        end = self.offsets[index + 1] - 1 if index + 1 < len(self.offsets) else len(self.text) - 1
        return self.text[self.offsets[index] : end]

    def matches(self, needle: str, start: int) -> Iterator[int]:
        """Positions from ``start`` on whose title contains ``needle``, in order."""
        if "\n" in needle or start >= len(self.offsets):
            return
        if not needle:
            yield from range(start, len(self.offsets))
            return
        pos = self.offsets[start]
        while True:
            found = self.text.find(needle, pos)
            if found < 0:
                return
            index = bisect.bisect_right(self.offsets, found) - 1
            yield index
            pos = self.offsets[index + 1] if index + 1 < len(self.offsets) else len(self.text)


class _TitlesBuilder:
    """Accumulates titles in joined chunks (no list of 100,000 small strings on the way)."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._current: list[str] = []
        self._at = 0
        self.offsets = array("L")

    def add(self, title: str) -> None:
        cleaned = title.lower().replace("\n", " ")
        self.offsets.append(self._at)
        self._at += len(cleaned) + 1
        self._current.append(cleaned)
        if len(self._current) >= 256:
            self._flush_current()

    def add_range(self, titles: _Titles, lo: int, hi: int) -> None:
        """Titles ``lo``..``hi`` (exclusive) of another index, copied as one slice."""
        if hi <= lo:
            return
        self._flush_current()
        start = titles.offsets[lo]
        end = titles.offsets[hi] if hi < len(titles.offsets) else len(titles.text)
        shift = self._at - start
        self.offsets.extend(offset + shift for offset in titles.offsets[lo:hi])
        self._chunks.append(titles.text[start:end])
        self._at += end - start

    def _flush_current(self) -> None:
        if self._current:
            self._chunks.append("\n".join(self._current) + "\n")
            self._current = []

    def finish(self) -> _Titles:
        self._flush_current()
        return _Titles("".join(self._chunks), self.offsets)


_interned: dict[str, str] = {}


def _intern(value: str | None) -> str | None:
    """Brands and categories repeat: keep one string per distinct value."""
    if value is None:
        return None
    return _interned.setdefault(value, value) if len(_interned) < 100_000 else value


class _Products(Sequence[Product]):
    __slots__ = ("_snap",)

    def __init__(self, snap: CatalogSnapshot) -> None:
        self._snap = snap

    def __len__(self) -> int:
        return len(self._snap)

    @overload
    def __getitem__(self, index: int) -> Product: ...
    @overload
    def __getitem__(self, index: slice) -> list[Product]: ...
    def __getitem__(self, index: int | slice) -> Product | list[Product]:
        if isinstance(index, slice):
            return [self._snap.product_at(i) for i in range(*index.indices(len(self._snap)))]
        return self._snap.product_at(index if index >= 0 else len(self._snap) + index)

    def __iter__(self) -> Iterator[Product]:
        return self._snap.iterate()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Products | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} products at catalog revision {self._snap.revision}>"


class _ById(Mapping[str, Product]):
    __slots__ = ("_snap",)

    def __init__(self, snap: CatalogSnapshot) -> None:
        self._snap = snap

    def __getitem__(self, product_id: str) -> Product:
        pos = self._snap.position(product_id)
        if pos is None:
            raise KeyError(product_id)
        return self._snap.product_at(pos)

    def __contains__(self, product_id: object) -> bool:
        return isinstance(product_id, str) and self._snap.position(product_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._snap._ids)

    def __len__(self) -> int:
        return len(self._snap)


class _ByKey(Mapping[str, Product]):
    __slots__ = ("_index", "_snap")

    def __init__(self, snap: CatalogSnapshot, index: _SortedIndex) -> None:
        self._snap = snap
        self._index = index

    def __getitem__(self, key: str) -> Product:
        pid = self._index.get(key)
        if pid is None:
            raise KeyError(key)
        return self._snap.by_id[pid]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class _BySku(Mapping[str, tuple[Product, Variant]]):
    __slots__ = ("_snap",)

    def __init__(self, snap: CatalogSnapshot) -> None:
        self._snap = snap

    def __getitem__(self, sku: str) -> tuple[Product, Variant]:
        pid = self._snap._skus.get(sku)
        if pid is None:
            raise KeyError(sku)
        product = self._snap.by_id[pid]
        variant = product.variant(sku)
        if variant is None:  # pragma: no cover - the index is built from the variants
            raise KeyError(sku)
        return product, variant

    def __contains__(self, sku: object) -> bool:
        return sku in self._snap._skus

    def __iter__(self) -> Iterator[str]:
        return iter(self._snap._skus)

    def __len__(self) -> int:
        return len(self._snap._skus)
