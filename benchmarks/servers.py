"""Servers under test, each in its own process on a free 127.0.0.1 port, one at a time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.client import LOOPBACK


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def http_get_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """Blocking GET on loopback; the status code, or None when nothing answers."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                data += chunk
        return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Served:
    """A running server: its port, process and log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ServerError(RuntimeError):
    pass


@contextmanager
def serve(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    cwd: Path,
    log_dir: Path,
    env: dict[str, str] | None = None,
    health_path: str = "/health",
    start_timeout: float = 60.0,
) -> Iterator[Served]:
    """Start ``argv`` (which must bind 127.0.0.1:``port``), wait until ``health_path`` answers 200,
    and stop it (SIGINT, then SIGTERM, then SIGKILL to its own process group) when done."""
    log_path = log_dir / f"{name}-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: the granian workers stop with it
    )
    served = Served(name, port, process, log_path)
    try:
        deadline = time.monotonic() + start_timeout
        while http_get_status(port, health_path) != 200:
            if process.poll() is not None:
                raise ServerError(f"{name} exited with {process.returncode}:\n{served.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerError(f"{name} did not answer {health_path} in {start_timeout:.0f} s:\n{served.log_tail()}")
            time.sleep(0.1)
        yield served
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)  # the group this module created for this process
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def gateway_argv(config: Path, port: int, workers: int = 1) -> list[str]:
    """``omniretail serve`` exactly as people run it (granian, ``workers`` processes)."""
    return [
        sys.executable,
        "-m",
        "omniretail",
        "--config",
        str(config),
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def bare_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bare_app", "--port", str(port)]


# -- memory -------------------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren... (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children", encoding="ascii") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants (granian's worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def memory_of(pid: int) -> dict[str, float]:
    """VmRSS of the process and of each descendant (granian's worker), and PSS of them all, in MB."""
    mb = 1024.0
    out: dict[str, float] = {"main_rss_mb": _status_kb(pid, "VmRSS") / mb}
    kids = descendants(pid)
    worker_rss = [_status_kb(k, "VmRSS") / mb for k in kids]
    out["worker_rss_mb"] = max(worker_rss, default=0.0)
    out["worker_hwm_mb"] = max((_status_kb(k, "VmHWM") / mb for k in kids), default=0.0)
    out["tree_rss_mb"] = out["main_rss_mb"] + sum(worker_rss)
    out["tree_pss_mb"] = (_pss_kb(pid) + sum(_pss_kb(k) for k in kids)) / mb
    out["processes"] = float(1 + len(kids))
    return {k: round(v, 1) for k, v in out.items()}
