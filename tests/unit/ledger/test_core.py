"""The ledger's pure core: amounts, the exchange calendar, and the entries of each operation."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import rules
from ledger.calendar import ExchangeCalendar, nyse_holidays
from ledger.errors import InsufficientFundsError, InvalidAmountError, UnbalancedTransactionError
from ledger.money import USD, Asset, format_usd, parse_usd
from ledger.rules import AccountKind, AssetBalances, Posting, Side

AAPL = Asset("AAPL")
CAL = ExchangeCalendar()


def totals(postings: list[Posting]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in postings:
        out[p.asset] = out.get(p.asset, 0) + p.amount
    return out


@pytest.mark.parametrize(
    ("value", "cents"),
    [("12.34", 1234), ("0.01", 1), (5, 500), (Decimal("7.5"), 750), (" 100 ", 10000)],
)
def test_usd_amounts_parse_to_exact_cents(value, cents):
    """Decimal strings, ints and Decimals become integer cents exactly."""
    assert parse_usd("amount", value) == cents


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (12.5, 'send a decimal string such as "12.34", not a float'),
        ("1.234", "at most two decimal places for USD"),
        ("0", "must be positive"),
        ("-3", "must be positive"),
        ("abc", "not a decimal number"),
        ("NaN", "must be a finite number"),
        ("1000000000.01", "at most 1000000000.00 per operation"),
        (None, "expected a decimal string or an integer"),
    ],
)
def test_bad_usd_amounts_are_refused_naming_the_field_and_the_reason(value, reason):
    """Floats, sub-cent, non-positive, non-numeric and huge amounts are refused."""
    with pytest.raises(InvalidAmountError) as caught:
        parse_usd("amount", value)
    assert (caught.value.field, caught.value.reason) == ("amount", reason)
    assert str(caught.value).startswith(f"amount={value!r} is invalid: ")


def test_cents_format_with_two_decimals_and_sign():
    """123456 → 1234.56, 5 → 0.05, -5 → -0.05."""
    assert [format_usd(c) for c in (123456, 5, -5, 0)] == ["1234.56", "0.05", "-0.05", "0.00"]


def test_nyse_holidays_of_2025_are_the_published_ones():
    """2025: the ten rule holidays plus the Carter day of mourning on 9 January."""
    assert sorted(nyse_holidays(2025)) == [
        date(2025, 1, 1),
        date(2025, 1, 9),
        date(2025, 1, 20),
        date(2025, 2, 17),
        date(2025, 4, 18),
        date(2025, 5, 26),
        date(2025, 6, 19),
        date(2025, 7, 4),
        date(2025, 9, 1),
        date(2025, 11, 27),
        date(2025, 12, 25),
    ]


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2024, {date(2024, 3, 29), date(2024, 6, 19), date(2024, 7, 4), date(2024, 12, 25)}),
        (2026, {date(2026, 4, 3), date(2026, 7, 3), date(2026, 6, 19), date(2026, 1, 1)}),
        (2027, {date(2027, 3, 26), date(2027, 6, 18), date(2027, 7, 5), date(2027, 12, 24)}),
    ],
)
def test_observed_holidays_move_off_weekends(year, expected):
    """Good Friday by Easter; Saturday holidays on Friday, Sunday ones on Monday."""
    assert expected <= nyse_holidays(year)
    assert len(nyse_holidays(year)) == 10


def test_new_year_on_a_saturday_is_not_observed_on_the_friday_before():
    """1 Jan 2028 is a Saturday: 31 Dec 2027 stays a business day."""
    assert CAL.is_business_day(date(2027, 12, 31))


@pytest.mark.parametrize(
    ("trade", "settles"),
    [
        (date(2025, 6, 13), date(2025, 6, 16)),  # Friday -> Monday
        (date(2025, 7, 3), date(2025, 7, 7)),  # Thursday before Independence Day
        (date(2025, 4, 17), date(2025, 4, 21)),  # Thursday before Good Friday
        (date(2025, 11, 26), date(2025, 11, 28)),  # Wednesday before Thanksgiving
        (date(2025, 6, 14), date(2025, 6, 17)),  # Saturday trades Monday, settles Tuesday
        (date(2025, 6, 10), date(2025, 6, 11)),  # plain Tuesday
    ],
)
def test_settlement_is_one_business_day_after_the_trade_date(trade, settles):
    """T+1 skips weekends and exchange holidays."""
    assert CAL.settlement_date(trade) == settles


def test_buying_power_and_withdrawable_follow_their_definitions():
    """$100 settled, $30 unsettled, $120 held: buying power 10, withdrawable 0; $50 held: 50."""
    assert (
        AssetBalances(10000, 3000, 12000).buying_power,
        AssetBalances(10000, 3000, 12000).withdrawable,
    ) == (1000, 0)
    assert AssetBalances(10000, 3000, 5000).withdrawable == 5000


def test_a_hold_beyond_buying_power_is_refused_with_insufficient_buying_power():
    """$100 of buying power cannot hold $100.01."""
    with pytest.raises(InsufficientFundsError, match="insufficient buying power") as caught:
        rules.hold(7, USD, AssetBalances(10000, 0, 0), 10001)
    assert (caught.value.account_id, caught.value.needed, caught.value.available) == (
        7,
        10001,
        10000,
    )


def test_a_buy_fill_consumes_its_hold_and_pays_settled_cash_first():
    """$50 held for 10 @ $4.90 + $0.10 fee: the hold gives back $50, $49.10 leaves settled cash
    ($40) then unsettled ($9.10), ten shares land unsettled."""
    plan = rules.fill(
        1, symbol=AAPL, side=Side.BUY, quantity=10, price_cents=490, fee_cents=10,
        cash=AssetBalances(4000, 5000, 5000), position=AssetBalances(), hold_remaining=5000,
    )  # fmt: skip
    assert plan.hold_consumed == 4910
    assert set(plan.postings) == {
        Posting(USD, AccountKind.CASH_HELD, -4910),
        Posting(USD, AccountKind.BROKER_HOLDS, 4910),
        Posting(USD, AccountKind.CASH_SETTLED, -4000),
        Posting(USD, AccountKind.CASH_UNSETTLED, -910),
        Posting(USD, AccountKind.BROKER_STREET, 4900),
        Posting(USD, AccountKind.BROKER_FEES, 10),
        Posting(AAPL, AccountKind.BROKER_STREET, -10),
        Posting(AAPL, AccountKind.POSITION_UNSETTLED, 10),
    }


def test_a_sell_fill_credits_net_proceeds_to_unsettled_cash():
    """Selling 5 @ $6.00 with a $0.01 fee: 5 settled shares out, $29.99 unsettled cash in."""
    plan = rules.fill(
        1, symbol=AAPL, side=Side.SELL, quantity=5, price_cents=600, fee_cents=1,
        cash=AssetBalances(), position=AssetBalances(10, 0, 0), hold_remaining=0,
    )  # fmt: skip
    assert totals(plan.postings) == {"USD": 0, "AAPL": 0}
    assert Posting(USD, AccountKind.CASH_UNSETTLED, 2999) in plan.postings
    assert Posting(AAPL, AccountKind.POSITION_SETTLED, -5) in plan.postings


def test_settlement_moves_only_what_remains_unsettled():
    """A sale credited $30 unsettled but $10 was spent since: $20 moves to settled."""
    credited = [Posting(USD, AccountKind.CASH_UNSETTLED, 3000)]
    assert rules.settlement(credited, {USD: 2000}) == [
        Posting(USD, AccountKind.CASH_UNSETTLED, -2000),
        Posting(USD, AccountKind.CASH_SETTLED, 2000),
    ]
    assert rules.settlement(credited, {USD: 0}) == []


def test_an_unbalanced_posting_list_is_refused_naming_the_asset():
    """Entries of AAPL summing to 3 raise with asset and total."""
    with pytest.raises(UnbalancedTransactionError, match="entries of asset AAPL sum to 3, not 0"):
        rules.check_balanced([Posting(AAPL, AccountKind.POSITION_SETTLED, 3)])


@given(
    settled=st.integers(0, 10**9),
    unsettled=st.integers(0, 10**9),
    held_percent=st.integers(0, 100),
    quantity=st.integers(1, 1000),
    price=st.integers(1, 100_000),
    fee=st.integers(0, 1000),
    side=st.sampled_from(Side),
)
def test_every_fill_balances_per_asset_and_never_overdraws(
    settled, unsettled, held_percent, quantity, price, fee, side
):
    """Property: a fill either is refused or sums to zero per asset and leaves no user
    account negative."""
    held = (settled + unsettled) * held_percent // 100
    bal = AssetBalances(settled, unsettled, held)
    try:
        plan = rules.fill(
            1, symbol=AAPL, side=side, quantity=quantity, price_cents=price, fee_cents=fee,
            cash=bal, position=bal, hold_remaining=held,
        )  # fmt: skip
    except (InsufficientFundsError, InvalidAmountError):
        return
    assert set(totals(plan.postings).values()) == {0}
    after = {
        (USD, k): v for k, v in zip(rules.USER_CASH_KINDS, (settled, unsettled, held), strict=True)
    }
    after |= {
        (AAPL, k): v
        for k, v in zip(rules.USER_POSITION_KINDS, (settled, unsettled, held), strict=True)
    }
    for p in plan.postings:
        if p.kind.is_user:
            after[(p.asset, p.kind)] += p.amount
    assert min(after.values()) >= 0


def test_jsonb_text_orders_keys_and_escapes_as_postgresql_prints_jsonb():
    """Keys by UTF-8 length then bytes, ', ' and ': ' separators, PostgreSQL's string escapes:
    the text `SELECT '<doc>'::jsonb::text` prints for the same document."""
    from ledger.audit import jsonb_text

    document = {"seq": 12, "id": 'a"b\\c\n\x01é€', "kind": None, "x": True, "aa": {"b": 1, "a": []}}
    assert jsonb_text(document) == (
        '{"x": true, "aa": {"a": [], "b": 1}, "id": "a\\"b\\\\c\\n\\u0001é€", "seq": 12,'
        ' "kind": null}'
    )


def test_hash_form_3_lays_out_binary_fields_json_text_and_entries_in_the_given_order():
    """Form 3 (migration 0010): the id's 16 bytes, user, sequence and microseconds since
    2000-01-01 UTC as big-endian int64s, a settlement-date flag and day count, the JSON text
    of kind, key and metadata, then each entry as it is given (not sorted)."""
    from datetime import UTC, datetime
    from uuid import UUID

    from ledger.audit import canonical_content

    content = canonical_content(
        transaction_id=UUID(int=1),
        user_id=7,
        chain_seq=2,
        kind="fill",
        idempotency_key='k"',
        effective_at=datetime(2000, 1, 1, 0, 0, 1, 5, tzinfo=UTC),
        settlement_date=date(2000, 1, 3),
        metadata={"side": "buy", "qty": 2},
        entries=[(9, "USD", -5), (3, "USD", 5)],
        form=3,
    )
    assert content == (
        bytes(15) + b"\x01"
        + (7).to_bytes(8, "big") + (2).to_bytes(8, "big") + (1_000_005).to_bytes(8, "big")
        + b"\x01" + (2).to_bytes(4, "big")
        + b'["fill","k\\"",{"qty": 2, "side": "buy"}]'
        + (9).to_bytes(8, "big") + (-5).to_bytes(8, "big", signed=True) + b'"USD"'
        + (3).to_bytes(8, "big") + (5).to_bytes(8, "big") + b'"USD"'
    )  # fmt: skip
    no_date = canonical_content(
        transaction_id=UUID(int=1), user_id=7, chain_seq=2, kind="fill", idempotency_key=None,
        effective_at=datetime(2000, 1, 1, 0, 0, 1, 5, tzinfo=UTC), settlement_date=None,
        metadata={}, entries=[], form=3,
    )  # fmt: skip
    assert no_date[40:] == b'\x00["fill",null,{}]'
