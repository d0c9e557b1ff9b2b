"""``omniretail init``: a starter configuration and a sample catalog with stock."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec

from omniretail.kernel import Kernel
from omniretail.services.catalog import ProductDraft

STARTER_TOML = """\
# omniretail configuration. Reference: docs/configuration.md
# Secrets are never written here: use env:NAME and set the variable.

[store]
name = "Riverside Coffee"
currency = "EUR"
locale = "en_IE"
base_url = "http://127.0.0.1:8000"

[database]
# The embedded default: a SQLite file next to this one, migrated on first use.
# Production: url = "env:OMNIRETAIL_DATABASE_URL" with postgresql://...
url = "sqlite:///omniretail.db"

[[locations]]
id = "wh-central"
name = "Central warehouse"
kind = "warehouse"

[[locations]]
id = "store-downtown"
name = "Downtown store"
kind = "store"
pickup = true
preparation_minutes = 10
store_code = "DOWNTOWN"

[[locations]]
id = "store-riverside"
name = "Riverside store"
kind = "store"
pickup = true
preparation_minutes = 15
store_code = "RIVERSIDE"

# Payment providers (docs/payments.md). Every channel offers every enabled provider unless its
# table says `payments = [...]`.
[payments.wallet]

[payments.pickup]

# [payments.card]
# base_url = "https://pay.example.com"
# api_key = "env:CARD_API_KEY"
# webhook_secret = "env:CARD_WEBHOOK_SECRET"

[loyalty]
points_per_unit = 1

[[loyalty.tiers]]
name = "vip"
min_spend = 100000

[channels.webshop]
locations = ["wh-central", "store-downtown", "store-riverside"]

[channels.marketplace]
locations = ["wh-central"]
seller_id = "A1RIVERSIDE"
# webhook_secret = "env:MARKETPLACE_WEBHOOK_SECRET"

[channels.kiosk]
store = "store-downtown"
locations = ["store-downtown", "wh-central", "store-riverside"]

[channels.social]
locations = ["wh-central", "store-downtown"]
# app_secret = "env:META_APP_SECRET"

[channels.voice]
invocation_name = "riverside coffee"
locations = ["store-downtown", "store-riverside", "wh-central"]
"""


EXAMPLE = "data/coffee-shop"


def example_file(name: str) -> str:
    """A file of the coffee-shop example (``examples/coffee-shop`` in the source tree)."""
    return resources.files("omniretail").joinpath(f"{EXAMPLE}/{name}").read_text("utf-8")


def sample_catalog() -> dict[str, Any]:
    text = example_file("catalog.json")
    data: dict[str, Any] = json.loads(text)
    return data


async def load_catalog(kernel: Kernel, data: dict[str, Any], *, actor: str = "init") -> tuple[int, int]:
    """Load ``{"products": [...], "stock": [{sku, location_id, on_hand}]}``; returns counts."""
    drafts = msgspec.convert(data["products"], list[ProductDraft])
    await kernel.catalog.upsert_many(drafts, actor=actor)
    known = {loc.id for loc in kernel.config.locations}
    rows = 0
    for row in data.get("stock", []):
        if row["location_id"] in known and row["on_hand"] > 0:
            await kernel.inventory.set_on_hand(
                row["sku"], row["location_id"], row["on_hand"], reason="initial stock", actor=actor
            )
            rows += 1
    return len(drafts), rows
