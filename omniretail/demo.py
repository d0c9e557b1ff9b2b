"""``omniretail demo``: one customer journey across five channels, played through the real
gateway and plugins on the embedded SQLite default in a temporary folder.

Ana, a VIP, asks the voice assistant for two lattes (VIP price), hands the cart to the kiosk with
a code, adds a pastry the store lacks (endless aisle), pays and picks up; the order is made ready
and collected; a marketplace order from the same person arrives by signed webhook and links to
the same customer; she asks its status by voice; she returns a pastry in store. Then the timeline,
the capability matrix and the per-channel report.

Everything goes through HTTP requests to the gateway (in process), exactly as a storefront, a
kiosk or Alexa would send them; nothing here imports a channel plugin.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import standardwebhooks
from rich.console import Console

from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.payment import LedgerKind
from omniretail.gateway.app import create_app
from omniretail.gateway.keys import KeyStore
from omniretail.kernel import Kernel
from omniretail.publishing import Publisher
from omniretail.starter import STARTER_TOML, example_file, load_catalog, sample_catalog
from omniretail.worker import OutboxWorker

CHANNELS = ("voice", "kiosk", "webshop", "marketplace", "social")
#: The environment variable the demo puts its generated marketplace webhook secret in.
SECRET_ENV = "OMNIRETAIL_DEMO_MARKETPLACE_SECRET"  # noqa: S105 - a variable name, not a secret
#: Ana's password in the throwaway demo store.
PASSWORD = "demo-password-1"  # noqa: S105 - lives only in a temporary folder


class DemoError(Exception):
    """A step of the demo got an answer it did not expect."""


def demo_config(secret_env: str) -> str:
    """The starter configuration, plus what a demo needs: a marketplace webhook secret from the
    environment, and Alexa signature checks off (there is no Alexa here to sign requests)."""
    toml = STARTER_TOML.replace(
        '# webhook_secret = "env:MARKETPLACE_WEBHOOK_SECRET"', f'webhook_secret = "env:{secret_env}"'
    )
    toml = toml.replace(
        'invocation_name = "riverside coffee"', 'invocation_name = "riverside coffee"\nverify_signatures = false'
    )
    return toml + "\n[gateway]\nembedded_worker = false\nrate_limit_per_minute = 0\n"


class Demo:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.step_no = 0

    # -- printing ------------------------------------------------------------------------------

    def step(self, channel: str, text: str) -> None:
        self.step_no += 1
        self.console.print(f"[bold]{self.step_no:>2}.[/bold] [cyan]{channel:<11}[/cyan] {text}")

    def detail(self, text: str) -> None:
        self.console.print(f"               [dim]{text}[/dim]")

    # -- HTTP ----------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        channel: str,
        *,
        expect: int = 200,
        customer: str | None = None,
        idempotent: bool = False,
        **kw: Any,
    ) -> Any:
        headers = dict(kw.pop("headers", {}))
        if channel in self.keys:
            headers["Authorization"] = f"Bearer {self.keys[channel]}"
        if customer:
            headers["Customer-Token"] = customer
        if idempotent:
            headers["Idempotency-Key"] = f'"{uuid.uuid4()}"'
        response = await self.client.request(method, path, headers=headers, **kw)
        if response.status_code != expect:
            raise DemoError(f"{method} {path} answered {response.status_code}, not {expect}: {response.text[:500]}")
        content_type = response.headers.get("content-type", "")
        return response.json() if "json" in content_type else response.text

    async def settle(self) -> None:
        """Deliver what the last steps committed (points, notifications) before going on."""
        await OutboxWorker(self.kernel).drain()

    async def alexa(self, request: dict[str, Any], *, token: str | None, session: dict[str, Any]) -> dict[str, Any]:
        envelope = {
            "version": "1.0",
            "session": {
                "new": not session,
                "sessionId": "amzn1.echo-api.session.demo",
                "application": {"applicationId": "amzn1.ask.skill.demo"},
                "attributes": session,
                "user": {"userId": "amzn1.ask.account.ANA", **({"accessToken": token} if token else {})},
            },
            "context": {
                "System": {
                    "application": {"applicationId": "amzn1.ask.skill.demo"},
                    "user": {"userId": "amzn1.ask.account.ANA", **({"accessToken": token} if token else {})},
                }
            },
            "request": {
                "requestId": f"amzn1.echo-api.request.{uuid.uuid4()}",
                "locale": "en-US",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **request,
            },
        }
        reply = await self.call("POST", "/channels/voice/alexa", "voice", json=envelope)
        session.clear()
        session.update(reply.get("sessionAttributes") or {})
        return dict(reply)

    @staticmethod
    def said(reply: dict[str, Any]) -> str:
        ssml = reply["response"].get("outputSpeech", {}).get("ssml", "")
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", ssml)).strip()

    @staticmethod
    def intent(name: str, **slots: str) -> dict[str, Any]:
        return {
            "type": "IntentRequest",
            "dialogState": "COMPLETED",
            "intent": {
                "name": name,
                "confirmationStatus": "NONE",
                "slots": {k: {"name": k, "value": v} for k, v in slots.items()},
            },
        }

    # -- the journey ---------------------------------------------------------------------------

    async def run(self, folder: Path) -> None:
        started = time.monotonic()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        os.environ[SECRET_ENV] = secret
        (folder / "omniretail.toml").write_text(demo_config(SECRET_ENV), encoding="utf-8")
        self.kernel = Kernel.from_path(folder / "omniretail.toml")
        async with self.kernel:
            await self.setup()
            app = create_app(self.kernel, run_worker=False)
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url=self.kernel.config.store.base_url) as client:
                self.client = client
                await self.journey(secret)
                await self.summary()
        self.console.print(f"\n[bold green]Demo finished in {time.monotonic() - started:.1f} s.[/bold green]")

    async def setup(self) -> None:
        kernel = self.kernel
        self.console.rule("[bold]Riverside Coffee: one customer, five channels")
        products, stock = await load_catalog(kernel, sample_catalog(), actor="demo")
        people = json.loads(example_file("customers.json"))["customers"]
        ana = people[0]
        ids = ana["identities"]
        customer = await kernel.customers.sign_up(ids["email"], PASSWORD, name=ana["name"], channel="webshop")
        customer = await kernel.customers.link(
            customer.id, Identity(kind=IdentityKind.LOYALTY_CARD, value=ids["loyalty_card"]), channel="kiosk"
        )
        customer = await kernel.customers.set_tier(customer.id, ana["tier"])
        self.ana = customer
        self.ana_email = ids["email"]
        self.ana_card = ids["loyalty_card"]
        store = KeyStore(kernel.db)
        self.keys = {name: (await store.create(name, ("storefront",), now=kernel.clock()))[1] for name in CHANNELS}
        self.keys["admin"] = (await store.create("admin", ("admin",), now=kernel.clock()))[1]
        self.token = await store.open_session(customer.id, "voice", now=kernel.clock(), hours=1)
        await kernel.loyalty.credit(
            customer.id,
            int(ana["wallet"]),
            kind=LedgerKind.TOP_UP,
            reference="demo-top-up",
            channel="admin",
            actor="demo",
        )
        self.console.print(
            f"Loaded {products} products and {stock} stock levels; {ana['name']} is a "
            f"{ana['tier'].upper()} customer (loyalty card {self.ana_card})."
        )
        runs = [await Publisher(kernel).publish(name, trigger="demo") for name in sorted(kernel.channels)]
        listed = ", ".join(
            f"{r.channel} {r.created} listed" + (f" ({r.rejected} rejected)" if r.rejected else "") for r in runs
        )
        self.console.print(f"Published the catalog once, rendered for every channel: {listed}.")
        self.console.print(
            "[yellow]Alexa request signatures are OFF in this demo (no Alexa to sign them); "
            "they are on by default.[/yellow]\n"
        )

    async def journey(self, secret: str) -> None:
        voice_session: dict[str, Any] = {}
        token = self.token

        # 1. Voice: two lattes at the VIP price.
        await self.alexa({"type": "LaunchRequest"}, token=token, session=voice_session)
        reply = await self.alexa(
            self.intent("AddToCartIntent", product="latte", quantity="2"), token=token, session=voice_session
        )
        cart_id = str(voice_session.get("cart_id") or voice_session.get("cartId") or "")
        if not cart_id:
            raise DemoError(f"the voice skill kept no cart in its session: {voice_session}")
        self.step("voice", f'Ana: "Alexa, ask Riverside Coffee for two lattes." Alexa: "{self.said(reply)}"')

        # 2. Voice -> kiosk: hand the cart off with a short code.
        handoff = await self.call("POST", f"/v1/carts/{cart_id}/handoff", "voice", expect=201, customer=token)
        self.step(
            "voice",
            f"Ana hands the cart off: code [bold]{handoff['code']}[/bold] (and a QR code), "
            f"valid until {handoff['expires_at'][11:16]} UTC.",
        )
        cart = await self.call("POST", f"/v1/carts/handoffs/{handoff['code']}/claim", "kiosk")
        self.step(
            "kiosk", f"At the downtown kiosk she types the code: the same cart, now on {' -> '.join(cart['channels'])}."
        )
        who = await self.call(
            "POST", "/channels/kiosk/identify", "kiosk", json={"loyalty_card": self.ana_card, "cart_id": cart_id}
        )
        self.step(
            "kiosk",
            f"She scans her loyalty card: {who['customer']['name'] if 'customer' in who else 'Ana'} "
            f"({(who.get('customer') or {}).get('tier') or 'vip'}).",
        )

        # 3. Kiosk: a pastry the store lacks (endless aisle).
        stock = await self.call("GET", "/v1/availability/CINNAMON-BUN", "kiosk")
        here = next((x["available"] for x in stock["locations"] if x["location_id"] == "store-downtown"), 0)
        cart = await self.call(
            "POST", f"/v1/carts/{cart_id}/lines", "kiosk", customer=token, json={"sku": "CINNAMON-BUN", "quantity": 2}
        )
        lines = ", ".join(f"{x['quantity']} x {x['title']} at {x['unit_price'] / 100:.2f}" for x in cart["lines"])
        self.step(
            "kiosk",
            f"Downtown has {here} cinnamon buns; she adds two anyway (endless aisle). Cart: {lines}; "
            f"total {cart['total'] / 100:.2f} {cart['currency']} (VIP prices, computed by the server).",
        )

        # 4. Pay with the loyalty wallet; pick up at the store, with the preparation time.
        before = await self.call("GET", "/v1/customers/me/wallet", "kiosk", customer=token)
        body = {"cart_id": cart_id, "fulfilment": "pickup", "payment": {"provider": "wallet"}}
        placed = await self.call(
            "POST", "/channels/kiosk/orders", "kiosk", expect=201, idempotent=True, customer=token, json=body
        )
        order = placed.get("order", placed)
        number = order["number"]
        moved = placed.get("from_elsewhere", [])
        paid = sum(int(p.get("captured", 0)) for p in order.get("payments", []))
        self.step(
            "kiosk",
            f"She pays {paid / 100:.2f} {order['currency']} from her loyalty wallet (it held "
            f"{before['balance'] / 100:.2f}) and orders for pickup downtown: order [bold]{number}[/bold], "
            f"ready by {str(order['ready_by'])[11:16]} UTC"
            + (f" ({', '.join(moved)} sent over from another location)." if moved else "."),
        )
        await self.settle()
        await self.call("POST", f"/channels/kiosk/orders/{number}/ready", "kiosk")
        self.step("kiosk", "The barista marks it ready for pickup.")
        await self.call("POST", f"/channels/kiosk/orders/{number}/collected", "kiosk")
        self.step("kiosk", "Ana collects it.")
        await self.settle()
        wallet = await self.call("GET", "/v1/customers/me/wallet", "kiosk", customer=token)
        kept = int(wallet["balance"])
        self.step(
            "kiosk",
            f"Her wallet now holds {wallet['balance'] / 100:.2f}; she earned points on this order "
            f"({wallet.get('points', 0)} points in all, on every channel alike).",
        )

        # 5. Marketplace: an order from the same person, by signed webhook.
        amazon_id = f"171-{secrets.randbelow(10**7):07d}-{secrets.randbelow(10**7):07d}"
        payload = {
            "AmazonOrderId": amazon_id,
            "OrderStatus": "Unshipped",
            "PurchaseDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "LastUpdateDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "MarketplaceId": "ATVPDKIKX0DER",
            "BuyerInfo": {"BuyerEmail": self.ana_email, "BuyerName": "Ana Silva"},
            "OrderTotal": {"CurrencyCode": "EUR", "Amount": "25.80"},
            "OrderItems": [
                {
                    "SellerSKU": "BEANS-250-GROUND",
                    "OrderItemId": "1",
                    "QuantityOrdered": 2,
                    "ItemPrice": {"CurrencyCode": "EUR", "Amount": "25.80"},
                }
            ],
        }
        raw = json.dumps(payload)
        msg_id = f"msg_{uuid.uuid4().hex}"
        signed_at = datetime.now(UTC)
        signature = standardwebhooks.Webhook(secret).sign(msg_id, signed_at, raw)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        await self.call("POST", "/channels/marketplace/webhooks", "none", expect=200, content=raw, headers=headers)
        orders = (await self.call("GET", "/v1/admin/orders", "admin", params={"channel": "marketplace"}))["items"]
        market = next(o for o in orders if o["external_ref"] == amazon_id)
        market_number = market["number"]
        same = market["customer_id"] == self.ana.id
        self.step(
            "marketplace",
            f"A marketplace order {amazon_id} arrives by signed webhook: order "
            f"[bold]{market_number}[/bold], linked to {'the same customer' if same else 'ANOTHER customer'}.",
        )
        if not same:
            raise DemoError("the marketplace buyer did not resolve to Ana")
        await self.settle()

        # 6. Voice: where is that order?
        reply = await self.alexa({"type": "LaunchRequest"}, token=token, session=(voice_session := {}))
        reply = await self.alexa(
            self.intent("OrderStatusIntent", orderNumber=market_number), token=token, session=voice_session
        )
        self.step("voice", f'Ana: "Alexa, where is order {market_number}?" Alexa: "{self.said(reply)}"')

        # 7. Return a pastry in store.
        returned = await self.call(
            "POST",
            "/channels/kiosk/returns",
            "kiosk",
            json={"order_number": number, "sku": "CINNAMON-BUN", "quantity": 1},
        )
        self.step(
            "kiosk",
            f"She returns one cinnamon bun at the store: order {number} is now "
            f"'{returned['return_state']}' returned; the bun is back on the downtown shelf.",
        )
        await self.settle()
        refunded = (await self.call("GET", "/v1/customers/me/wallet", "kiosk", customer=token))["balance"]
        self.step(
            "kiosk",
            f"The bun's {(refunded - kept) / 100:.2f} went back to the payment it was bought with: "
            f"her wallet holds {refunded / 100:.2f}.",
        )

    async def summary(self) -> None:
        from rich.table import Table

        from omniretail.cli import print_report
        from omniretail.matrix import capability_matrix
        from omniretail.reporting import build_report

        timeline = (
            await self.call("GET", f"/v1/admin/customers/{self.ana.id}/timeline", "admin", params={"limit": 100})
        )["items"]
        table = Table(title=f"Ana's timeline ({len(timeline)} events, every channel)")
        for col in ("time", "channel", "event", "what"):
            table.add_column(col)
        for e in timeline:
            table.add_row(e["occurred_at"][11:19], e["channel"], e["type"], describe(e))
        self.console.print()
        self.console.print(table)
        matrix = capability_matrix(self.kernel)
        grid = Table(title="Capability matrix")
        grid.add_column("channel")
        for step in matrix.steps:
            grid.add_column(step, justify="center")
        for row in matrix.channels:
            grid.add_row(row.name, *("✓" if row.steps[s] else "·" for s in matrix.steps))
        self.console.print(grid)
        self.console.print(f"maturity {matrix.carried}/{matrix.cells}; gaps: {', '.join(matrix.gaps) or 'none'}")
        print_report(await build_report(self.kernel))


def describe(event: dict[str, Any]) -> str:
    """One line for a timeline event, from its data (unknown types: empty)."""
    d = event.get("data", {})

    def money(amount: Any) -> str:
        return f"{int(amount) / 100:.2f}" if isinstance(amount, int) else ""

    if "to_status" in d:
        return f"order {d.get('number', '')} {d.get('from_status', '')} -> {d['to_status']}"
    if event["type"] == "order.placed":
        return (
            f"order {d.get('number', '')}, {money(d.get('total'))} {d.get('currency', '')}, {d.get('fulfilment', '')}"
        )
    if "location_id" in d and "sku" in d:
        return f"{d.get('quantity', '')} x {d['sku']} back at {d['location_id']}"
    if "sku" in d and "quantity" in d:
        return f"{d['sku']} -> {d['quantity']}"
    if "from_channel" in d:
        return f"from {d['from_channel']}"
    if event["type"].startswith(("payment.", "wallet.")) and "amount" in d:
        return f"{money(d['amount'])} ({d.get('provider') or d.get('kind') or ''})".replace(" ()", "")
    if "points" in d:
        return f"{d['points']} points"
    if "kind" in d and "value" in d:
        return f"{d['kind']} {d['value']}"
    return ""


def run_demo(console: Console | None = None) -> None:
    console = console or Console(width=130)
    with tempfile.TemporaryDirectory(prefix="omniretail-demo-") as folder:
        import asyncio

        asyncio.run(Demo(console).run(Path(folder)))
