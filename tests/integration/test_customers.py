from __future__ import annotations

import pytest

from omniretail.domain.customer import Identity, IdentityKind
from omniretail.domain.errors import Conflict, IdentityConflict, InvalidValue, NotFound
from omniretail.domain.events import CustomersMerged
from omniretail.kernel import Kernel
from omniretail.services.customers import AuthenticationFailed
from tests.integration.helpers import buy


def ident(kind: IdentityKind, value: str) -> Identity:
    return Identity(kind=kind, value=value)


async def test_the_same_identity_from_any_channel_is_one_customer(kernel: Kernel) -> None:
    a = await kernel.customers.resolve([ident(IdentityKind.EMAIL, "Ana@Example.com")], channel="webshop", name="Ana")
    b = await kernel.customers.resolve(
        [ident(IdentityKind.EMAIL, "ana@example.com"), ident(IdentityKind.LOYALTY_CARD, "LC-0001")],
        channel="kiosk",
    )
    c = await kernel.customers.resolve([ident(IdentityKind.LOYALTY_CARD, "lc 0001")], channel="voice")
    assert a.id == b.id == c.id and c.name == "Ana"
    assert {i.kind for i in c.identities} == {IdentityKind.EMAIL, IdentityKind.LOYALTY_CARD}
    with pytest.raises(InvalidValue):
        await kernel.customers.resolve([], channel="webshop")


async def test_sign_up_and_sign_in(kernel: Kernel) -> None:
    customer = await kernel.customers.sign_up("bo@example.com", "s3cret-pass", name="Bo", channel="webshop")
    assert (await kernel.customers.authenticate("BO@example.com", "s3cret-pass")).id == customer.id
    for email, password in [
        ("bo@example.com", "wrong-pass"),
        ("nobody@example.com", "s3cret-pass"),
        ("junk", "x"),
    ]:
        with pytest.raises(AuthenticationFailed):
            await kernel.customers.authenticate(email, password)
    with pytest.raises(Conflict):
        await kernel.customers.sign_up("bo@example.com", "another-pass", channel="webshop")
    with pytest.raises(InvalidValue):
        await kernel.customers.sign_up("cy@example.com", "short", channel="webshop")


async def test_linking_someone_elses_identity_is_refused(kernel: Kernel) -> None:
    a = await kernel.customers.resolve([ident(IdentityKind.EMAIL, "a@example.com")], channel="webshop")
    await kernel.customers.resolve([ident(IdentityKind.PHONE, "+15551234567")], channel="voice")
    with pytest.raises(IdentityConflict):
        await kernel.customers.link(a.id, ident(IdentityKind.PHONE, "+1 555 123 4567"), channel="webshop")


async def test_merge_moves_everything_and_is_an_event(stocked: Kernel) -> None:
    web = await buy(stocked, {"ESPRESSO": 1}, email="dana@example.com", channel="webshop")
    kiosk = await buy(stocked, {"CROISSANT": 1}, email="dana.work@example.com", channel="kiosk")
    assert web.customer_id != kiosk.customer_id
    source, target = kiosk.customer_id or "", web.customer_id or ""
    await stocked.customers.set_tier(source, "vip")
    merged = await stocked.customers.merge(source, target)
    assert merged.id == target and merged.tier == "vip"
    assert {i.value for i in merged.identities} == {"dana@example.com", "dana.work@example.com"}
    orders = await stocked.orders.for_customer(target)
    assert {o.id for o in orders} == {web.id, kiosk.id}
    timeline = [e for _, e in await stocked.customers.timeline(target)]
    assert {e.channel for e in timeline} >= {"webshop", "kiosk"}
    assert isinstance(timeline[-1], CustomersMerged) and timeline[-1].orders_moved == 1
    # The old id still resolves, to the survivor.
    assert (await stocked.customers.get(source)).id == target
    with pytest.raises(InvalidValue):
        await stocked.customers.merge(source, target)
    with pytest.raises(NotFound):
        await stocked.customers.get("cus_nobody")


async def test_timeline_filters_by_channel_and_type(stocked: Kernel) -> None:
    order = await buy(stocked, {"ESPRESSO": 1}, email="eve@example.com", channel="voice")
    customer_id = order.customer_id or ""
    only_orders = await stocked.customers.timeline(customer_id, types=["order"])
    assert [e.type for _, e in only_orders] == ["order.placed"]
    voice = await stocked.customers.timeline(customer_id, channels=["voice"])
    assert {e.channel for _, e in voice} == {"voice"}
    assert await stocked.customers.timeline(customer_id, channels=["kiosk"]) == []
