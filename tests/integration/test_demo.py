"""`omniretail demo`: the README's main job, in an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_plays_the_journey_across_all_five_channels(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "omniretail", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for channel in ("voice", "kiosk", "webshop", "marketplace", "social"):
        assert channel in out
    assert "timeline" in out and "order.placed" in out and "cart.handoff_claimed" in out
    assert "order.line_returned" in out and "linked to the same customer" in out
    assert "€7.60" in out  # two lattes at the VIP price, spoken
    assert "Capability matrix" in out and "Sales per channel" in out
    assert list(tmp_path.iterdir()) == []  # it used a temporary folder, and cleaned up
