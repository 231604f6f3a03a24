"""The client's per-operation shortcuts give exactly what the generic code gave.

A request's hash is stored with its idempotency key and compared on every replay, so the hash
of a request must never change: the hashes built without json's encoder are compared with the
implementation they replaced, kept here, over generated requests. Receipts read from jsonb
text by a pattern are compared with ``json.loads`` + ``Receipt.from_json``; the memoized fill
dates with the calendar's own rules.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger import journal
from ledger.calendar import ExchangeCalendar
from ledger.rules import Side, TransactionKind
from ledger.service import LedgerRequests, Receipt, receipt_from_jsonb

NOW = datetime(2025, 6, 10, 15, 0, 1, 250, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def hash_before(operation: str, request: dict[str, Any]) -> bytes:
    """``journal.request_hash`` as it was when hashes were first stored."""
    body = json.dumps({"op": operation, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).digest()


def digest(booking: Any) -> bytes:
    """The request hash a booking sends: its third parameter."""
    return booking.params[2]


requests = LedgerRequests(None, lambda: NOW)
symbols = st.from_regex(r"[A-Z][A-Z0-9.]{0,11}", fullmatch=True)
securities = symbols.filter(lambda s: s != "USD")
cents = st.integers(1, 10**11)
shares = st.integers(1, 10**8)
# Any text, lone surrogates and quotes included: json escapes them as \uXXXX and \".
texts = st.text(st.characters(codec=None), max_size=40)
zones = st.sampled_from(
    [UTC, NEW_YORK, ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-4, minutes=-30))]
)
instants = st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=zones)


@settings(max_examples=500)
@given(asset=symbols, amount=cents, order_id=st.none() | texts | st.integers())
@example(asset="USD", amount=10_100, order_id=None)
@example(asset="BRK.B", amount=1, order_id='o"1\\\n\u00e9\ud800')
def test_a_hold_hashes_as_json_dumps_hashed_it(asset, amount, order_id):
    """Any hold, with any order id, hashes to the bytes of the json.dumps implementation."""
    amount = min(amount, 10**8) if asset != "USD" else amount
    booking = requests._place_hold(7, asset, amount, "k", order_id)
    request = {"asset": asset, "amount": amount, "order_id": order_id}
    assert digest(booking) == hash_before("place_hold", request)
    assert journal.place_hold_hash(asset, amount, order_id) == hash_before("place_hold", request)


@settings(max_examples=500)
@given(
    symbol=securities,
    side=st.sampled_from(["buy", "sell", Side.BUY, Side.SELL]),
    quantity=shares,
    price=cents,
    fee=st.integers(0, 10**11),
    executed_at=instants,
    hold_id=st.none() | st.uuids() | texts,
)
@example(
    symbol="AAPL", side="buy", quantity=10, price=1000, fee=100,
    executed_at=datetime(2025, 6, 10, 15, tzinfo=UTC), hold_id=uuid.UUID(int=1),
)  # fmt: skip
def test_a_fill_hashes_as_json_dumps_hashed_it(
    symbol, side, quantity, price, fee, executed_at, hold_id
):
    """Any fill, at any instant in any zone, with or without a hold, hashes to the bytes of
    the json.dumps implementation of its request (executed_at in UTC)."""
    booking = requests._book_fill(7, symbol, side, quantity, price, fee, executed_at, "k", hold_id)
    request = {
        "symbol": symbol,
        "side": Side(side).value,
        "quantity": quantity,
        "price_cents": price,
        "fee_cents": fee,
        "executed_at": executed_at.astimezone(UTC).isoformat(),
        "hold_id": str(hold_id) if hold_id else None,
    }
    assert digest(booking) == hash_before("book_fill", request)


metadata = st.dictionaries(texts, st.none() | texts | st.integers() | st.booleans(), max_size=4)


@settings(max_examples=200)
@given(amount=cents, metadata=metadata, hold_id=st.uuids())
def test_deposits_withdrawals_and_releases_hash_as_before(amount, metadata, hold_id):
    """The other operations keep the generic hash, through a reused encoder: same bytes."""
    request = {"amount": amount, "metadata": metadata}
    assert digest(requests._deposit(7, amount, "k", metadata)) == hash_before("deposit", request)
    assert digest(requests._withdraw(7, amount, "123456", "k", metadata)) == hash_before(
        "withdraw", request
    )
    release = requests._release_hold(7, hold_id, "k")
    assert digest(release) == hash_before("release_hold", {"hold_id": str(hold_id)})


def test_a_known_hold_and_fill_hash_to_the_values_stored_before():
    """Hashes computed by the ledger before these shortcuts (main at 103eee1), pinned."""
    hold = requests._place_hold(7, "USD", 10_100, "k", "o-1")
    fill = requests._book_fill(
        7, "AAPL", "buy", 10, 1000, 100, datetime(2025, 6, 10, 11, tzinfo=NEW_YORK), "k",
        uuid.UUID(int=1),
    )  # fmt: skip
    assert digest(hold).hex() == (
        "2eae67c9715e9e597e48a02403b21004240140de84e93a78604b2695fab06e8c"
    )
    assert digest(fill).hex() == (
        "39105584782c0a3fdda902ff7ada650f4727012578427551fb5ba4281b295fe4"
    )


def jsonb_text(receipt: dict[str, Any]) -> bytes:
    """A receipt object as PostgreSQL prints jsonb: keys by length, then bytes; ': ', ', '."""
    keys = sorted(receipt, key=lambda k: (len(k), k))
    return (
        "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(receipt[k])}" for k in keys) + "}"
    ).encode()


@settings(max_examples=300)
@given(
    transaction_id=st.uuids(),
    kind=st.sampled_from(list(TransactionKind)),
    hold_id=st.none() | st.uuids(),
    settles=st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)),
)
def test_a_receipt_read_from_jsonb_text_equals_the_json_decoded_one(
    transaction_id, kind, hold_id, settles
):
    """Every receipt the functions return reads as json.loads + Receipt.from_json reads it."""
    data = {
        "transaction_id": str(transaction_id),
        "kind": kind.value,
        "hold_id": str(hold_id) if hold_id else None,
        "settlement_date": settles.isoformat() if settles else None,
    }
    text = jsonb_text(data)
    receipt = receipt_from_jsonb(text)
    assert receipt == Receipt.from_json(json.loads(text))
    assert receipt == Receipt(transaction_id, kind, hold_id, settles)
    assert type(receipt.kind) is TransactionKind


@pytest.mark.parametrize(
    "text",
    [
        b'{"kind":"hold","hold_id":null,"transaction_id":"00000000-0000-0000-0000-00000000000a",'
        b'"settlement_date":null}',
        b'{"kind": "future_kind", "hold_id": null, "transaction_id": '
        b'"00000000-0000-0000-0000-00000000000a", "settlement_date": null}',
    ],
)
def test_a_receipt_in_another_form_goes_through_json(text):
    """Text the pattern does not know (spacing, a kind it has no member for) takes the
    generic path: the same receipt, or the same error."""
    try:
        expected: Any = Receipt.from_json(json.loads(text))
    except ValueError as exc:
        with pytest.raises(type(exc), match=str(exc)):
            receipt_from_jsonb(text)
    else:
        assert receipt_from_jsonb(text) == expected


@given(st.uuids())
def test_a_uuid_read_from_its_text_is_the_one_uuid_builds(value):
    """Equal, hashed, printed, pickled and marked (is_safe) as uuid.UUID(text) makes it."""
    text = str(value)
    receipt = receipt_from_jsonb(
        jsonb_text(
            {"transaction_id": text, "kind": "hold", "hold_id": text, "settlement_date": None}
        )
    )
    expected = uuid.UUID(text)
    for read in (receipt.transaction_id, receipt.hold_id):
        assert type(read) is uuid.UUID
        assert (read, hash(read), str(read), repr(read)) == (
            expected,
            hash(expected),
            str(expected),
            repr(expected),
        )
        assert read.is_safe is expected.is_safe
        assert pickle.loads(pickle.dumps(read)) == expected


@given(
    day=st.dates(date(2023, 1, 1), date(2030, 12, 31)),
    extra=st.frozensets(st.dates(date(2024, 1, 1), date(2026, 12, 31)), max_size=5),
)
def test_memoized_fill_dates_follow_the_calendar_rules(day, extra):
    """trade_and_settlement_dates is trade_date and its T+1, for any extra holidays."""
    calendar = ExchangeCalendar(extra)
    trade = calendar.trade_date(day)
    assert calendar.trade_and_settlement_dates(day) == (trade, calendar.settlement_date(trade))
