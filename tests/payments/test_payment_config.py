"""``[payments.<name>]``, ``[channels.x] payments`` and ``[loyalty]``: strict, errors name the key,
and the CLI exits with status 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omniretail.config import ConfigError
from omniretail.domain.payment import CaptureMode
from omniretail.kernel import Kernel
from tests.integration.served import omni

CARD = {"base_url": "http://127.0.0.1:9"}


def kernel_for(payments: dict[str, Any], **overrides: Any) -> Kernel:
    data: dict[str, Any] = {
        "database": {"url": "sqlite:///:memory:"},
        "locations": [{"id": "wh", "name": "Warehouse"}],
        "channels": {"webshop": {}},
        "payments": payments,
    }
    data.update(overrides)
    return Kernel.from_config(data, base_dir="/tmp")


@pytest.mark.parametrize(
    ("payments", "overrides", "key", "message"),
    [
        ({"paypal": {}}, {}, "payments.paypal", "unknown payment provider 'paypal' (installed providers: card"),
        ({"card": {**CARD, "capture": "later"}}, {}, "payments.card.capture", "immediate"),
        ({"card": {}}, {}, "payments.card.base_url", "required key is missing"),
        ({"card": {**CARD, "colour": "red"}}, {}, "payments.card.colour", "unknown key"),
        ({"card": {"base_url": "ftp://x"}}, {}, "payments.card.base_url", ""),
        ({"card": {**CARD, "timeout_seconds": 0}}, {}, "payments.card.timeout_seconds", ""),
        ({"card": {**CARD, "api_key": "sk_live_literal"}}, {}, "payments.card.api_key", "env:NAME"),
        ({"card": {**CARD, "enabled": "yes"}}, {}, "payments.card.enabled", "true or false"),
        ({"wallet": {"limit": 5}}, {}, "payments.wallet.limit", "takes no settings"),
        ({"wallet": []}, {}, "payments.wallet", "must be a table"),
        ({"wallet": {}}, {"channels": {"webshop": {"payments": ["card"]}}}, "channels.webshop.payments[0]", "'card'"),
        ({"wallet": {}}, {"channels": {"webshop": {"payments": "wallet"}}}, "channels.webshop.payments", "a list"),
        ({}, {"loyalty": {"points": 1}}, "loyalty.points", "unknown key"),
        ({}, {"loyalty": {"points_per_unit": -1}}, "loyalty.points_per_unit", ""),
        (
            {},
            {"loyalty": {"tiers": [{"name": "vip", "min_spend": 1}, {"name": "vip", "min_spend": 2}]}},
            "loyalty.tiers[1].name",
            "defined twice",
        ),
        ({}, {"loyalty": {"tiers": [{"name": "vip"}]}}, "loyalty.tiers[0].min_spend", "required"),
        ({}, {"worker": {"payment_recovery_seconds": 0}}, "worker.payment_recovery_seconds", ""),
    ],
)
def test_mistakes_name_the_key(payments: dict[str, Any], overrides: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        kernel_for(payments, **overrides)
    assert info.value.key == key
    assert message in info.value.message


def test_a_bad_webhook_secret_stops_start_up_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARD_WHSEC", "not-base64!")
    with pytest.raises(ConfigError) as info:
        kernel_for({"card": {**CARD, "webhook_secret": "env:CARD_WHSEC"}})
    assert info.value.key == "payments.card.webhook_secret"


def test_providers_channels_and_capture_modes() -> None:
    kernel = kernel_for(
        {"wallet": {}, "pickup": {"capture": "immediate"}, "card": {**CARD, "enabled": False}},
        channels={"webshop": {}, "kiosk": {"store": None, "payments": ["pickup"]}},
    )
    assert sorted(kernel.payments.providers) == ["pickup", "wallet"]  # card is off
    assert kernel.payments.providers["pickup"].capture is CaptureMode.IMMEDIATE  # overridden
    assert kernel.payments.providers["wallet"].capture is CaptureMode.IMMEDIATE
    assert kernel.config.channel_payments("webshop") == ("wallet", "pickup")
    assert kernel.config.channel_payments("kiosk") == ("pickup",)


def test_no_payments_table_means_no_providers() -> None:
    kernel = kernel_for({})
    assert kernel.payments.providers == {}


def test_the_cli_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "omniretail.toml").write_text(
        '[database]\nurl = "sqlite:///x.db"\n\n[payments.paypal]\n', encoding="utf-8"
    )
    result = omni("channels", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omniretail: config error: payments.paypal: unknown payment")
