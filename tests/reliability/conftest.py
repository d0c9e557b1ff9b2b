"""The reliability suite (issue #8): oversell across processes, idempotency storms, crashes, the
outbox under a flaky receiver, a stateful model of stock, API fuzzing and attacks.

Tests marked ``heavy`` are the full-size variants. They are deselected unless the ``-m`` option
names them (``python -m pytest tests/reliability -m heavy``), so the default run (CI:
``python -m pytest``) stays within its time budget."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "heavy" in (config.getoption("-m") or ""):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy") is not None]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if item.get_closest_marker("heavy") is None]
