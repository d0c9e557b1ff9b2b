"""Schemathesis against the OpenAPI document a served gateway publishes (`/schema/openapi.json`),
with the sample catalog, an admin key and real ids to reach past the 404s: every operation, valid
and invalid requests. No answer may be a 5xx, and every answer must match the document (status
code, content type, body schema).

Findings are collected over all operations and reported together, one line each.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.support import channel_keys, gateways, idem_key, quick_store

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Revoking keys could revoke the very key the fuzzer uses.
EXCLUDED = {"adminRevokeKey"}


async def known_ids(client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, str]) -> dict[str, str]:
    """Ids of real things, so generated requests reach the handlers rather than a 404."""
    cart = (await client.post("/v1/carts", headers=web)).json()["id"]
    await client.post(f"/v1/carts/{cart}/lines", json={"sku": "ESPRESSO", "quantity": 1}, headers=web)
    bought = (await client.post("/v1/carts", headers=web)).json()["id"]
    await client.post(f"/v1/carts/{bought}/lines", json={"sku": "CROISSANT", "quantity": 1}, headers=web)
    order = await client.post(
        f"/v1/carts/{bought}/checkout",
        json={"email": "fuzz@example.com"},
        headers={**web, "Idempotency-Key": idem_key()},
    )
    assert order.status_code == 201, order.text
    product = (await client.get("/v1/products/latte", headers=web)).json()["id"]
    webhook = await client.post(
        "/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/none", "event_types": ["order"]}, headers=admin
    )
    return {
        "cart_id": cart,
        "order_id": order.json()["id"],
        "customer_id": order.json()["customer_id"],
        "product_id": product,
        "id": product,
        "sku": "ESPRESSO",
        "webhook_id": webhook.json()["id"],
        "channel": "webshop",
    }


def fuzz_operation(
    operation: Any,
    base: str,
    headers: dict[str, str],
    ids: dict[str, str],
    examples: tuple[int, int],
    findings: dict[str, set[str]],
) -> int:
    """Run ``examples[0]`` valid cases with generated ids, as many with real ids, and
    ``examples[1]`` invalid cases; returns how many requests were made."""
    path_params = {p.name for p in operation.path_parameters}
    fixed = {name: ids[name] for name in path_params if name in ids}
    positive, negative = examples
    strategies = [(operation.as_strategy(GenerationMode.POSITIVE, headers=headers), positive)]
    if fixed:
        strategies.append(
            (operation.as_strategy(GenerationMode.POSITIVE, headers=headers, path_parameters=fixed), positive)
        )
    strategies.append((operation.as_strategy(GenerationMode.NEGATIVE, headers=headers), negative))
    calls = 0
    for strategy, count in strategies:

        @given(case=strategy)
        @settings(
            max_examples=count,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            try:
                response = case.call(base_url=base, timeout=30)
            except Exception as exc:  # the server closed the connection or hung: as bad as a 5xx
                findings[operation.label].add(f"no response: {type(exc).__name__}: {exc}")
                return
            try:
                case.validate_response(response, checks=CHECKS)
            except (AssertionError, BaseExceptionGroup) as exc:
                failures = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
                for failure in failures:
                    title = getattr(failure, "title", type(failure).__name__)
                    message = " ".join(str(getattr(failure, "message", failure)).split())
                    findings[operation.label].add(f"{title} ({response.status_code}): {message[:300]}")

        with suppress(Unsatisfiable):  # nothing to make invalid (no parameters, no body)
            run()
    return calls


async def fuzz(tmp_path: Path, examples: tuple[int, int]) -> None:
    store = await quick_store(
        tmp_path, None, tables={"gateway": {"rate_limit_per_minute": 0, "embedded_worker": False}}
    )
    started = time.monotonic()
    with gateways(tmp_path) as (gateway,):
        async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as client:
            await channel_keys(client, store, ["webshop"])
            ids = await known_ids(client, store.h(), store.h("webshop"))
        schema = schemathesis.openapi.from_url(f"{gateway.base}/schema/openapi.json")
        findings: dict[str, set[str]] = defaultdict(set)
        operations = [op.ok() for op in schema.get_all_operations()]
        assert len(operations) >= 40
        calls = 0
        headers = {"Authorization": f"Bearer {store.admin}"}
        for operation in operations:
            if operation.definition.raw.get("operationId") in EXCLUDED:
                continue
            calls += fuzz_operation(operation, gateway.base, headers, ids, examples, findings)
        # The store still works after the fuzzing (nothing it accepted broke it).
        paths = ["/health", "/v1/channels", "/v1/products?limit=100"]
        listed = httpx.get(f"{gateway.base}/v1/products", params={"limit": 100}, headers=headers, timeout=30)
        if listed.status_code == 200:
            paths += [f"/v1/admin/products/{p['id']}" for p in listed.json()["items"]]
        for path in paths:
            r = httpx.get(f"{gateway.base}{path}", headers=headers, timeout=30)
            if r.status_code != 200:
                findings[f"GET {path} after the fuzzing"].add(f"{r.status_code}: {r.text[:300]}")
        log = gateway.output()
    report = "\n".join(f"{label}: {finding}" for label, found in sorted(findings.items()) for finding in sorted(found))
    print(f"{len(operations)} operations, {calls} requests, {time.monotonic() - started:.0f} s")
    errors = log[log.find("Traceback") :][-3000:] if "Traceback" in log else ""
    assert not findings, f"{sum(map(len, findings.values()))} finding(s):\n{report}\n{errors}"


async def test_no_5xx_and_no_schema_violation(tmp_path: Path) -> None:
    """5 valid requests per operation (and 5 more with real ids), 3 invalid ones: ~600 requests.
    (Generating invalid requests is the slow part: Schemathesis filters for them.)"""
    await fuzz(tmp_path, (5, 3))


@pytest.mark.heavy
async def test_no_5xx_and_no_schema_violation_thorough(tmp_path: Path) -> None:
    await fuzz(tmp_path, (40, 20))
