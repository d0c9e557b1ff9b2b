from __future__ import annotations

import msgspec
import pytest

from omniretail.config import ConfigError, Secret, parse_config
from omniretail.host import collect_channels, create_plugin_manager
from omniretail.starter import STARTER_TOML


def installed() -> dict[str, type[msgspec.Struct] | None]:
    return {n: s.settings for n, (s, _) in collect_channels(create_plugin_manager()).items()}


def error_for(data: dict[str, object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, installed())
    return info.value


def test_starter_config_enables_all_five_builtin_channels() -> None:
    import tomllib

    from omniretail.host import collect_payment_providers

    providers = {n: s.settings for n, (s, _) in collect_payment_providers(create_plugin_manager()).items()}
    config = parse_config(tomllib.loads(STARTER_TOML), installed(), payment_settings=providers)
    assert sorted(config.channels) == ["kiosk", "marketplace", "social", "voice", "webshop"]
    assert config.channel_locations("marketplace") == ("wh-central",)
    assert config.location("store-downtown").preparation_minutes == 10  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"channels": {"nosuchchannel": {}}}, "channels.nosuchchannel", "unknown channel"),
        ({"channels": {"webshop": {"colour": "red"}}}, "channels.webshop.colour", "unknown key"),
        ({"channels": {"voice": {"verify_signatures": "yes"}}}, "channels.voice.verify_signatures", "bool"),
        ({"storee": {}}, "storee", "unknown key"),
        ({"store": {"currency": "euro"}}, "store.currency", "regex"),
        ({"gateway": {"port": 70000}}, "gateway.port", "<= 65535"),
        ({"locations": [{"id": "a"}]}, "locations[0].name", "missing"),
        ({"locations": [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]}, "locations[1].id", "twice"),
        ({"channels": {"webshop": {"locations": ["nowhere"]}}}, "channels.webshop.locations[0]", "nowhere"),
        (
            {"channels": {"marketplace": {"webhook_secret": "whsec_literal"}}},
            "channels.marketplace.webhook_secret",
            "env:NAME",
        ),
        (
            {"channels": {"marketplace": {"webhook_secret": "env:OMNI_TEST_MISSING"}}},
            "channels.marketplace.webhook_secret",
            "OMNI_TEST_MISSING is not set",
        ),
        ({"database": {"url": "env:OMNI_TEST_MISSING_DB"}}, "database.url", "OMNI_TEST_MISSING_DB"),
    ],
)
def test_mistakes_name_the_key(data: dict[str, object], key: str, words: str) -> None:
    error = error_for(data)
    assert error.key == key
    assert words in str(error)
    assert str(error).startswith(key)


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_TEST_SECRET", "whsec_abc")
    config = parse_config({"channels": {"marketplace": {"webhook_secret": "env:OMNI_TEST_SECRET"}}}, installed())
    secret = config.channels["marketplace"].settings.webhook_secret
    assert isinstance(secret, Secret) and secret == "whsec_abc"
    assert "whsec_abc" not in repr(config.channels["marketplace"].settings)


def test_disabled_channel_is_known_but_not_enabled() -> None:
    config = parse_config({"channels": {"voice": {"enabled": False}}}, installed())
    assert config.enabled_channels == []
    assert error_for({"channels": {"voice": {"enabled": "no"}}}).key == "channels.voice.enabled"
