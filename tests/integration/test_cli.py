"""The command line: init, config errors (exit 2, one line naming the key), worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omniretail.starter import STARTER_TOML


def omni(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omniretail", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_init_then_publish_in_an_empty_folder(tmp_path: Path) -> None:
    assert omni("init", cwd=tmp_path).returncode == 0
    first = omni("catalog", "publish", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "webshop" in first.stdout and "Publication" in first.stdout
    one = omni("catalog", "publish", "--channel", "webshop", cwd=tmp_path)
    assert one.returncode == 0 and "marketplace" not in one.stdout
    bad = omni("catalog", "publish", "--channel", "nosuch", cwd=tmp_path)
    assert bad.returncode != 0 and "nosuch" in bad.stderr


def test_init_makes_a_working_store_in_an_empty_folder(tmp_path: Path) -> None:
    result = omni("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "omniretail.toml").exists() and (tmp_path / "omniretail.db").exists()
    assert "loaded 6 products" in result.stdout
    channels = omni("channels", cwd=tmp_path)
    assert channels.returncode == 0
    for name in ("webshop", "marketplace", "kiosk", "social", "voice"):
        assert name in channels.stdout
    again = omni("init", cwd=tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr
    worker = omni("worker", "--once", cwd=tmp_path)
    assert worker.returncode == 0 and "delivered" in worker.stdout


@pytest.mark.parametrize(
    ("mutation", "key"),
    [
        ("\n[channels.nosuchchannel]\n", "channels.nosuchchannel"),
        ("\n[gateway]\nport = 99999\n", "gateway.port"),
        ("\n[gateway]\nportt = 1\n", "gateway.portt"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker", "channels"])
def test_config_mistakes_exit_2_naming_the_key(tmp_path: Path, mutation: str, key: str, command: str) -> None:
    (tmp_path / "omniretail.toml").write_text(STARTER_TOML + mutation)
    result = omni(command, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0]
    assert not (tmp_path / "omniretail.db").exists()  # nothing half-started


def test_missing_secret_names_the_key_and_the_variable(tmp_path: Path) -> None:
    toml = STARTER_TOML.replace(
        '# webhook_secret = "env:MARKETPLACE_WEBHOOK_SECRET"', 'webhook_secret = "env:OMNI_CLI_TEST_SECRET"'
    )
    (tmp_path / "omniretail.toml").write_text(toml)
    result = omni("channels", cwd=tmp_path)
    assert result.returncode == 2
    assert "channels.marketplace.webhook_secret" in result.stderr and "OMNI_CLI_TEST_SECRET" in result.stderr
    ok = omni("channels", cwd=tmp_path, env={"OMNI_CLI_TEST_SECRET": "whsec_x"})
    assert ok.returncode == 0, ok.stderr


def test_no_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = omni("--config", str(tmp_path / "missing.toml"), "worker", "--once", cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr
