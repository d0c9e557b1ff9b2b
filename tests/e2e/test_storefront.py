"""The example storefront (examples/storefront) in headless Chromium, against a real `omniretail serve`.

Chromium is Debian's package at /usr/bin/chromium, driven by Playwright (never `playwright install`).
Everything runs on loopback: the gateway, a static server for the page, and the browser, whose
requests anywhere else are refused. The sync Playwright API needs a plain `def` test (no event loop).
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Route, expect, sync_playwright

from tests.integration.served import init_store, new_key, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STOREFRONT = Path(__file__).resolve().parents[2] / "examples" / "storefront"
STEP_MS = 10_000  # every browser step: wait at most this long
EMAIL = "e2e@example.com"


@contextmanager
def static_site(folder: Path, overrides: dict[str, bytes]) -> Iterator[str]:
    """Serve ``folder`` on a loopback port (``overrides``: path -> JavaScript served instead)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            body = overrides.get(self.path.split("?", 1)[0])
            if body is None:
                super().do_GET()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def configure(folder: Path, site: str) -> None:
    """Let the page's origin call the gateway (CORS) and point handoff QR codes at the page."""
    toml = folder / "omniretail.toml"
    text = toml.read_text()
    assert "[store]\n" in text and "[gateway]" not in text and "handoff_url" not in text
    text = text.replace("[store]\n", f'[store]\nhandoff_url = "{site}/?handoff={{code}}"\n', 1)
    toml.write_text(f'{text}\n[gateway]\ncors_origins = ["{site}"]\n')


def euros(cents: int) -> str:
    return f"€{cents / 100:,.2f}"  # what Intl.NumberFormat says for EUR in en-US


