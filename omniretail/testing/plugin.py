"""The omniretail pytest plugin: fixtures for any plugin's test suite.

Loaded automatically wherever omniretail is installed (entry point group ``pytest11``; with
autoloading disabled: ``pytest -p anyio -p omniretail.testing.plugin``). All fixtures are prefixed
``omniretail_`` so they never shadow a project's own:

* ``omniretail_store``: a ``Store``: the started kernel over SQLite in ``tmp_path``, the sample
  catalog with its stock at ``wh-central``, ``store-downtown`` and ``store-riverside``, the gateway
  app, an httpx client on it and ``keys`` (a storefront key per enabled channel and ``"admin"``);
* ``omniretail_kernel``, ``omniretail_client``, ``omniretail_keys``: its parts;
* ``omniretail_channels`` (override it to choose the enabled channels and their settings; default:
  the starter configuration's tables of the installed built-in channels), ``omniretail_plugins``
  (plugin objects to register besides the entry points), ``omniretail_clock`` (a ``FakeClock``);
* ``anyio_backend``: ``"asyncio"`` unless the project defines its own.

Heavy imports happen inside the fixtures, so loading the plugin costs a pytest run nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Plain asserts in the kit report the values they compared, as in a test module.
pytest.register_assert_rewrite(
    "omniretail.testing.conformance", "omniretail.testing.context", "omniretail.testing.store"
)

if TYPE_CHECKING:
    import httpx

    from omniretail.kernel import Kernel
    from omniretail.services.clock import FakeClock
    from omniretail.testing.store import Store, StoreTemplate


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("omniretail.testing.backend")


@pytest.fixture(scope="session")
def omniretail_template(tmp_path_factory: pytest.TempPathFactory) -> StoreTemplate:
    """The database every store starts from (made once per session, on first use)."""
    from omniretail.testing.store import StoreTemplate

    return StoreTemplate(tmp_path_factory.mktemp("omniretail-template"))


@pytest.fixture
def omniretail_channels() -> Mapping[str, Mapping[str, Any]] | None:
    """The ``[channels.*]`` tables to enable; None: the starter's tables of the installed
    built-in channels."""
    return None


@pytest.fixture
def omniretail_plugins() -> Sequence[Any]:
    """Plugin objects to register besides the ``omniretail`` entry points."""
    return ()


@pytest.fixture
def omniretail_clock() -> FakeClock:
    from datetime import UTC, datetime

    from omniretail.services.clock import FakeClock

    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def omniretail_store(
    tmp_path: Path,
    omniretail_template: StoreTemplate,
    omniretail_channels: Mapping[str, Mapping[str, Any]] | None,
    omniretail_plugins: Sequence[Any],
    omniretail_clock: FakeClock,
) -> AsyncIterator[Store]:
    from omniretail.testing.store import open_store

    async with open_store(
        tmp_path,
        channels=omniretail_channels,
        plugins=omniretail_plugins,
        clock=omniretail_clock,
        template=omniretail_template,
    ) as store:
        yield store


@pytest.fixture
def omniretail_kernel(omniretail_store: Store) -> Kernel:
    return omniretail_store.kernel


@pytest.fixture
def omniretail_client(omniretail_store: Store) -> httpx.AsyncClient:
    return omniretail_store.client


@pytest.fixture
def omniretail_keys(omniretail_store: Store) -> dict[str, str]:
    return omniretail_store.keys
