from __future__ import annotations

import itertools
from datetime import UTC, datetime

import msgspec
import pytest

from omniretail.domain import (
    CartLine,
    CurrencyMismatch,
    Fulfilment,
    IllegalTransition,
    InvalidValue,
    Money,
    OrderStatus,
    Price,
    Product,
    Variant,
)
from omniretail.domain.cart import merge_lines, set_line
from omniretail.domain.catalog import gtin_is_valid
from omniretail.domain.customer import IdentityKind, normalize_identity
from omniretail.domain.events import OrderPlaced, decode_event, encode_event
from omniretail.domain.ids import new_id, new_order_number, normalize_code
from omniretail.domain.order import FULFILMENT_ONLY, TRANSITIONS, check_transition


def test_money_formats_for_feeds_and_refuses_mixed_currencies() -> None:
    assert Money(amount=1500, currency="USD").feed_string() == "15.00 USD"
    assert Money(amount=5, currency="EUR").decimal_string() == "0.05"
    assert Money(amount=1500, currency="JPY").feed_string() == "1500 JPY"
    assert Money(amount=1234, currency="KWD").decimal_string() == "1.234"
    assert (Money(amount=1, currency="EUR") + Money(amount=2, currency="EUR")).amount == 3
    with pytest.raises(CurrencyMismatch):
        Money(amount=1, currency="EUR") + Money(amount=1, currency="USD")
    with pytest.raises(InvalidValue):
        Money(amount=1, currency="eur")


def test_money_has_no_float_path() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"amount": 1.5, "currency": "EUR"}, Money)


def test_gtin_check_digit() -> None:
    assert gtin_is_valid("4006381333931")
    assert not gtin_is_valid("4006381333932")
    assert not gtin_is_valid("abc")
    with pytest.raises(InvalidValue, match="check digit"):
        Variant(sku="A", gtin="4006381333932")


def test_product_invariants() -> None:
    price = Price(amount=100, currency="EUR")
    with pytest.raises(InvalidValue, match="no variants"):
        Product(id="p", handle="p", title="P")
    with pytest.raises(InvalidValue, match="repeats a SKU"):
        Product(id="p", handle="p", title="P", variants=(Variant(sku="A", prices=(price,)),) * 2)
    with pytest.raises(InvalidValue, match="two prices"):
        Variant(sku="A", prices=(price, price))


def test_tier_price_falls_back_to_base_price() -> None:
    v = Variant(sku="A", prices=(Price(amount=450, currency="EUR"), Price(amount=380, currency="EUR", tier="vip")))
    assert v.price_for("EUR").amount == 450  # type: ignore[union-attr]
    assert v.price_for("EUR", "vip").amount == 380  # type: ignore[union-attr]
    assert v.price_for("EUR", "gold").amount == 450  # type: ignore[union-attr]
    assert v.price_for("USD") is None


def test_state_machine_allows_exactly_the_table() -> None:
    """Every (from, to, fulfilment) triple either is in the table or raises IllegalTransition."""
    allowed = 0
    for current, target, fulfilment in itertools.product(OrderStatus, OrderStatus, Fulfilment):
        in_table = target in TRANSITIONS[current] and fulfilment in FULFILMENT_ONLY.get(target, set(Fulfilment))
        if current is OrderStatus.PLACED and target is OrderStatus.COLLECTED and fulfilment is not Fulfilment.CARRY_OUT:
            in_table = False
        if in_table:
            check_transition(current, target, fulfilment)
            allowed += 1
        else:
            with pytest.raises(IllegalTransition):
                check_transition(current, target, fulfilment)
    assert allowed > 10


@pytest.mark.parametrize(
    ("current", "target", "fulfilment"),
    [
        ("shipped", "placed", "ship"),
        ("cancelled", "paid", "ship"),
        ("paid", "shipped", "pickup"),  # a pickup order is not shipped
        ("paid", "ready_for_pickup", "ship"),
        ("placed", "collected", "pickup"),  # made ready first
        ("returned", "shipped", "ship"),
    ],
)
def test_illegal_transitions_name_the_states(current: str, target: str, fulfilment: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(OrderStatus(current), OrderStatus(target), Fulfilment(fulfilment))
    assert current in str(info.value) and target in str(info.value)


def test_cart_lines_set_and_merge_without_doubling() -> None:
    lines = set_line((), "A", 2)
    lines = set_line(lines, "B", 1)
    lines = set_line(lines, "A", 3)
    assert lines == (CartLine(sku="A", quantity=3), CartLine(sku="B", quantity=1))
    assert set_line(lines, "A", 0) == (CartLine(sku="B", quantity=1),)
    merged = merge_lines(lines, (CartLine(sku="A", quantity=1), CartLine(sku="C", quantity=4)))
    assert merged == (
        CartLine(sku="A", quantity=3),
        CartLine(sku="B", quantity=1),
        CartLine(sku="C", quantity=4),
    )
    with pytest.raises(InvalidValue):
        set_line(lines, "A", -1)


def test_identities_normalise_so_channels_agree() -> None:
    assert normalize_identity(IdentityKind.EMAIL, " Ana@Example.COM ") == "ana@example.com"
    assert normalize_identity(IdentityKind.PHONE, "+353 (86) 123-4567") == "+353861234567"
    assert normalize_identity(IdentityKind.PHONE, "00353861234567") == "+353861234567"
    assert normalize_identity(IdentityKind.SOCIAL_HANDLE, "@Ana.Coffee") == "ana.coffee"
    assert normalize_identity(IdentityKind.LOYALTY_CARD, "lc-1234 5678") == "LC12345678"
    for kind, bad in [
        (IdentityKind.EMAIL, "not-an-email"),
        (IdentityKind.PHONE, "call me"),
        (IdentityKind.EMAIL, " "),
    ]:
        with pytest.raises(InvalidValue):
            normalize_identity(kind, bad)


def test_events_round_trip_with_stable_tags() -> None:
    event = OrderPlaced(
        id="evt_1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        channel="voice",
        order_id="ord_1",
        number="ABCD-EFGH",
        total=900,
        currency="EUR",
        fulfilment="pickup",
        journey=("voice", "kiosk"),
    )
    data = encode_event(event)
    assert b'"type":"order.placed"' in data
    assert decode_event(data) == event
    assert event.subject == {"order_id": "ord_1"}


def crockford(value: int, digits: int) -> str:
    """The reference: ``value`` as ``digits`` Crockford base32 digits, most significant first."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(digits)))


def test_an_id_is_its_millisecond_then_80_random_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    import omniretail.domain.ids as ids

    randomness = iter([bytes(range(1, 11)), b"\xff" * 10, b"\x00" * 10])
    monkeypatch.setattr(ids.secrets, "token_bytes", lambda n: next(randomness))
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_123 * 1_000_000 + 999_999)
    first = new_id("Cart")
    expected = crockford(1_700_000_000_123, 10) + crockford(int.from_bytes(bytes(range(1, 11)), "big"), 16)
    assert first == f"cart_{expected}"
    late = new_id("cart")  # the most random bits at this millisecond...
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_124 * 1_000_000)
    assert late < new_id("cart")  # ...sort before the fewest at the next


def test_ids_sort_by_time_and_codes_normalise() -> None:
    a, b = new_id("ord"), new_id("ord")
    assert a.startswith("ord_") and len(a) == 30 and a != b
    number = new_order_number()
    assert len(number) == 9 and number[4] == "-"
    assert normalize_code("ab-c1 o") == "ABC10"
