"""The gateway as people run it: `omniretail serve` in its own process, on a loopback port."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.integration.served import init_store, new_key, serve


async def test_a_served_gateway_takes_an_order(tmp_path: Path, db_url: str, backend: str) -> None:
    init_store(tmp_path, db_url if backend == "postgres" else None)
    key = new_key(tmp_path, "webshop")
    with (
        serve(tmp_path) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client,
    ):
        assert client.get("/v1/products", headers={"Authorization": ""}).status_code == 401
        products = client.get("/v1/products", params={"limit": 20}).json()["items"]
        assert len(products) == 6
        cart = client.post("/v1/carts").json()
        client.post(f"/v1/carts/{cart['id']}/lines", json={"sku": "BEANS-250-WHOLE", "quantity": 2})
        idem = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
        body = {"email": "served@example.com"}
        first = client.post(f"/v1/carts/{cart['id']}/checkout", json=body, headers=idem)
        again = client.post(f"/v1/carts/{cart['id']}/checkout", json=body, headers=idem)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json() and first.json()["total"] == 2580
        bad = client.post("/v1/carts", json={"currency": "euro"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert client.get("/schema/openapi.json").status_code == 200
