"""The voice channel: Alexa interaction model from the catalog, a signed conversation from launch to
a placed pickup order, and request verification that refuses anything not signed by "Alexa".

The tests make their own certificate authority (root, intermediate, a signing certificate for
``echo-api.amazon.com``), sign request bodies with it and inject the chain fetcher and the root
into ``omniretail_voice.verification``.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from omniretail_voice import speech, verification
from omniretail_voice.model import slot_values
from sqlalchemy import func, select

from omniretail.config import ConfigError
from omniretail.domain.customer import Identity, IdentityKind
from omniretail.gateway.app import create_app
from omniretail.gateway.keys import KeyStore
from omniretail.kernel import Kernel
from omniretail.publishing import Publisher
from omniretail.services.catalog import ProductDraft
from omniretail.services.clock import FakeClock
from omniretail.starter import load_catalog, sample_catalog
from omniretail.storage import tables
from tests.conftest import store_config
from tests.integration.gateway_fixtures import Api

SKILL_ID = "amzn1.ask.skill.00000000-test-4000-8000-000000000000"
CHAIN_URL = "https://s3.amazonaws.com/echo.api/echo-api-cert-test.pem"
WRONG_SAN_URL = "https://s3.amazonaws.com/echo.api/wrong-san.pem"
EXPIRED_URL = "https://s3.amazonaws.com/echo.api/expired.pem"
ROGUE_URL = "https://s3.amazonaws.com/echo.api/rogue-root.pem"
USER_ID = "amzn1.ask.account.TESTUSER0001"


# -- a test certificate authority -----------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ca(subject: str, key: rsa.RSAPrivateKey, issuer: str, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if subject == issuer else 0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _leaf(
    key: rsa.RSAPrivateKey, issuer_key: rsa.RSAPrivateKey, san: str, *, days: tuple[int, int] = (-1, 30)
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(san))
        .issuer_name(_name("Test Alexa Intermediate"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


class AlexaCA:
    def __init__(self) -> None:
        root_key, inter_key, self.key = _key(), _key(), _key()
        self.root = _ca("Test Alexa Root", root_key, "Test Alexa Root", root_key)
        inter = _ca("Test Alexa Intermediate", inter_key, "Test Alexa Root", root_key)
        leaf = _leaf(self.key, inter_key, "echo-api.amazon.com")
        wrong = _leaf(self.key, inter_key, "echo-api.example.com")
        expired = _leaf(self.key, inter_key, "echo-api.amazon.com", days=(-60, -1))
        rogue_key = _key()
        rogue_root = _ca("Test Alexa Root", rogue_key, "Test Alexa Root", rogue_key)  # same name, other key
        rogue_inter = _ca("Test Alexa Intermediate", inter_key, "Test Alexa Root", rogue_key)

        def pem(*certs: x509.Certificate) -> bytes:
            return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

        self.chains = {
            CHAIN_URL: pem(leaf, inter),
            WRONG_SAN_URL: pem(wrong, inter),
            EXPIRED_URL: pem(expired, inter),
            ROGUE_URL: pem(leaf, rogue_inter, rogue_root),
        }
        self.fetched: list[str] = []

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.chains:
            raise httpx.ConnectError("no such certificate")
        return self.chains[url]

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


@functools.cache
def make_ca() -> AlexaCA:
    return AlexaCA()


@pytest.fixture
def ca(monkeypatch: pytest.MonkeyPatch) -> AlexaCA:
    authority = make_ca()
    authority.fetched.clear()
    monkeypatch.setattr(verification, "fetch_chain", authority.fetch)
    monkeypatch.setattr(verification, "trust_roots", lambda: (authority.root,))
    return authority


# -- the gateway with a configured voice channel --------------------------------------------------


def voice_config(db_url: str, **voice: Any) -> dict[str, Any]:
    config = store_config(db_url)
    config["channels"]["voice"] = {"skill_id": SKILL_ID, "invocation_name": "Test Coffee", **voice}
    config["gateway"] = {"embedded_worker": False}
    return config


async def make_voice_api(db_url: str, tmp_path: Path, clock: FakeClock, **voice: Any) -> AsyncIterator[Api]:
    kernel = Kernel.from_config(voice_config(db_url, **voice), base_dir=str(tmp_path), clock=clock)
    await kernel.start()
    data = sample_catalog()
    rename = {"store-downtown": "store-a", "store-riverside": "store-b", "wh-central": "wh"}
    for row in data["stock"]:
        row["location_id"] = rename[row["location_id"]]
    await load_catalog(kernel, data)
    store = KeyStore(kernel.db)
    keys = {ch: (await store.create(ch, ("storefront",), now=clock()))[1] for ch in ("webshop", "voice")}
    keys["admin"] = (await store.create("admin", ("admin",), now=clock()))[1]
    app = create_app(kernel, run_worker=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client=client, kernel=kernel, keys=keys, app=app)
    await kernel.close()


@pytest.fixture
async def voice(db_url: str, tmp_path: Path, clock: FakeClock, ca: AlexaCA) -> AsyncIterator[Api]:
    async for api in make_voice_api(db_url, tmp_path, clock):
        yield api


class Alexa:
    """A device talking to the skill: builds envelopes, signs them, keeps the session."""

    def __init__(self, api: Api, ca: AlexaCA, clock: FakeClock, *, token: str | None = None) -> None:
        self.api, self.ca, self.clock, self.token = api, ca, clock, token
        self.attributes: dict[str, Any] = {}
        self.new = True
        self.count = 0

    def envelope(self, request: dict[str, Any], *, skill_id: str = SKILL_ID) -> dict[str, Any]:
        self.count += 1
        user: dict[str, Any] = {"userId": USER_ID}
        if self.token:
            user["accessToken"] = self.token
        application = {"applicationId": skill_id}
        return {
            "version": "1.0",
            "session": {
                "new": self.new,
                "sessionId": "amzn1.echo-api.session.test",
                "application": application,
                "attributes": self.attributes,
                "user": user,
            },
            "context": {
                "System": {"application": application, "user": user, "device": {"deviceId": "d1"}},
                "Viewport": {"shape": "ROUND"},  # unknown parts are ignored
            },
            "request": {
                "requestId": f"amzn1.echo-api.request.{self.count}",
                "timestamp": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "locale": "en-US",
                **request,
            },
        }

    def signed(self, body: bytes, url: str = CHAIN_URL) -> dict[str, str]:
        return {"SignatureCertChainUrl": url, "Signature-256": self.ca.sign(body), "Content-Type": "application/json"}

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.api.client.post("/channels/voice/alexa", content=body, headers=headers)

    async def send(self, request: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(self.envelope(request)).encode()
        r = await self.post(body, self.signed(body))
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        self.new = False
        self.attributes = answer.get("sessionAttributes", {})
        ssml = answer["response"].get("outputSpeech", {}).get("ssml")
        if ssml is not None:
            ET.fromstring(ssml)  # well-formed SSML, always
        return answer

    async def launch(self) -> dict[str, Any]:
        return await self.send({"type": "LaunchRequest"})

    async def intent(self, name: str, confirmation: str = "NONE", **slots: Any) -> dict[str, Any]:
        built = {}
        for slot, value in slots.items():
            built[slot] = value if isinstance(value, dict) else {"name": slot, "value": value}
            built[slot].setdefault("name", slot)
        return await self.send(
            {
                "type": "IntentRequest",
                "dialogState": "STARTED",
                "intent": {"name": name, "confirmationStatus": confirmation, "slots": built},
            }
        )


def said(answer: dict[str, Any]) -> str:
    """The speech as plain text (tags dropped, entities decoded)."""
    return "".join(ET.fromstring(answer["response"]["outputSpeech"]["ssml"]).itertext())


def resolved(heard: str, sku: str) -> dict[str, Any]:
    """A slot as Alexa sends it after entity resolution matched ``sku``."""
    return {
        "value": heard,
        "resolutions": {
            "resolutionsPerAuthority": [
                {
                    "authority": f"amzn1.er-authority.echo-sdk.{SKILL_ID}.PRODUCT",
                    "status": {"code": "ER_SUCCESS_MATCH"},
                    "values": [{"value": {"name": "latte", "id": sku}}],
                }
            ]
        },
    }


async def voice_orders(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/admin/orders", params={"channel": "voice"}, headers=api.h("admin"))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def on_hand(api: Api, sku: str, location: str) -> int:
    r = await api.client.get(f"/v1/admin/stock/{sku}", headers=api.h("admin"))
    assert r.status_code == 200, r.text
    return int(next(x["on_hand"] for x in r.json() if x["location_id"] == location))


async def row_counts(kernel: Kernel) -> tuple[int, ...]:
    async with kernel.db.read() as conn:
        return tuple(
            [
                int(await conn.scalar(select(func.count()).select_from(table)) or 0)
                for table in (tables.carts, tables.orders, tables.events, tables.identities)
            ]
        )


async def vip_customer(api: Api, email: str = "vip@example.com") -> tuple[str, str]:
    token = await api.sign_up(email)
    me = await api.client.get("/v1/customers/me", headers=api.h("webshop", customer=token))
    customer_id = str(me.json()["id"])
    r = await api.client.put(f"/v1/admin/customers/{customer_id}/tier", json={"tier": "vip"}, headers=api.h("admin"))
    assert r.status_code == 200, r.text
    return token, customer_id


# -- the interaction model ------------------------------------------------------------------------


async def test_interaction_model_has_every_active_sku_with_synonyms(voice: Api) -> None:
    r = await voice.client.get("/channels/voice/interaction-model.json", headers=voice.h("voice"))
    assert r.status_code == 200, r.text
    language = r.json()["interactionModel"]["languageModel"]
    assert language["invocationName"] == "test coffee"

    snapshot = await voice.kernel.catalog.snapshot()
    (product_type,) = [t for t in language["types"] if t["name"] == "PRODUCT"]
    values = {v["id"]: v["name"] for v in product_type["values"]}
    assert set(values) == set(snapshot.by_sku) and len(values) == 8
    for product in snapshot.products:
        synonyms = product.channel_content.voice.synonyms  # type: ignore[union-attr]
        first = values[product.variants[0].sku]
        assert set(synonyms) <= set(first["synonyms"]), product.handle
        for variant in product.variants[1:]:
            others = values[variant.sku]
            assert all(f"{variant.title.lower()} {s}" in others["synonyms"] for s in synonyms)
    assert values["LATTE-REG"]["value"] == "latte"
    assert {"regular latte", "cafe latte", "milk coffee"} <= set(values["LATTE-REG"]["synonyms"])
    assert values["LATTE-LRG"]["value"] == "large latte"
    assert "black travel mug" in values["MUG-TRAVEL-BLK"]["synonyms"]  # the variant title

    intents = {i["name"]: i for i in language["intents"]}
    required = {
        "SearchProductIntent",
        "ProductInfoIntent",
        "AddToCartIntent",
        "ReorderIntent",
        "CheckoutIntent",
        "OrderStatusIntent",
        *(f"AMAZON.{x}Intent" for x in ("Yes", "No", "Help", "Cancel", "Stop", "Fallback")),
    }
    assert required <= set(intents)
    assert {s["name"]: s["type"] for s in intents["AddToCartIntent"]["slots"]} == {
        "product": "PRODUCT",
        "quantity": "AMAZON.NUMBER",
    }
    assert intents["OrderStatusIntent"]["slots"][0]["name"] == "orderNumber"
    for intent in intents.values():  # every slot a sample names is declared
        declared = {s["name"] for s in intent.get("slots", [])}
        for sample in intent["samples"]:
            assert {w[1:-1] for w in sample.split() if w.startswith("{")} <= declared, sample

    dialog = r.json()["interactionModel"]["dialog"]
    (checkout,) = [i for i in dialog["intents"] if i["name"] == "CheckoutIntent"]
    assert checkout["confirmationRequired"] is True
    prompt_ids = {p["id"] for p in r.json()["interactionModel"]["prompts"]}
    assert checkout["prompts"]["confirmation"] in prompt_ids

    assert (await voice.client.get("/channels/voice/interaction-model.json")).status_code == 401
    other = await voice.client.get("/channels/voice/interaction-model.json", headers=voice.h("webshop"))
    assert other.status_code == 403
    admin = await voice.client.get("/channels/voice/interaction-model.json", headers=voice.h("admin"))
    assert admin.status_code == 200


async def test_interaction_model_from_published_listings(voice: Api) -> None:
    url = "/channels/voice/interaction-model.json"
    empty = await voice.client.get(url, params={"source": "published"}, headers=voice.h("voice"))
    assert empty.json()["interactionModel"]["languageModel"]["types"][0]["values"] == []

    run = await Publisher(voice.kernel).publish("voice")
    assert run.created == 6 and run.rejected == 0
    live = await voice.client.get(url, headers=voice.h("voice"))
    published = await voice.client.get(url, params={"source": "published"}, headers=voice.h("voice"))

    def by_sku(r: httpx.Response) -> dict[str, Any]:
        return {v["id"]: v for v in r.json()["interactionModel"]["languageModel"]["types"][0]["values"]}

    assert by_sku(published) == by_sku(live)
    # Slot values do not depend on stock: a stock change publishes nothing new.
    await voice.kernel.inventory.set_on_hand("LATTE-REG", "store-a", 3, reason="count")
    again = await Publisher(voice.kernel).publish("voice")
    assert again.created == again.updated == 0
    bad = await voice.client.get(url, params={"source": "nope"}, headers=voice.h("voice"))
    assert bad.status_code == 400


def fish_draft() -> ProductDraft:
    return msgspec.convert(
        {
            "handle": "fish-chips",
            "title": "Fish & Chips <XL>",
            "channel_content": {
                "voice": {
                    "spoken_name": "fish & chips <xl>",
                    "synonyms": ["Fish & Chips <XL>", "chippy", "chippy"],
                    "description": 'Crispy & "hot" <b>',
                }
            },
            "variants": [{"sku": "FISH", "prices": [{"amount": 900, "currency": "EUR"}]}],
        },
        ProductDraft,
    )


def test_slot_values_are_plain_text_without_duplicates() -> None:
    (value,) = slot_values(fish_draft().build("prd_1", 1))
    assert value == {"id": "FISH", "name": {"value": "fish & chips <xl>", "synonyms": ["chippy"]}}


# -- a signed conversation ------------------------------------------------------------------------


async def test_signed_conversation_from_launch_to_pickup_order(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    token, customer_id = await vip_customer(voice)
    alexa = Alexa(voice, ca, clock, token=token)
    before = await on_hand(voice, "LATTE-REG", "store-a")

    hello = await alexa.launch()
    assert "Welcome to Test store" in said(hello)
    assert hello["response"]["shouldEndSession"] is False and "reprompt" in hello["response"]
    # The linked voice account is recorded on the customer: it resolves to them from now on.
    found = await voice.kernel.customers.find(
        Identity(kind=IdentityKind.VOICE_ACCOUNT, value=USER_ID, namespace="alexa")
    )
    assert found is not None and found.id == customer_id

    # "add two milk coffees": entity resolution gives the SKU of the synonym.
    added = await alexa.intent("AddToCartIntent", product=resolved("milk coffee", "LATTE-REG"), quantity="2")
    assert "Added 2 lattes" in said(added) and "€7.60" in said(added)  # the VIP price
    cart_id = alexa.attributes["cart_id"]
    cart = await voice.kernel.carts.get(cart_id)
    assert cart.customer_id == customer_id and cart.channel == "voice"

    asked = await alexa.intent("CheckoutIntent")
    assert said(asked) == ("Your order is 2 lattes for €7.60 to pick up at Store A in 10 minutes. Shall I place it?")
    assert asked["response"]["shouldEndSession"] is False
    assert asked["response"]["directives"][0]["type"] == "Dialog.ConfirmIntent"
    assert await voice_orders(voice) == []  # nothing placed before the yes

    placed = await alexa.intent("AMAZON.YesIntent")
    assert placed["response"]["shouldEndSession"] is True
    assert "Done! Your order number is" in said(placed)
    (order,) = await voice_orders(voice)
    first_half = order["number"].split("-")[0]
    ssml = placed["response"]["outputSpeech"]["ssml"]
    assert f'<say-as interpret-as="spell-out">{first_half}</say-as>' in ssml  # spelt out, not read as a word
    assert placed["response"]["card"]["title"] == f"Order {order['number']}"
    r = await voice.client.get(f"/v1/admin/orders/{order['id']}", headers=voice.h("admin"))
    order = r.json()
    assert order["channel"] == "voice" and order["customer_id"] == customer_id
    assert order["fulfilment"] == "pickup" and order["pickup_location_id"] == "store-a"
    assert [(x["sku"], x["quantity"], x["unit_price"], x["location_id"]) for x in order["lines"]] == [
        ("LATTE-REG", 2, 380, "store-a")
    ]
    assert order["total"] == 760
    assert await on_hand(voice, "LATTE-REG", "store-a") == before - 2
    assert "cart_id" not in placed["sessionAttributes"]

    # A later session: reorder repeats the last order's lines and asks before placing.
    alexa.new, alexa.attributes = True, {}
    again = await alexa.intent("ReorderIntent")
    assert said(again).startswith("I've added your last order. Your order is 2 lattes for €7.60")
    assert len(await voice_orders(voice)) == 1
    # This time the dialog model's confirmation comes back on the CheckoutIntent itself.
    second = await alexa.intent("CheckoutIntent", confirmation="CONFIRMED")
    assert "Done!" in said(second)
    orders = await voice_orders(voice)
    assert len(orders) == 2 and orders[0]["id"] != order["id"]
    assert await on_hand(voice, "LATTE-REG", "store-a") == before - 4

    status = await alexa.intent("OrderStatusIntent")
    assert said(status).startswith("Your order") and "has been placed" in said(status)
    assert "ready at Store A in 10 minutes" in said(status)
    spoken = " ".join(order["number"].replace("-", "")).lower().replace("0", "zero")
    first = await alexa.intent("OrderStatusIntent", orderNumber=spoken)
    assert "has been placed" in said(first)
    moved = await voice.client.post(
        f"/v1/admin/orders/{order['id']}/transitions", json={"to": "ready_for_pickup"}, headers=voice.h("admin")
    )
    assert moved.status_code == 200, moved.text
    ready = await alexa.intent("OrderStatusIntent", orderNumber=order["number"])
    assert "is ready for pickup at Store A" in said(ready)


async def test_no_and_denied_confirmation_place_nothing(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    token, _ = await vip_customer(voice)
    alexa = Alexa(voice, ca, clock, token=token)
    await alexa.intent("AddToCartIntent", product="a croissant")  # matched by the words heard
    assert "Shall I place it?" in said(await alexa.intent("CheckoutIntent"))
    declined = await alexa.intent("AMAZON.NoIntent")
    assert "haven't placed" in said(declined) and "pending" not in alexa.attributes
    assert "Sorry" in said(await alexa.intent("AMAZON.YesIntent"))  # a stray yes places nothing
    await alexa.intent("CheckoutIntent")
    denied = await alexa.intent("CheckoutIntent", confirmation="DENIED")
    assert "haven't placed" in said(denied)
    # A CONFIRMED that never heard the read-back asks first.
    alexa.attributes.pop("pending", None)
    asked = await alexa.intent("CheckoutIntent", confirmation="CONFIRMED")
    assert "Shall I place it?" in said(asked)
    assert await voice_orders(voice) == []


async def test_a_changed_cart_is_read_back_again(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    token, _ = await vip_customer(voice)
    alexa = Alexa(voice, ca, clock, token=token)
    await alexa.intent("AddToCartIntent", product="espresso")
    await alexa.intent("CheckoutIntent")
    # The same cart changes on another channel between the read-back and the yes.
    await voice.client.post(
        f"/v1/carts/{alexa.attributes['cart_id']}/lines",
        json={"sku": "CROISSANT", "quantity": 1},
        headers=voice.h("webshop", customer=token),
    )
    changed = await alexa.intent("AMAZON.YesIntent")
    assert said(changed).startswith("Your order changed. Your order is 1 espresso and 1 croissant")
    assert await voice_orders(voice) == []
    assert "Done!" in said(await alexa.intent("AMAZON.YesIntent"))


async def test_a_repeated_yes_places_one_order(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    token, _ = await vip_customer(voice)
    alexa = Alexa(voice, ca, clock, token=token)
    await alexa.intent("AddToCartIntent", product="croissant", quantity="3")
    await alexa.intent("CheckoutIntent")
    asked_attributes = dict(alexa.attributes)
    first = await alexa.intent("AMAZON.YesIntent")
    alexa.attributes = asked_attributes  # Alexa retries the same request
    clock.advance(minutes=4)
    again = await alexa.intent("AMAZON.YesIntent")
    assert said(first).startswith("Done!") and said(again).startswith("Done!")
    assert "in 6 minutes" in said(again) and again["response"]["card"] == first["response"]["card"] | {
        "content": first["response"]["card"]["content"].replace("10 minutes", "6 minutes")
    }
    assert len(await voice_orders(voice)) == 1


async def test_guest_browses_and_fills_a_cart_but_links_to_order(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    alexa = Alexa(voice, ca, clock)
    info = await alexa.intent("ProductInfoIntent", product="large latte")
    assert said(info).startswith("A large latte is €5.20.") and "available at Store A" in said(info)
    added = await alexa.intent("AMAZON.YesIntent")  # "Shall I add one?" - yes
    assert "Added 1 large latte" in said(added)
    cart = await voice.kernel.carts.get(alexa.attributes["cart_id"])
    assert cart.customer_id is None and [(x.sku, x.quantity) for x in cart.lines] == [("LATTE-LRG", 1)]

    found = await alexa.intent("SearchProductIntent", query="coffee beans")
    assert said(found).startswith("I found house blend beans for €12.90, latte from €4.50")
    menu = await alexa.intent("SearchProductIntent")
    assert said(menu).startswith("We have latte, espresso")

    for name in ("CheckoutIntent", "ReorderIntent", "OrderStatusIntent"):
        answer = await alexa.intent(name)
        assert answer["response"]["card"] == {"type": "LinkAccount"}, name
        assert "link your Test store account" in said(answer)
    assert await voice_orders(voice) == []

    expired = Alexa(voice, ca, clock, token="oms_not-a-session")
    answer = await expired.intent("CheckoutIntent")
    assert answer["response"]["card"] == {"type": "LinkAccount"} and "expired" in said(answer)

    # Signing in mid-conversation: the guest cart becomes the customer's.
    token, customer_id = await vip_customer(voice, "later@example.com")
    alexa.token = token
    await alexa.intent("AddToCartIntent", product="espresso", quantity="1")
    cart = await voice.kernel.carts.get(alexa.attributes["cart_id"])
    assert cart.customer_id == customer_id and len(cart.lines) == 2


async def test_order_status_only_of_own_orders(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    other_token, _ = await vip_customer(voice, "other@example.com")
    theirs = Alexa(voice, ca, clock, token=other_token)
    await theirs.intent("AddToCartIntent", product="espresso")
    await theirs.intent("CheckoutIntent")
    await theirs.intent("AMAZON.YesIntent")
    (order,) = await voice_orders(voice)

    token, _ = await vip_customer(voice, "me@example.com")
    mine = Alexa(voice, ca, clock, token=token)
    assert "no orders yet" in said(await mine.intent("OrderStatusIntent"))
    for heard in (order["number"], "seven k three m nine q x d", "nonsense"):
        answer = await mine.intent("OrderStatusIntent", orderNumber=heard)
        assert said(answer).startswith("Sorry, I can't find that order"), heard


async def test_ssml_is_well_formed_with_markup_in_names(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    await voice.kernel.catalog.upsert_many([fish_draft()])
    alexa = Alexa(voice, ca, clock)
    answer = await alexa.intent("ProductInfoIntent", product="fish & chips <xl>")
    ssml = answer["response"]["outputSpeech"]["ssml"]
    assert "fish &amp; chips &lt;xl&gt;" in ssml and "<b>" not in ssml
    assert said(answer).startswith('A fish & chips <xl> is €9.00. Crispy & "hot" <b>')
    unknown = await alexa.intent("ProductInfoIntent", product="<script>&")
    assert "we don't have <script>&" in said(unknown)


async def test_session_end_help_stop_fallback(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    alexa = Alexa(voice, ca, clock)
    assert (await alexa.send({"type": "SessionEndedRequest", "reason": "USER_INITIATED"}))["response"] == {}
    assert "You can ask" in said(await alexa.intent("AMAZON.HelpIntent"))
    assert "didn't get that" in said(await alexa.intent("AMAZON.FallbackIntent"))
    assert "didn't get that" in said(await alexa.intent("NoSuchIntent"))
    bye = await alexa.intent("AMAZON.StopIntent")
    assert bye["response"]["shouldEndSession"] is True and "reprompt" not in bye["response"]
    too_many = await alexa.intent("AddToCartIntent", product="espresso", quantity="500")
    assert "1 to 99" in said(too_many)
    sold_out = await alexa.intent("AddToCartIntent", product="cinnamon bun")  # none at Store A
    assert "Store A has no cinnamon buns left" in said(sold_out)
    info = await alexa.intent("ProductInfoIntent", product="cinnamon roll")
    assert "sold out at Store A" in said(info) and "offer" not in alexa.attributes
    assert said(await alexa.intent("AMAZON.NoIntent")) == "Okay. Goodbye!"


async def test_odd_but_signed_envelopes_get_answers_not_errors(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    other_token, _ = await vip_customer(voice, "owner@example.com")
    owner = Alexa(voice, ca, clock, token=other_token)
    await owner.intent("AddToCartIntent", product="espresso")
    their_cart = owner.attributes["cart_id"]

    alexa = Alexa(voice, ca, clock)
    alexa.attributes = {"cart_id": 5, "pending": "x", "offer": ["a"], "last_sku": 7}
    assert said(await alexa.intent("AMAZON.YesIntent")).startswith("Sorry, I'm not sure")
    alexa.attributes = {"pending": {"cart_id": their_cart, "fingerprint": "f"}}
    assert (await alexa.intent("AMAZON.YesIntent"))["response"]["card"] == {"type": "LinkAccount"}
    # Someone else's cart id in the session is not used: a new guest cart is.
    alexa.attributes = {"cart_id": their_cart}
    await alexa.intent("AddToCartIntent", product="latte")
    assert alexa.attributes["cart_id"] != their_cart
    assert [x.sku for x in (await voice.kernel.carts.get(their_cart)).lines] == ["ESPRESSO"]
    alexa.attributes = {"cart_id": "cart_does_not_exist"}
    await alexa.intent("AddToCartIntent", product="latte")
    assert alexa.attributes["cart_id"].startswith("cart_")

    for quantity in ("-3", "2.5", "ten", "0", "100"):
        assert "1 to 99" in said(await alexa.intent("AddToCartIntent", product="latte", quantity=quantity))
    no_match = {
        "value": "unicorn",
        "resolutions": {
            "resolutionsPerAuthority": [{"status": {"code": "ER_SUCCESS_NO_MATCH"}, "values": []}],
        },
    }
    assert "we don't have unicorn" in said(await alexa.intent("ProductInfoIntent", product=no_match))
    stale_id = resolved("latte", "NO-SUCH-SKU")  # a SKU gone since the model was imported
    assert said(await alexa.intent("ProductInfoIntent", product=stale_id)).startswith("A latte is €4.50")
    assert "Which product" in said(await alexa.intent("ProductInfoIntent"))
    assert "What would you like to add" in said(await alexa.intent("AddToCartIntent", product={"value": "?"}))
    assert "Added 2 lattes" in said(await alexa.intent("AddToCartIntent", quantity="2"))  # "add two more"
    assert "didn't get that" in said(await alexa.send({"type": "IntentRequest"}))
    assert (await alexa.send({"type": "Connections.Response", "status": {"code": "200"}}))["response"] == {}

    token, _ = await vip_customer(voice, "odd@example.com")
    linked = Alexa(voice, ca, clock, token=token)
    for heard in ("ünïcødé ☕", "", "1234-5678-9999", "x" * 500):
        answer = await linked.intent("OrderStatusIntent", orderNumber=heard)
        assert "can't find that order" in said(answer) or "no orders yet" in said(answer), heard

    for body in (b"\xff\xfe not utf-8", b"[]", b'{"request": {"type": "LaunchRequest"}, "session": 5}'):
        r = await alexa.post(body, alexa.signed(body))
        assert r.status_code == 400 and r.json()["type"].endswith("alexa-request"), body


# -- verification: every bad request is refused and changes nothing ------------------------------


BAD_URLS = [
    "http://s3.amazonaws.com/echo.api/echo-api-cert-test.pem",
    "https://notamazon.com/echo.api/echo-api-cert-test.pem",
    "https://s3.amazonaws.com.evil.example/echo.api/echo-api-cert-test.pem",
    "https://s3.amazonaws.com:563/echo.api/echo-api-cert-test.pem",
    "https://s3.amazonaws.com/EcHo.aPi/echo-api-cert-test.pem",
    "https://s3.amazonaws.com/invalid.path/echo-api-cert-test.pem",
    "https://s3.amazonaws.com/echo.api/../invalid.path/echo-api-cert-test.pem",
    "https://s3.amazonaws.com/echo.api/%2e%2e/x/cert.pem",
    "https://user@s3.amazonaws.com/echo.api/echo-api-cert-test.pem",
    "not a url at all",
]


BAD_CASES = [
    "unsigned",
    "no-signature",
    "tampered",
    "garbage-signature",
    "other-key",
    "sha1-only",
    "stale",
    "future",
    "no-timestamp",
    "wrong-skill",
    "wrong-san",
    "expired-cert",
    "untrusted-root",
    "unreachable-cert",
    *(f"url:{u}" for u in BAD_URLS),
]


def bad_request(alexa: Alexa, ca: AlexaCA, clock: FakeClock, case: str) -> tuple[bytes, dict[str, str]]:
    """An AddToCart request (it would create a cart) spoilt in the way ``case`` names."""
    body_json = alexa.envelope(
        {
            "type": "IntentRequest",
            "intent": {"name": "AddToCartIntent", "slots": {"product": {"name": "product", "value": "latte"}}},
        },
        skill_id="amzn1.ask.skill.other" if case == "wrong-skill" else SKILL_ID,
    )
    stamp = {"stale": clock() - timedelta(seconds=151), "future": clock() + timedelta(seconds=151)}.get(case)
    if stamp is not None:
        body_json["request"]["timestamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if case == "no-timestamp":
        del body_json["request"]["timestamp"]
    body = json.dumps(body_json).encode()
    headers = alexa.signed(body)
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "no-signature":
        del headers["Signature-256"]
    elif case == "tampered":
        body = body.replace(b'"latte"', b'"espresso"')
    elif case == "garbage-signature":
        headers["Signature-256"] = "not base64!"
    elif case == "other-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        headers["Signature-256"] = base64.b64encode(other.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    elif case == "sha1-only":  # the deprecated header alone is not enough
        del headers["Signature-256"]
        headers["Signature"] = base64.b64encode(ca.key.sign(body, padding.PKCS1v15(), hashes.SHA1())).decode()
    elif case == "wrong-san":
        headers["SignatureCertChainUrl"] = WRONG_SAN_URL
    elif case == "expired-cert":
        headers["SignatureCertChainUrl"] = EXPIRED_URL
    elif case == "untrusted-root":
        headers["SignatureCertChainUrl"] = ROGUE_URL
    elif case == "unreachable-cert":
        headers["SignatureCertChainUrl"] = "https://s3.amazonaws.com/echo.api/missing.pem"
    elif case.startswith("url:"):
        headers["SignatureCertChainUrl"] = case[4:]
    return body, headers


async def test_bad_requests_are_refused_and_change_nothing(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    token, _ = await vip_customer(voice)
    alexa = Alexa(voice, ca, clock, token=token)
    before = await row_counts(voice.kernel)
    for case in BAD_CASES:
        ca.fetched.clear()
        body, headers = bad_request(alexa, ca, clock, case)
        r = await alexa.post(body, headers)
        assert r.status_code == 400, (case, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), case
        assert r.json()["type"].startswith("https://omniretail.dev/problems/alexa-"), case
        assert await row_counts(voice.kernel) == before, case  # no cart, no order, no event, no identity
        if case.startswith("url:"):
            assert ca.fetched == [], case  # a URL that is not Amazon's is never fetched
    # The same request, properly signed, does create the cart.
    body, headers = bad_request(alexa, ca, clock, "none")
    assert (await alexa.post(body, headers)).status_code == 200
    assert await row_counts(voice.kernel) != before


async def test_a_good_request_after_bad_ones_still_works_and_chains_are_cached(
    voice: Api, ca: AlexaCA, clock: FakeClock
) -> None:
    alexa = Alexa(voice, ca, clock)
    await alexa.launch()
    await alexa.intent("AddToCartIntent", product="espresso")
    # A request made 149 s ago (delivered late) is still fresh.
    body = json.dumps(alexa.envelope({"type": "LaunchRequest"})).encode()
    clock.advance(seconds=149)
    assert (await alexa.post(body, alexa.signed(body))).status_code == 200
    assert ca.fetched == [CHAIN_URL]  # fetched once, then cached
    # The normalised URL is what is checked and fetched.
    body = json.dumps(alexa.envelope({"type": "LaunchRequest"})).encode()
    headers = alexa.signed(body, "HTTPS://S3.AMAZONAWS.COM:443/echo.api/../echo.api/echo-api-cert-test.pem")
    assert (await alexa.post(body, headers)).status_code == 200
    assert ca.fetched == [CHAIN_URL]


async def test_not_an_envelope_is_a_400(voice: Api, ca: AlexaCA, clock: FakeClock) -> None:
    alexa = Alexa(voice, ca, clock)
    for body in (b"not json", b"{}", b'{"request": {"type": 5}}'):
        r = await alexa.post(body, alexa.signed(body))
        assert r.status_code == 400 and r.json()["type"].endswith("alexa-request"), body


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://s3.amazonaws.com/echo.api/echo-api-cert.pem", "https://s3.amazonaws.com/echo.api/echo-api-cert.pem"),
        (
            "https://s3.amazonaws.com:443/echo.api/echo-api-cert.pem",
            "https://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        ),
        (
            "https://s3.amazonaws.com/echo.api/../echo.api/echo-api-cert.pem",
            "https://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        ),
        ("HTTPS://s3.AmazonAWS.com/echo.api/echo-api-cert.pem", "https://s3.amazonaws.com/echo.api/echo-api-cert.pem"),
        *((u, None) for u in BAD_URLS),
        ("https://s3.amazonaws.com/echo.api/", None),
        ("https://s3.amazonaws.com/echo.api/cert.pem?x=1", None),
    ],
)
def test_certificate_url_rules(url: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(verification.VerificationFailed):
            verification.certificate_url(url)
    else:
        assert verification.certificate_url(url) == expected


# -- configuration ---------------------------------------------------------------------------------


async def test_verification_off_warns_loudly_and_accepts_unsigned(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="omniretail.voice"):
        async for api in make_voice_api(db_url, tmp_path, clock, verify_signatures=False):
            warnings = [r for r in caplog.records if r.name == "omniretail.voice" and r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "verify_signatures = false" in warnings[0].getMessage()
            assert "NOT checked" in warnings[0].getMessage()
            body = json.dumps(
                {
                    "version": "1.0",
                    "session": {"application": {"applicationId": SKILL_ID}, "user": {"userId": USER_ID}},
                    "request": {"type": "LaunchRequest", "timestamp": "2001-01-01T00:00:00Z"},
                }
            ).encode()
            r = await api.client.post("/channels/voice/alexa", content=body)
            assert r.status_code == 200 and "Welcome" in r.text
            # The skill id is still checked.
            other = body.replace(SKILL_ID.encode(), b"amzn1.ask.skill.other")
            assert (await api.client.post("/channels/voice/alexa", content=other)).status_code == 400


async def test_verification_on_logs_no_warning(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="omniretail.voice"):
        async for _api in make_voice_api(db_url, tmp_path, clock):
            assert not [r for r in caplog.records if r.name == "omniretail.voice"]


async def test_bad_pickup_location_stops_start_up(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    for location in ("nowhere", "wh"):  # unknown; a warehouse without pickup
        kernel = Kernel.from_config(voice_config(db_url, pickup_location=location), base_dir=str(tmp_path), clock=clock)
        with pytest.raises(ConfigError) as error:
            await kernel.start()
        assert error.value.key == "channels.voice.pickup_location"
        await kernel.close()


async def test_configured_pickup_location_is_used(db_url: str, tmp_path: Path, clock: FakeClock, ca: AlexaCA) -> None:
    async for api in make_voice_api(db_url, tmp_path, clock, pickup_location="store-b"):
        token, _ = await vip_customer(api)
        alexa = Alexa(api, ca, clock, token=token)
        await alexa.intent("AddToCartIntent", product="cinnamon bun")
        asked = await alexa.intent("CheckoutIntent")
        assert "to pick up at Store B in 20 minutes" in said(asked)
        await alexa.intent("AMAZON.YesIntent")
        (order,) = await voice_orders(api)
        assert order["pickup_location_id"] == "store-b" and order["lines"][0]["location_id"] == "store-b"


# -- words -----------------------------------------------------------------------------------------


def test_spoken_words() -> None:
    assert speech.money(760, "EUR", "en_US") == "€7.60"
    assert speech.money(1000, "JPY", "en_US") == "¥1,000"
    assert speech.count(2, "latte", "en_US") == "2 lattes"
    assert speech.count(2, "house blend beans", "en_US") == "2 house blend beans"
    assert speech.count(3, "glass", "en_US") == "3 glasses"
    assert speech.count(2, "berry", "en_US") == "2 berries"
    assert speech.count(2, "latte", "de_DE") == "2 latte"
    assert speech.join(["a", "b", "c"], "en_US") == "a, b, and c"
    assert speech.heard_order_number("7 k. 3 m nine q x d") == "7K3M-9QXD"
    assert speech.heard_order_number("7K3M-9QXD") == "7K3M-9QXD"
    assert speech.heard_order_number("seven kay") is None
    assert speech.esc("a & <b>") == "a &amp; &lt;b&gt;"


def test_signature_headers_match_the_verifier() -> None:
    from omniretail_voice import plugin, verification

    assert plugin._SIGNATURE_HEADERS == (verification.CERT_HEADER, verification.SIGNATURE_HEADER)
