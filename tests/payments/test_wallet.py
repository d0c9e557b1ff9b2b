"""The wallet never goes negative, whatever the concurrency, on SQLite and PostgreSQL.

100 concurrent payments against a balance that covers 40: exactly 40 succeed and the balance ends
at 0. A control runs the naive read-modify-write under the same load and shows it overspends, so
the real test can fail.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, update

from omniretail.domain.errors import InvalidValue
from omniretail.domain.order import OrderStatus
from omniretail.domain.payment import InsufficientFunds, LedgerKind, PaymentDeclined
from omniretail.kernel import Kernel
from omniretail.storage import tables as t
from tests.payments.conftest import cart_with, free_units, pay

ATTEMPTS = 100
COVERED = 40
PRICE = 100


async def funded_customer(kernel: Kernel, balance: int, email: str = "wally@example.com") -> str:
    customer = await kernel.customers.sign_up(email, "pass-word-1", channel="webshop")
    await kernel.loyalty.credit(
        customer.id, balance, kind=LedgerKind.TOP_UP, reference=f"top:{email}", channel="admin", actor="staff"
    )
    return customer.id


async def test_concurrent_wallet_payments_never_overspend(shop: Kernel) -> None:
    customer_id = await funded_customer(shop, COVERED * PRICE)

    async def attempt(i: int) -> bool:
        try:
            await shop.loyalty.debit(customer_id, PRICE, reference=f"pay-{i}", channel="kiosk", actor="customer")
        except InsufficientFunds:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(ATTEMPTS)))
    assert sum(results) == COVERED
    wallet = await shop.loyalty.wallet(customer_id)
    assert wallet.balance == 0
    async with shop.db.read() as conn:
        lg = t.wallet_ledger
        total = await conn.scalar(select(func.sum(lg.c.amount)).where(lg.c.customer_id == customer_id))
        pays = await conn.scalar(select(func.count()).select_from(lg).where(lg.c.kind == "pay"))
        lowest = await conn.scalar(select(func.min(lg.c.balance_after)).where(lg.c.customer_id == customer_id))
    assert (total, pays, lowest) == (0, COVERED, 0)  # the ledger adds up to the balance, never below 0


async def test_concurrent_wallet_checkouts_sell_exactly_what_the_balance_covers(shop: Kernel) -> None:
    customer_id = await funded_customer(shop, COVERED * 1250)
    carts = [await cart_with(shop, {"MUG-1": 1}, customer_id=customer_id) for _ in range(ATTEMPTS)]

    async def attempt(i: int) -> str:
        channel = ("webshop", "kiosk", "voice")[i % 3]
        try:
            await pay(shop, carts[i], "wallet", customer_id=customer_id, key=f"k-{i}", channel=channel)
        except PaymentDeclined:
            return "declined"
        return "paid"

    results = await asyncio.gather(*(attempt(i) for i in range(ATTEMPTS)))
    assert results.count("paid") == COVERED and results.count("declined") == ATTEMPTS - COVERED
    assert (await shop.loyalty.wallet(customer_id)).balance == 0
    orders = await shop.orders.for_customer(customer_id, limit=200)
    assert len(orders) == COVERED and all(o.status is OrderStatus.PAID for o in orders)
    assert await free_units(shop, "MUG-1") == 100 - COVERED  # declined holds all released
    level = (await shop.inventory.levels(["MUG-1"], ["wh"]))[0]
    assert (level.on_hand, level.reserved) == (100 - COVERED, 0)


async def naive_debit(kernel: Kernel, customer_id: str, amount: int) -> bool:
    """The broken way: read the balance, decide in Python, write the new value back."""
    w = t.wallets
    async with kernel.db.read() as conn:
        balance = await conn.scalar(select(w.c.balance).where(w.c.customer_id == customer_id))
    await asyncio.sleep(0)  # other requests run here, as they would between two statements
    if balance is None or balance < amount:
        return False
    async with kernel.db.write() as conn:
        await conn.execute(update(w).where(w.c.customer_id == customer_id).values(balance=balance - amount))
    return True


async def test_control_naive_read_modify_write_overspends(shop: Kernel) -> None:
    customer_id = await funded_customer(shop, COVERED * PRICE)
    results = await asyncio.gather(*(naive_debit(shop, customer_id, PRICE) for _ in range(ATTEMPTS)))
    # Lost updates: far more "payments" than the balance covers.
    assert sum(results) > COVERED


async def test_a_repeated_reference_debits_once(shop: Kernel) -> None:
    customer_id = await funded_customer(shop, 1000)
    entries = await asyncio.gather(
        *(
            shop.loyalty.debit(customer_id, 300, reference="same", channel="webshop", actor="customer")
            for _ in range(10)
        )
    )
    assert len({e.seq for e in entries}) == 1
    assert (await shop.loyalty.wallet(customer_id)).balance == 700


@pytest.mark.parametrize("amount", [0, -5, 10**9])
async def test_bad_amounts_are_refused(shop: Kernel, amount: int) -> None:
    customer_id = await funded_customer(shop, 1000)
    with pytest.raises(InvalidValue):
        await shop.loyalty.debit(customer_id, amount, reference="x", channel="webshop", actor="customer")
    with pytest.raises(InvalidValue):
        await shop.loyalty.credit(customer_id, amount, kind=LedgerKind.TOP_UP, reference="y", channel="a", actor="s")
    assert (await shop.loyalty.wallet(customer_id)).balance == 1000


async def test_the_balance_cannot_go_negative_even_by_hand(shop: Kernel) -> None:
    customer_id = await funded_customer(shop, 10)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):  # the CHECK constraint backs the conditional UPDATE
        async with shop.db.write() as conn:
            await conn.execute(update(t.wallets).where(t.wallets.c.customer_id == customer_id).values(balance=-1))
    assert (await shop.loyalty.wallet(customer_id)).balance == 10


async def test_merging_two_records_keeps_the_money(shop: Kernel) -> None:
    source = await funded_customer(shop, 700, email="old@example.com")
    target = await funded_customer(shop, 300, email="new@example.com")
    merged = await shop.customers.merge(source, target, actor="staff", channel="admin")
    assert merged.id == target
    assert (await shop.loyalty.wallet(target)).balance == 1000
    assert (await shop.loyalty.wallet(source)).balance == 0
    notes = [(e.kind, e.amount) for e in await shop.loyalty.ledger(target)]
    assert notes[0] == (LedgerKind.ADJUSTMENT, 700)
    # Paying with the old record's id now reaches the surviving wallet.
    await shop.loyalty.debit(source, 1000, reference="after-merge", channel="kiosk", actor="customer")
    assert (await shop.loyalty.wallet(target)).balance == 0
