"""The example third-party plugin (``examples/chat-commerce``) works as a third party would use it:
installed with pip, it shows up in ``omniretail channels``, and its own test suite, built on the
conformance kit, passes when run on its own (no ``anyio_mode``, no conftest from this repo).

Unless it is already installed in this interpreter (``pip install -e examples/chat-commerce``), the
example is built and installed into a folder of its own that only the subprocesses see (on
``PYTHONPATH``): installing it into the running interpreter would add a channel to every test that
loads the installed plugins after this one (``tests/unit/test_config_docs.py`` among them).
Building it needs the package index (for setuptools), nothing else.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat-commerce"
DISTRIBUTION = "omniretail-chat"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _installed_here() -> bool:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    origin = dist.read_text("direct_url.json") or ""
    return EXAMPLE.as_uri() in origin


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment a subprocess needs to see the installed example."""
    if _installed_here():
        return {}
    work = tmp_path_factory.mktemp("chat-commerce")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".*"))
    site = work / "site"
    result = run("-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(source), cwd=work)
    assert result.returncode == 0, f"pip install {EXAMPLE} failed:\n{result.stdout}\n{result.stderr}"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))}
    where = run("-c", "import omniretail_chat; print(omniretail_chat.__file__)", cwd=work, env=env)
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    return env


def test_the_installed_plugin_is_listed_by_omniretail_channels(installed: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "omniretail.toml").write_text(
        textwrap.dedent(
            """
            [store]
            name = "Chat test"

            [[locations]]
            id = "store-downtown"
            name = "Downtown store"
            kind = "store"
            pickup = true

            [channels.chat]
            webhook_secret = "env:EXAMPLE_CHAT_SECRET"
            pickup_location = "store-downtown"
            """
        )
    )
    env = {**installed, "EXAMPLE_CHAT_SECRET": "s3cret-for-the-test"}
    result = run("-m", "omniretail", "channels", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    row = next((line for line in result.stdout.splitlines() if " chat " in line), "")
    assert "Chat commerce" in row and "yes" in row, result.stdout


def test_the_example_test_suite_passes_on_its_own(installed: dict[str, str]) -> None:
    result = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=EXAMPLE, env=installed)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout and " failed" not in result.stdout
