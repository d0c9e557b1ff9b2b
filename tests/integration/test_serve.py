"""The gateway as people run it: `omniretail serve` in its own process, on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def omni(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omniretail", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
async def served(tmp_path: Path, db_url: str, backend: str) -> AsyncIterator[tuple[str, str]]:
    extra = ["--database-url", db_url] if backend == "postgres" else []
    init = omni("init", *extra, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    created = omni("keys", "create", "--channel", "webshop", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("omr_") and " " not in key
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniretail", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "gateway did not come up in 30 s"
            time.sleep(0.1)
        yield base, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


async def test_a_served_gateway_takes_an_order(served: tuple[str, str]) -> None:
    base, key = served
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=auth, timeout=10) as client:
        assert client.get("/v1/products", headers={"Authorization": ""}).status_code == 401
        products = client.get("/v1/products", params={"limit": 20}).json()["items"]
        assert len(products) == 6
        cart = client.post("/v1/carts").json()
        client.post(f"/v1/carts/{cart['id']}/lines", json={"sku": "BEANS-250-WHOLE", "quantity": 2})
        idem = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
        first = client.post(f"/v1/carts/{cart['id']}/checkout", json={"email": "served@example.com"}, headers=idem)
        again = client.post(f"/v1/carts/{cart['id']}/checkout", json={"email": "served@example.com"}, headers=idem)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json() and first.json()["total"] == 2580
        bad = client.post("/v1/carts", json={"currency": "euro"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert client.get("/schema/openapi.json").status_code == 200
