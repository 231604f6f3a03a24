# ruff: noqa: E501  (tables of exact error messages read best one case per line)
"""The stream protocol: every client error path with its exact code and message."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conflate import BarUpdate, Channel, QuoteUpdate, StatusUpdate, TradeUpdate
from fanout.errors import StreamError
from fanout.protocol import (
    Auth,
    Subscribe,
    Unsubscribe,
    encode_update,
    error,
    frame,
    parse_client_message,
    price,
    rfc3339,
    subscription,
    success,
)
from tests.unit.conflate.builders import bar, quote, status, trade


@pytest.mark.parametrize(
    ("data", "code", "msg"),
    [
        (b'{"action":"auth"}', 400, "invalid syntax: binary frames are not accepted; send JSON text"),
        ("{nope", 400, "invalid syntax: not valid JSON"),
        ("[1,2]", 400, "invalid syntax: expected a JSON object with an 'action'"),
        ('"auth"', 400, "invalid syntax: expected a JSON object with an 'action'"),
        ("{}", 400, "invalid syntax: 'action' must be one of auth, subscribe, unsubscribe"),
        ('{"action":"login"}', 400, "invalid syntax: 'action' must be one of auth, subscribe, unsubscribe"),
        ('{"action":"auth"}', 400, "invalid syntax: auth needs a string 'token'"),
        ('{"action":"auth","token":5}', 400, "invalid syntax: auth needs a string 'token'"),
        ("[" * 100_000 + "]" * 100_000, 400, "invalid syntax: not valid JSON"),
        ('{"action":"subscribe"}', 410, "invalid subscribe action: subscribe needs at least one of trades, quotes, bars, statuses"),
        ('{"action":"unsubscribe","news":["A"]}', 410, "invalid subscribe action: unknown field 'news'; expected trades, quotes, bars, statuses"),
        ('{"action":"subscribe","trades":"AAPL"}', 410, "invalid subscribe action: 'trades' must be a list of symbols"),
        ('{"action":"subscribe","quotes":[1]}', 410, "invalid subscribe action: 'quotes' must be a list of strings"),
        ('{"action":"subscribe","bars":["A B"]}', 410, "invalid subscribe action: bad symbol 'A B' in 'bars': use 1 to 16 of A-Z 0-9 . - / or '*'"),
        ('{"action":"subscribe","statuses":[""]}', 410, "invalid subscribe action: bad symbol '' in 'statuses': use 1 to 16 of A-Z 0-9 . - / or '*'"),
        (json.dumps({"action": "subscribe", "trades": ["A"] * 10_001}), 410, "invalid subscribe action: at most 10000 symbols per message"),
    ],
)  # fmt: skip
def test_each_malformed_client_message_maps_to_its_documented_code_and_message(data, code, msg):
    """The error names the bad field and what would be accepted."""
    with pytest.raises(StreamError) as caught:
        parse_client_message(data)
    assert (caught.value.code, caught.value.msg) == (code, msg)
    assert json.loads(error(caught.value)) == {"T": "error", "code": code, "msg": msg}


def test_valid_messages_parse_to_commands_with_upper_case_deduplicated_symbols():
    """Symbols are upper-cased and de-duplicated in order; absent channels are empty."""
    assert parse_client_message('{"action":"auth","token":"tp_x"}') == Auth("tp_x")
    sub = parse_client_message('{"action":"subscribe","trades":["aapl","AAPL","*"],"quotes":[]}')
    assert sub == Subscribe(
        {Channel.TRADES: ("AAPL", "*"), Channel.QUOTES: (), Channel.BARS: (), Channel.STATUSES: ()}
    )
    unsub = parse_client_message('{"action":"unsubscribe","bars":["BRK.B"]}')
    assert isinstance(unsub, Unsubscribe)
    assert unsub.symbols[Channel.BARS] == ("BRK.B",)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["action", "token", "trades", "quotes", "bars", "statuses", "x"]),
            children,
            max_size=5,
        ),
        max_leaves=20,
    )
)
def test_any_json_value_parses_to_a_command_or_a_stream_error_never_anything_else(value):
    """Fuzz: random JSON never raises anything but a StreamError with a documented code."""
    try:
        parse_client_message(json.dumps(value))
    except StreamError as exc:
        assert exc.code in (400, 410)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_frames_never_raise_anything_but_a_stream_error(data):
    """Fuzz: arbitrary bytes and text give a command or a 400/410 StreamError."""
    try:
        parse_client_message(data)
    except StreamError as exc:
        assert exc.code in (400, 410)


def test_prices_are_exact_decimal_literals():
    """4 implied decimals: 1234500 → 123.45, 5 → 0.0005, 1000000 → 100, -25000 → -2.5."""
    assert [price(v) for v in (1_234_500, 5, 1_000_000, -25_000, 0)] == [
        "123.45",
        "0.0005",
        "100",
        "-2.5",
        "0",
    ]
    assert rfc3339(1_732_113_000_000_000_001) == "2024-11-20T14:30:00.000000001Z"


def test_data_messages_carry_type_symbol_prices_sizes_time_and_sequence():
    """Trade, quote, bar and status encode to the documented fields."""
    t = TradeUpdate(trade("AAPL", 7, price=1_234_500, size=10).trade, 30, 3, 900, 12)
    assert json.loads(encode_update(t)) == {
        "T": "t", "S": "AAPL", "p": 123.45, "s": 10, "t": "2024-11-20T14:30:00.000000007Z",
        "i": 7, "v": 30, "n": 3, "cv": 900, "cn": 12,
    }  # fmt: skip
    q = QuoteUpdate(quote("MSFT", 8, bid=999_900, ask=1_000_100).quote)
    assert json.loads(encode_update(q)) == {
        "T": "q", "S": "MSFT", "bp": 99.99, "bs": 100, "ap": 100.01, "as": 200,
        "t": "2024-11-20T14:30:00.000000008Z", "i": 8,
    }  # fmt: skip
    b = BarUpdate(bar("GOOG", 9, start_ns=1_732_113_000_000_000_000, close=1_500_000).bar)
    assert json.loads(encode_update(b)) == {
        "T": "b", "S": "GOOG", "o": 150, "h": 150, "l": 150, "c": 150, "v": 100, "n": 1,
        "t": "2024-11-20T14:30:00.000000000Z", "e": "2024-11-20T14:31:00.000000000Z",
        "i": 9, "r": False,
    }  # fmt: skip
    s = StatusUpdate(status("AAPL", 10, code="H", halted=True).status)
    assert json.loads(encode_update(s)) == {
        "T": "s", "S": "AAPL", "k": "trading_action", "sc": "H", "rm": "", "h": True,
        "t": "2024-11-20T14:30:00.000000010Z", "i": 10,
    }  # fmt: skip


def test_control_messages_and_frames():
    """success, subscription (every channel present) and frames as JSON arrays."""
    ack = subscription({Channel.TRADES: ["*", "AAPL"]})
    assert json.loads(frame([success("authenticated"), ack])) == [
        {"T": "success", "msg": "authenticated"},
        {"T": "subscription", "trades": ["*", "AAPL"], "quotes": [], "bars": [], "statuses": []},
    ]
    assert frame([]) == "[]"
