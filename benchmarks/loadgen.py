"""Fixed-request HTTP load on loopback: wrk when it is installed, else the asyncio client.

Both are closed-loop: N keep-alive connections, each sending its next request when the last
answer arrived, for a fixed time. The result names the generator, since figures from the two
are not comparable with each other (ratios within one run are).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.client import LOOPBACK, build_request, closed_loop, status_unit

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def find_wrk() -> str | None:
    path = Path("/usr/bin/wrk")
    if path.exists():
        return str(path)
    return shutil.which("wrk")


@dataclass
class Throughput:
    generator: str
    requests: int
    seconds: float
    rps: float
    non_2xx: int = 0
    socket_errors: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, object]:
        return {
            "generator": self.generator,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "latency_ms": self.latency_ms,
        }


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(output: str) -> Throughput:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    if not rps or not total:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    seconds = float(total.group(2)) * _UNITS[total.group(3)] / 1000
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    latency = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        if m:
            latency[f"p{pct}"] = round(_ms(m.group(1)), 3)
    return Throughput(
        generator="wrk",
        requests=int(total.group(1)),
        seconds=seconds,
        rps=float(rps.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        latency_ms=latency,
    )


def run_wrk(
    wrk: str, port: int, path: str, headers: dict[str, str], *, connections: int, seconds: float, threads: int
) -> Throughput:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://{LOOPBACK}:{port}{path}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def run_python(port: int, path: str, headers: dict[str, str], *, connections: int, seconds: float) -> Throughput:
    raw = build_request("GET", path, port, headers)
    statuses: Counter[str] = Counter()
    result = asyncio.run(
        closed_loop(
            port,
            status_unit(raw, statuses),
            concurrency=connections,
            duration=seconds,
            max_units=int(seconds * 200_000),
        )
    )
    summary = result.summary()
    transport_errors = sum(n for label, n in result.errors.items() if not label.startswith("status"))
    return Throughput(
        generator="python-asyncio",
        requests=result.ok + result.failed,
        seconds=result.elapsed,
        rps=(result.ok + result.failed) / result.elapsed if result.elapsed else 0.0,
        non_2xx=sum(n for s, n in statuses.items() if not s.startswith("2")),
        socket_errors=transport_errors,
        latency_ms={k: float(summary[f"{k}_ms"]) for k in ("p50", "p90", "p99")},  # type: ignore[arg-type]
    )


def load(
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    use_wrk: bool = True,
    wrk_threads: int = 1,
) -> Throughput:
    """GET ``path`` on ``127.0.0.1:port`` for ``seconds`` over ``connections`` connections."""
    wrk = find_wrk() if use_wrk else None
    if wrk:
        return run_wrk(wrk, port, path, headers, connections=connections, seconds=seconds, threads=wrk_threads)
    return run_python(port, path, headers, connections=connections, seconds=seconds)
