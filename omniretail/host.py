"""The plugin host: one pluggy PluginManager per kernel, never a module global.

Plugins come from the ``omniretail`` entry-point group (built-in channels included) plus any
objects passed in (tests, embedding applications). ``check_pending()`` runs after loading, so a
hook implementation whose name is misspelt stops start-up instead of being silently ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import pluggy

from omniretail import hookspecs
from omniretail.channel import ChannelSpec
from omniretail.config import ConfigError
from omniretail.payment import PaymentProviderSpec

ENTRY_POINT_GROUP = "omniretail"


class PluginError(Exception):
    """A plugin broke the contract (duplicate channel, bad registration, unknown hook)."""


def create_plugin_manager(
    plugins: Iterable[Any] = (), *, entry_points: bool = True, blocked: Sequence[str] = ()
) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("omniretail")
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    try:
        if entry_points:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for plugin in plugins:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from None
    return pm


def plugin_name(pm: pluggy.PluginManager, plugin: Any) -> str:
    return pm.get_name(plugin) or str(getattr(plugin, "__name__", repr(plugin)))


def collect_channels(pm: pluggy.PluginManager) -> dict[str, tuple[ChannelSpec, Any]]:
    """Every channel the loaded plugins declare, with the plugin object that declared it."""
    found: dict[str, tuple[ChannelSpec, Any]] = {}
    for impl in pm.hook.register_channels.get_hookimpls():

        def register(spec: ChannelSpec, _plugin: Any = impl.plugin) -> None:
            if not isinstance(spec, ChannelSpec):
                raise PluginError(f"{plugin_name(pm, _plugin)}: register() takes a ChannelSpec")
            if spec.name in found:
                first = plugin_name(pm, found[spec.name][1])
                raise ConfigError(
                    f"channels.{spec.name}",
                    f"channel registered twice, by {first} and {plugin_name(pm, _plugin)}",
                )
            found[spec.name] = (spec, _plugin)

        impl.function(*[{"register": register}[arg] for arg in impl.argnames])
    return found


def collect_payment_providers(pm: pluggy.PluginManager) -> dict[str, tuple[PaymentProviderSpec, Any]]:
    """Every payment provider the loaded plugins declare, with the plugin that declared it."""
    found: dict[str, tuple[PaymentProviderSpec, Any]] = {}
    for impl in pm.hook.register_payment_providers.get_hookimpls():

        def register(spec: PaymentProviderSpec, _plugin: Any = impl.plugin) -> None:
            if not isinstance(spec, PaymentProviderSpec):
                raise PluginError(f"{plugin_name(pm, _plugin)}: register() takes a PaymentProviderSpec")
            if spec.name in found:
                first = plugin_name(pm, found[spec.name][1])
                raise ConfigError(
                    f"payments.{spec.name}",
                    f"payment provider registered twice, by {first} and {plugin_name(pm, _plugin)}",
                )
            found[spec.name] = (spec, _plugin)

        impl.function(*[{"register": register}[arg] for arg in impl.argnames])
    return found


def channel_hook(pm: pluggy.PluginManager, name: str, plugin: Any) -> Any:
    """A caller for hook ``name`` that reaches only ``plugin`` (per-channel hooks)."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(name, remove_plugins=others)


async def call_notification(hook: Any, **kwargs: Any) -> None:
    """Call a notification hook and await whatever awaitables the implementations return."""
    for result in hook(**kwargs):
        if inspect.isawaitable(result):
            await result
