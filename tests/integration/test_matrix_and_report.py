"""Availability, measured (the capability matrix) and decisions (the per-channel report)."""

from __future__ import annotations

import uuid
from typing import Any

from lxml import etree

from omniretail.matrix import capability_matrix
from omniretail.reporting import build_report, chart_svg


async def test_matrix_lists_every_enabled_channel_and_flags_gaps(api: Any) -> None:
    body = (await api.client.get("/v1/channels", headers=api.h("kiosk"))).json()
    matrix = body["matrix"]
    names = [row["name"] for row in matrix["channels"]]
    assert names == sorted(api.kernel.channels) and "ping" in names
    assert matrix["steps"] == ["browse", "cart", "checkout", "pay", "pickup", "track", "return", "handoff"]
    for row in matrix["channels"]:
        declared = set(next(c for c in body["channels"] if c["name"] == row["name"])["capabilities"])
        assert {s for s, ok in row["steps"].items() if ok} == declared
        assert set(row["missing"]) == set(matrix["steps"]) - declared
    carried = {s for row in matrix["channels"] for s, ok in row["steps"].items() if ok}
    assert set(matrix["gaps"]) == set(matrix["steps"]) - carried
    assert 0 < body["maturity"] <= 1


async def test_a_gap_appears_when_the_only_carrier_is_disabled(api: Any) -> None:
    matrix = capability_matrix(api.kernel)
    only_kiosk = [step for step, who in matrix.single.items() if who == "kiosk"]
    del api.kernel.channels["kiosk"]
    after = capability_matrix(api.kernel)
    assert set(only_kiosk) <= set(after.gaps)
    assert after.cells == matrix.cells - len(matrix.steps)


async def test_report_counts_sales_journeys_and_handoffs(api: Any) -> None:
    async def cart(channel: str, sku: str, qty: int) -> str:
        cart_id = (await api.client.post("/v1/carts", headers=api.h(channel))).json()["id"]
        await api.client.post(f"/v1/carts/{cart_id}/lines", json={"sku": sku, "quantity": qty}, headers=api.h(channel))
        return str(cart_id)

    async def checkout(cart_id: str, channel: str) -> dict[str, Any]:
        r = await api.client.post(
            f"/v1/carts/{cart_id}/checkout",
            json={"email": "r@example.com"},
            headers=api.h(channel, **{"Idempotency-Key": str(uuid.uuid4())}),
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    await checkout(await cart("webshop", "ESPRESSO", 2), "webshop")  # one channel only
    moved = await cart("voice", "LATTE-REG", 2)
    code = (await api.client.post(f"/v1/carts/{moved}/handoff", headers=api.h("voice"))).json()["code"]
    await api.client.post(f"/v1/carts/handoffs/{code}/claim", headers=api.h("kiosk"))
    await checkout(moved, "kiosk")  # started by voice, finished at the kiosk
    unused = await cart("social", "CROISSANT", 1)
    await api.client.post(f"/v1/carts/{unused}/handoff", headers=api.h("social"))  # never claimed

    report = await build_report(api.kernel)
    by_channel = {s.channel: s for s in report.sales}
    assert (by_channel["webshop"].orders, by_channel["webshop"].revenue) == (1, 560)
    assert (by_channel["kiosk"].orders, by_channel["kiosk"].revenue) == (1, 900)
    assert report.orders == 2 and report.cross_channel_orders == 1
    assert [(j.started_on, j.finished_on, j.orders) for j in report.journeys] == [("voice", "kiosk", 1)]
    assert (report.handoffs.created, report.handoffs.claimed, report.handoffs.converted) == (2, 1, 1)
    assert report.handoffs.conversion == 0.5

    svg = etree.fromstring(chart_svg(report).encode())
    texts = " ".join(svg.itertext())
    assert "webshop" in texts and "kiosk" in texts and "9.00 EUR" in texts
    r = await api.client.get("/v1/admin/report", headers=api.h("admin"))
    assert r.status_code == 200 and r.json()["cross_channel_orders"] == 1
    chart = await api.client.get("/v1/admin/report/chart.svg", headers=api.h("admin"))
    assert chart.headers["content-type"].startswith("image/svg+xml")
    assert (await api.client.get("/v1/admin/report", headers=api.h("webshop"))).status_code == 403
