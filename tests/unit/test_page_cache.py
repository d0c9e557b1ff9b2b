"""The catalog page cache builds a page once however many requests miss it at the same time."""

from __future__ import annotations

import asyncio

import pytest

from omniretail.gateway.routes.common import PageCache


async def test_concurrent_misses_build_once() -> None:
    cache = PageCache()
    builds = 0
    gate = asyncio.Event()

    async def build() -> dict[str, int]:
        nonlocal builds
        builds += 1
        await gate.wait()
        return {"page": 1}

    tasks = [asyncio.create_task(cache.get_or_build("k", build)) for _ in range(32)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert builds == 1
    assert len({r for r in results}) == 1 and results[0][0] == b'{"page":1}'
    # Cached now: no further build for the same key; a different key builds its own page.
    await cache.get_or_build("k", build)
    assert builds == 1
    await cache.get_or_build("other", build)
    assert builds == 2


async def test_a_failed_build_fails_its_caller_and_the_waiters_build_for_themselves() -> None:
    cache = PageCache()
    calls = 0
    gate = asyncio.Event()

    async def build() -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
            raise ValueError("stock query failed")
        return [calls]

    first = asyncio.create_task(cache.get_or_build("k", build))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(cache.get_or_build("k", build)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(ValueError, match="stock query failed"):
        await first
    answers = await asyncio.gather(*waiters)
    assert all(body.startswith(b"[") for body, _etag in answers)
    assert calls == 4  # the failed build, then one per waiter (nothing cached a failure)


async def test_expired_pages_are_rebuilt() -> None:
    cache = PageCache(ttl=0.0)
    builds = 0

    async def build() -> int:
        nonlocal builds
        builds += 1
        return builds

    await cache.get_or_build("k", build)
    await cache.get_or_build("k", build)
    assert builds == 2
