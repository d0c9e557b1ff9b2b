"""Every curl example in docs/gateway.md runs against a served gateway and prints what it says."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.served import init_store, new_key, serve

DOC = Path(__file__).parents[2] / "docs" / "gateway.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def examples(text: str) -> list[tuple[str, str]]:
    """(script, expected output) for every bash block that ends with a ``# expect:`` line."""
    found = []
    for block in BLOCK.findall(text):
        lines = block.rstrip("\n").splitlines()
        if lines and lines[-1].startswith("# expect: "):
            found.append(("\n".join(lines[:-1]), lines[-1].removeprefix("# expect: ")))
    return found


def test_the_guide_has_examples_for_each_topic() -> None:
    text = DOC.read_text()
    assert len(examples(text)) >= 8
    for topic in ("## Authentication", "## Pagination", "## Idempotency", "## Errors"):
        assert topic in text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_example_prints_what_the_guide_says(tmp_path: Path, backend: str) -> None:
    init_store(tmp_path)
    env = {**os.environ, "KEY": new_key(tmp_path, "webshop"), "ADMIN": new_key(tmp_path, "admin")}
    failures = []
    with serve(tmp_path) as base:
        env["BASE"] = base
        for script, expected in examples(DOC.read_text()):
            result = subprocess.run(
                ["bash", "-c", "set -o pipefail\n" + script],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            if result.stdout.strip() != expected:
                failures.append(f"{script}\n  expected {expected!r}, got {result.stdout.strip()!r} {result.stderr}")
    assert failures == []


def test_the_checker_catches_a_wrong_expectation() -> None:
    doc = "```bash\necho 41\n# expect: 42\n```\n"
    script, expected = examples(doc)[0]
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert out != expected