def test_storefront_browses_fills_a_cart_hands_off_and_checks_out_for_pickup(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: this test drives Debian's chromium package "
            "(apt-get install -y chromium; .ci/run installs it)",
            pytrace=False,
        )
    expect.set_options(timeout=STEP_MS)
    timings: dict[str, float] = {}
    started = time.monotonic()
    overrides: dict[str, bytes] = {}
    store = tmp_path / "store"
    store.mkdir()
    with static_site(STOREFRONT, overrides) as site:
        init_store(store)
        configure(store, site)
        key = new_key(store, "webshop")
        with (
            serve(store) as base,
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api,
        ):
            timings["gateway up"] = time.monotonic() - started
            # The handoff page is opened without query parameters: it reads config.js.
            overrides["/config.js"] = f'export default {{ api: "{base}", key: "{key}" }};\n'.encode()
            prices = {
                v["sku"]: v["price"]["amount"] for p in api.get("/v1/products").json()["items"] for v in p["variants"]
            }
            expected_total = 2 * prices["ESPRESSO"] + prices["CROISSANT"]

            with sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    str(tmp_path / "chromium-profile"),
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=CHROMIUM_ARGS,
                    locale="en-US",
                    timezone_id="UTC",
                    service_workers="block",
                    timeout=30_000,
                )
                try:
                    timings["browser up"] = time.monotonic() - started
                    context.set_default_timeout(STEP_MS)
                    context.set_default_navigation_timeout(STEP_MS)
                    outside: list[str] = []

                    def refuse(route: Route) -> None:
                        outside.append(route.request.url)
                        route.abort()

                    context.route(lambda url: not url.startswith("http://127.0.0.1:"), refuse)
                    problems: list[str] = []
                    context.on("weberror", lambda e: problems.append(f"uncaught: {e.error}"))
                    context.on(
                        "console",
                        lambda m: (
                            problems.append(f"console: {m.text}")
                            if m.type == "error" and not m.text.startswith("Failed to load resource")
                            else None
                        ),
                    )
                    page = context.pages[0] if context.pages else context.new_page()

                    # Browse: products with prices and availability, from the gateway.
                    page.goto(f"{site}/?{urlencode({'api': base, 'key': key})}")
                    espresso = page.locator('li[data-sku="ESPRESSO"]')
                    expect(espresso.locator(".price")).to_have_text(euros(prices["ESPRESSO"]))
                    expect(espresso.locator(".stock")).to_have_text("In stock")
                    expect(page.get_by_role("heading", name="Butter Croissant")).to_be_visible()
                    expect(page.locator("#error")).to_be_hidden()

                    # Fill the cart: two items, then a changed quantity; the total is the server's.
                    page.get_by_role("button", name="Add to cart: Espresso").click()
                    expect(page.locator("#cart-lines tr")).to_have_count(1)
                    page.get_by_role("button", name="Add to cart: Butter Croissant").click()
                    expect(page.locator("#cart-lines tr")).to_have_count(2)
                    page.get_by_label("Quantity of Espresso").fill("2")
                    page.get_by_label("Quantity of Espresso").press("Enter")
                    total = page.locator("#cart-total")
                    expect(total).to_have_attribute("data-amount", str(expected_total))
                    expect(total).to_have_text(euros(expected_total))
                    cart_id = page.locator("#cart").get_attribute("data-cart-id")
                    assert cart_id
                    assert api.get(f"/v1/carts/{cart_id}").json()["total"] == expected_total
                    timings["cart filled"] = time.monotonic() - started

                    # Hand off: a QR image and a six-character code that reopens this page.
                    page.get_by_role("button", name="Continue on another device").click()
                    code_el = page.locator("#handoff-code")
                    expect(code_el).to_have_text(re.compile(r"^[0-9A-Z]{6}$"))
                    code = code_el.inner_text()
                    qr = page.get_by_role("img", name=re.compile("QR code"))
                    expect(qr).to_be_visible()
                    assert (qr.get_attribute("src") or "").startswith("data:image/png;base64,")
                    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
                    link = page.locator("#handoff-link")
                    expect(link).to_have_attribute("href", f"{site}/?handoff={code}")

                    # The QR code's page claims the cart (config from config.js) and shows it.
                    other = context.new_page()
                    other.goto(link.get_attribute("href") or "")
                    expect(other.locator("#cart-lines tr")).to_have_count(2)
                    expect(other.locator("#cart-total")).to_have_attribute("data-amount", str(expected_total))
                    expect(other.locator("#notice")).to_contain_text(code)
                    assert "handoff=" not in other.url  # a reload does not claim again
                    other.close()
                    timings["handed off"] = time.monotonic() - started

                    # Check out: pick up at a store that has everything.
                    page.get_by_label("E-mail (for your receipt").fill(EMAIL)
                    stores = page.get_by_label("Store", exact=True)
                    values = stores.locator("option").evaluate_all("options => options.map(o => o.value)")
                    assert "store-downtown" in values and "wh-central" not in values  # pickup stores only
                    stores.select_option("store-downtown")
                    page.get_by_role("button", name="Place order").click()
                    number_el = page.locator("#order-number")
                    expect(number_el).to_have_text(re.compile(r"^\S{4,20}$"))
                    number = number_el.inner_text()
                    status = page.locator("#order-status")
                    expect(status).to_have_attribute("data-status", "placed")
                    expect(status).to_have_text("Placed")
                    expect(page.locator("#order-summary")).to_contain_text("Downtown store")
                    expect(page.locator("#cart-empty")).to_be_visible()

                    # Track: refresh asks the gateway again; a wrong e-mail shows the problem's detail.
                    checked = page.locator("#order-checked").get_attribute("datetime")
                    page.get_by_role("button", name="Refresh status").click()
                    expect(page.locator("#order-checked")).not_to_have_attribute("datetime", checked or "")
                    expect(status).to_have_attribute("data-status", "placed")
                    page.get_by_label("E-mail", exact=True).fill("someone-else@example.com")
                    page.get_by_role("button", name="Find order").click()
                    expect(page.get_by_role("alert")).to_have_text("no order with that number and contact")
                    timings["ordered"] = time.monotonic() - started

                    assert not problems, problems
                    assert not outside, f"requests left loopback: {outside}"
                finally:
                    context.close()

            # The order exists, on the web shop channel, for pickup at the chosen store.
            found = api.get("/v1/orders/lookup", params={"number": number, "email": EMAIL})
            assert found.status_code == 200, found.text
            order = found.json()
            assert order["channel"] == "webshop" and order["status"] == "placed"
            assert order["fulfilment"] == "pickup" and order["pickup_location_id"] == "store-downtown"
            assert order["total"] == expected_total
            assert sorted((x["sku"], x["quantity"]) for x in order["lines"]) == [("CROISSANT", 1), ("ESPRESSO", 2)]
            assert api.get(f"/v1/carts/{cart_id}").json()["status"] != "open"
    timings["total"] = time.monotonic() - started
    print("storefront e2e timings (s):", {k: round(v, 1) for k, v in timings.items()})
