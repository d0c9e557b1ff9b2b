"""The whole plugin contract: every hook omniretail calls, grouped by lifecycle.

Plugins implement these with ``@omniretail.hookimpl`` and are found through the ``omniretail``
entry-point group (the built-in channels are found the same way). Conventions:

* ``register_<things>(register, ...)``: contribute objects by calling ``register``; the host
  validates them, rejects duplicates and remembers which plugin gave what.
* ``calculate_<thing>`` / ``render_<thing>``: ``firstresult`` unless stated, the first non-None wins.
* ``<noun>_<past participle>``: notifications after a change committed. They may return an
  awaitable; the host awaits it. An exception is logged and retried by the outbox; it never
  undoes the change.

Per-channel hooks (taking ``channel: ChannelContext``) are called only on the plugin that
registered that channel, so an implementation never needs to check ``channel.name`` unless the
plugin provides several channels.

``docs/hooks.md`` documents each hook with its exact signature; ``tests/unit/test_hook_docs.py``
fails when the two drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from omniretail.channel import ChannelContext, PeriodicTask, RegisterChannel
    from omniretail.domain.catalog import Product
    from omniretail.domain.customer import Customer
    from omniretail.domain.events import Event, OrderPlaced, OrderStatusChanged
    from omniretail.kernel import Kernel
    from omniretail.payment import RegisterPaymentProvider
    from omniretail.services.pricing import Offer, PricedCart

hookspec = pluggy.HookspecMarker("omniretail")

# ----------------------------------------------------------------------------------------------
# Declaration: what plugins provide. Called once while the kernel is built.
# ----------------------------------------------------------------------------------------------


@hookspec
def register_channels(register: RegisterChannel) -> None:
    """Declare the channels this plugin provides.

    Called once per kernel, before the configuration's ``[channels.*]`` tables are decoded.
    Call ``register(ChannelSpec(name=..., title=..., settings=MySettings, capabilities=...))`` for
    each channel. A name registered twice stops start-up with a message naming both plugins.
    """


@hookspec
def register_routes(register: Callable[[Any], None], channel: ChannelContext) -> None:
    """Contribute HTTP routes for an enabled channel.

    Called once per enabled channel when the gateway is built. ``register`` takes Litestar route
    handlers, controllers or routers; they are mounted under ``/channels/<name>/`` and share the
    gateway's auth: a request needs a key of this channel (or an admin key) unless the handler
    opts out with ``opt={"public": True}`` (for signed webhooks and public pages).
    """


@hookspec
def register_payment_providers(register: RegisterPaymentProvider) -> None:
    """Declare the payment providers this plugin offers.

    Called once per kernel, before the configuration's ``[payments.*]`` tables are decoded. Call
    ``register(PaymentProviderSpec(name=..., title=..., settings=MySettings, create=...))`` for
    each provider; ``create(context)`` is called once per kernel for each configured provider and
    returns the provider object (async ``authorize``, ``capture``, ``void`` and ``refund``, each
    taking the framework's ``idempotency_key``; see ``omniretail.payment``). A name registered
    twice stops start-up with a message naming both plugins.
    """


# ----------------------------------------------------------------------------------------------
# Calculation: the server computes, plugins contribute.
# ----------------------------------------------------------------------------------------------


@hookspec
def calculate_offers(cart: PricedCart, customer: Customer | None, kernel: Kernel) -> Iterable[Offer] | None:
    """Offers (discounts) that apply to a priced cart.

    Called every time a cart is priced, on every channel alike: the hook is not told the channel,
    so one customer and one cart get one price everywhere. Return offers; every plugin's offers
    are collected, and the kernel caps the total discount at the subtotal. Must be fast and pure:
    no I/O (use data loaded at ``kernel_started``).
    """


@hookspec(firstresult=True)
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    """Render one product as this channel's listing (feed rows, a JSON-LD block, slot values).

    Called by the publication pipeline for each active product and enabled channel, only when
    the product, its stock or the channel's settings changed since the last publish. ``stock``
    maps each of the product's SKUs to its free units at the channel's locations. Return the
    listing (any msgspec-encodable value: the pipeline hashes it and records a change only when
    the bytes differ), or raise ``omniretail.domain.errors.InvalidValue`` naming what is missing
    to reject the product with that reason. Return None if this channel does not list products.
    """


@hookspec
def register_tasks(register: Callable[[PeriodicTask], None], channel: ChannelContext) -> None:
    """Contribute periodic work for an enabled channel (e.g. polling a marketplace for orders).

    Called once per enabled channel when a worker starts. ``register(PeriodicTask(name=...,
    every_seconds=..., run=...))``; ``run(state)`` is an async callable that receives the state
    dict it returned last time (``{}`` at first) and returns the new state (a cursor, say). One
    worker at a time runs a task, however many workers share the database; a failing run is
    retried at the next interval.
    """


# ----------------------------------------------------------------------------------------------
# Notifications: after commit, delivered from the outbox (at least once, in order per worker).
# ----------------------------------------------------------------------------------------------


@hookspec
def kernel_started(kernel: Kernel) -> Awaitable[None] | None:
    """The kernel is up (database migrated, channels configured). Load caches here."""


@hookspec
def event_committed(event: Event, kernel: Kernel) -> Awaitable[None] | None:
    """Any domain event, after its transaction committed. Delivered at least once: use
    ``event.id`` to ignore a repeat."""


@hookspec
def order_placed(event: OrderPlaced, kernel: Kernel) -> Awaitable[None] | None:
    """An order was placed on any channel (``event.channel`` says which)."""


@hookspec
def order_status_changed(event: OrderStatusChanged, kernel: Kernel) -> Awaitable[None] | None:
    """An order moved in its state machine (e.g. a marketplace plugin confirms shipment)."""
