"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation on loopback.

It costs far less CPU per request than httpx, which matters when the load generator and the
server share two cores. It understands exactly what our servers send: a status line, headers,
and a body framed by ``Content-Length`` or ``Transfer-Encoding: chunked``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"


class HttpError(Exception):
    """The connection broke or the server sent something this client does not understand."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def build_request(
    method: str, path: str, port: int, headers: dict[str, str] | None = None, body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


class Connection:
    """One keep-alive connection to ``127.0.0.1:port``; requests go one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self.port, limit=1 << 22)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        return await self.send_raw(build_request(method, path, self.port, headers, body))

    async def send_raw(self, raw: bytes) -> Response:
        if self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        try:
            self._writer.write(raw)
            head = await self._reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                body = await self._reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                body = await self._read_chunked()
            elif status in (204, 304) or status < 200:
                body = b""
            else:
                raise HttpError(f"response {status} without a length")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, body)

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class LoadResult:
    """What a closed-loop run measured. ``ok`` counts units that fully succeeded."""

    ok: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, object]:
        lat = self.latencies_ms
        return {
            "ok": self.ok,
            "failed": self.failed,
            "seconds": round(self.elapsed, 3),
            "p50_ms": round(percentile(lat, 50), 3),
            "p90_ms": round(percentile(lat, 90), 3),
            "p99_ms": round(percentile(lat, 99), 3),
            "mean_ms": round(statistics.fmean(lat), 3) if lat else 0.0,
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
        }


#: One unit of work on a connection: returns a failure label, or None when it fully succeeded.
Unit = Callable[[Connection, int], Awaitable[str | None]]


async def closed_loop(
    port: int,
    unit: Unit,
    *,
    concurrency: int,
    duration: float,
    max_units: int,
    warmup: float = 0.0,
) -> LoadResult:
    """``concurrency`` workers, each on its own keep-alive connection, run ``unit`` back to back
    for ``warmup`` seconds (not counted), then for ``duration`` seconds or until ``max_units``
    units were started, whichever comes first. Every unit is also bounded by a per-unit timeout."""
    result = LoadResult()
    counter = 0
    unit_timeout = max(10.0, duration)

    async def worker(measure_until: float, record: bool) -> None:
        nonlocal counter
        conn = Connection(port)
        try:
            while time.perf_counter() < measure_until and counter < max_units:
                counter += 1
                n = counter
                started = time.perf_counter()
                try:
                    failure = await asyncio.wait_for(unit(conn, n), unit_timeout)
                except (HttpError, TimeoutError) as exc:
                    failure = f"{type(exc).__name__}"
                    await conn.close()
                if not record:
                    continue
                if failure is None:
                    result.ok += 1
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                else:
                    result.failed += 1
                    result.errors[failure] += 1
        finally:
            await conn.close()

    if warmup > 0:
        await asyncio.gather(*(worker(time.perf_counter() + warmup, False) for _ in range(concurrency)))
        counter = 0
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + duration, True) for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - start
    return result


def status_unit(raw: bytes, statuses: Counter[str], expect: int = 200) -> Unit:
    """A unit that sends one prepared request and succeeds on ``expect``."""

    async def unit(conn: Connection, _n: int) -> str | None:
        response = await conn.send_raw(raw)
        statuses[str(response.status)] += 1
        return None if response.status == expect else f"status {response.status}"

    return unit
