"""The compiled normalizer (``normalize.fast.FastNormalizer``) against the Python reference.

The contract: for every input, ``FastNormalizer`` queues byte-identical events to
``normalize.normalizer.Normalizer`` and keeps equal stats and problem counts. Checked here on
hand-built streams that cover every ITCH 5.0 message type, on random valid streams (adds,
executions, cancels, deletes and replaces over a few symbols, halts, crosses, broken trades,
system events, stale marks), on garbage (random bytes, wrong lengths, unknown types,
non-ASCII text, unknown references and locates), per shard, and on a simulated day. The
Protobuf encoder is checked field by field against upb's ``SerializeToString``; the fast
paths ``process_framed`` and ``take_records`` against per-message ``process`` and
``batch_records``; and arbitrary bytes must never crash either entry point.
"""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normalize import _fastcore
from normalize.book import BUY, SELL
from normalize.fast import FastNormalizer, decode_framed, make_normalizer
from normalize.itch import (
    MESSAGE_LAYOUTS,
    AddOrder,
    AddOrderWithMpid,
    BrokenTrade,
    CrossTrade,
    DirectListingCapitalRaisePriceDiscovery,
    IpoQuotingPeriodUpdate,
    LuldAuctionCollar,
    MarketParticipantPosition,
    Message,
    MwcbDeclineLevel,
    MwcbStatus,
    NetOrderImbalanceIndicator,
    NonCrossTrade,
    OperationalHalt,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    RegShoRestriction,
    RetailPriceImprovementIndicator,
    StockDirectory,
    StockTradingAction,
    SystemEvent,
    encode,
)
from normalize.normalizer import NormalizedEvent, Normalizer, batch_records, locate_shard
from normalize.proto import marketdata_pb2 as pb
from tests.unit.normalize.test_itch_properties import valid_bytes_strategy
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

MIDNIGHT_NS = 1_732_060_800_000_000_000  # 2024-11-20T00:00:00Z
SESSION = "20241120AB"
PUBLISH_NS = 1_732_095_000_999_000_000

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
UINT64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
INT32 = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)
EDGE_INT64 = st.sampled_from([0, 1, -1, (1 << 63) - 1, -(1 << 63), 127, 128, 16383, 16384])
EDGE_UINT64 = st.sampled_from([0, 1, 127, 128, (1 << 63), (1 << 64) - 1, 2**35])
ASCII_SYMBOL = st.one_of(
    st.sampled_from(["", "A", "AAPL", "ZVZZT", "BRK A", "ABCDEFGH"]),
    st.text(st.characters(max_codepoint=0x7F), max_size=8),
)
ANY_TEXT = st.one_of(st.just(""), st.text(max_size=40))


# --------------------------------------------------------------------------------- helpers


def both(**options: object) -> tuple[Normalizer, FastNormalizer]:
    """A Python and a compiled normalizer configured alike."""
    shard_index = options.pop("shard_index", 0)
    shard_count = options.pop("shard_count", 1)
    python = Normalizer(
        midnight_ns=MIDNIGHT_NS,
        session=SESSION,
        shard=locate_shard(shard_index, shard_count),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    fast = FastNormalizer(
        midnight_ns=MIDNIGHT_NS,
        session=SESSION,
        shard_index=shard_index,
        shard_count=shard_count,
        **options,  # type: ignore[arg-type]
    )
    return python, fast


class Stale:
    """A ``mark_stale`` call in a stream."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Stale({self.reason!r})"


class Take:
    """A ``take_events`` call in a stream."""

    def __repr__(self) -> str:
        return "Take()"


StreamItem = Message | bytes | Stale | Take


def run(normalizer: Normalizer | FastNormalizer, stream: list[StreamItem]) -> list:
    """Feed ``stream``; returns the events of every take plus a final one."""
    taken: list = []
    for seq, item in enumerate(stream, start=1):
        receive = MIDNIGHT_NS + 34_200_000_000_000 + seq
        if isinstance(item, Stale):
            normalizer.mark_stale(seq=seq, receive_ts_ns=receive, reason=item.reason)
        elif isinstance(item, Take):
            taken.append(normalizer.take_events(publish_ts_ns=PUBLISH_NS + seq))
        else:
            raw = item if isinstance(item, bytes) else encode(item)
            normalizer.process(raw, seq=seq, receive_ts_ns=receive)
    taken.append(normalizer.take_events(publish_ts_ns=PUBLISH_NS))
    return taken


def assert_equivalent(stream: list[StreamItem], **options: object) -> list:
    """Both normalizers give the same events, stats, problem counts, books and symbols.

    Returns the events of each take.
    """
    python, fast = both(**options)
    expected = run(python, stream)
    actual = run(fast, stream)
    assert actual == expected
    assert fast.stats == python.stats
    assert fast.problem_counts() == python.problem_counts()
    assert fast.symbols() == python.symbols()
    for locate in python.symbols():
        assert fast.is_stale(locate) == python.is_stale(locate)
        book = python.book(locate)
        assert book is not None
        assert fast._levels(locate) == (book.levels(BUY), book.levels(SELL))
        assert sorted(fast._orders(locate)) == sorted(
            (ref, o.side, o.price, o.shares) for ref, o in book
        )
    return expected


def directory(locate: int, stock: str, timestamp: int = 1_000) -> StockDirectory:
    return StockDirectory(
        locate, 0, timestamp, stock, "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
    )


def framed(raws: list[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(raw)) + raw for raw in raws)


# --------------------------------------------------------------- (a) the Protobuf encoder


@settings(max_examples=300)
@given(
    symbol=ASCII_SYMBOL,
    exchange_ts_ns=st.one_of(EDGE_INT64, INT64),
    seq=st.one_of(EDGE_UINT64, UINT64),
    receive_ts_ns=st.one_of(EDGE_INT64, INT64),
    publish_ts_ns=st.one_of(EDGE_INT64, INT64),
    price=st.one_of(EDGE_INT64, INT64),
    size=st.one_of(EDGE_UINT64, UINT64),
    side=st.one_of(st.sampled_from([0, 1, 2]), INT32),
    match_number=st.one_of(EDGE_UINT64, UINT64),
    kind=st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5]), INT32),
    cross_type=st.one_of(st.sampled_from(["", "O", "C", "H", "I"]), ANY_TEXT),
    session=ANY_TEXT,
)
def test_the_c_trade_encoding_is_upbs_serialization_byte_for_byte(**fields):
    """Any Trade field values, extremes included, serialize to exactly upb's bytes."""
    assert _fastcore._encode_trade(**fields) == pb.Trade(**fields).SerializeToString()


@settings(max_examples=300)
@given(
    symbol=ASCII_SYMBOL,
    exchange_ts_ns=st.one_of(EDGE_INT64, INT64),
    seq=st.one_of(EDGE_UINT64, UINT64),
    receive_ts_ns=st.one_of(EDGE_INT64, INT64),
    publish_ts_ns=st.one_of(EDGE_INT64, INT64),
    bid_price=st.one_of(EDGE_INT64, INT64),
    bid_size=st.one_of(EDGE_UINT64, UINT64),
    ask_price=st.one_of(EDGE_INT64, INT64),
    ask_size=st.one_of(EDGE_UINT64, UINT64),
    session=ANY_TEXT,
)
def test_the_c_quote_encoding_is_upbs_serialization_byte_for_byte(**fields):
    """Any Quote field values serialize to exactly upb's bytes."""
    assert _fastcore._encode_quote(**fields) == pb.Quote(**fields).SerializeToString()


@settings(max_examples=300)
@given(
    symbol=ASCII_SYMBOL,
    exchange_ts_ns=st.one_of(EDGE_INT64, INT64),
    seq=st.one_of(EDGE_UINT64, UINT64),
    receive_ts_ns=st.one_of(EDGE_INT64, INT64),
    publish_ts_ns=st.one_of(EDGE_INT64, INT64),
    kind=st.one_of(st.integers(min_value=0, max_value=9), INT32),
    code=st.one_of(st.sampled_from(["", "O", "H", " ", "\x00"]), ANY_TEXT),
    reason=ANY_TEXT,
    halted=st.booleans(),
    session=ANY_TEXT,
)
def test_the_c_status_encoding_is_upbs_serialization_byte_for_byte(**fields):
    """Any Status field values serialize to exactly upb's bytes."""
    assert _fastcore._encode_status(**fields) == pb.Status(**fields).SerializeToString()


def test_an_all_default_message_encodes_to_no_bytes_at_all():
    """proto3 omits default values: a message of defaults is empty, as upb makes it."""
    assert _fastcore._encode_trade() == b"" == pb.Trade().SerializeToString()
    assert _fastcore._encode_quote() == b""
    assert _fastcore._encode_status(halted=False) == b""


def test_the_encoder_refuses_values_outside_the_field_types():
    """A uint64 field given a negative number or an int64 beyond its range is an error."""
    with pytest.raises(ValueError, match="seq must be in 0..2"):
        _fastcore._encode_trade(seq=-1)
    with pytest.raises(ValueError, match="price must be in -2"):
        _fastcore._encode_trade(price=1 << 63)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        _fastcore._encode_quote(colour=1)


# ------------------------------------------------------------ the decoder's message table


def test_the_c_message_table_matches_the_python_codecs_layouts():
    """Every type's length and Alpha field positions equal normalize.itch's layouts."""
    expected = {}
    for type_byte, layout in MESSAGE_LAYOUTS.items():
        spans, offset = [], 1
        for f in layout.fields:
            if f.kind == "alpha":
                spans.append((offset, f.size))
            offset += f.size
        expected[type_byte] = (layout.length, spans)

    assert _fastcore._layout_table() == expected


def test_decode_only_mode_counts_messages_errors_and_consumed_bytes():
    """decode_framed parses each complete frame, counts undecodable ones, stops at a cut."""
    good = [encode(directory(1, "AAPL")), encode(SystemEvent(0, 0, 5, "O"))]
    bad = [b"", b"Z" * 5, encode(SystemEvent(0, 0, 5, "O"))[:-1], b"S" + b"\x80" * 11]
    buffer = framed(good + bad + good)

    decoded, errors, _checksum, consumed = decode_framed(buffer + b"\x00\x24AB")

    assert (decoded, errors, consumed) == (4, 4, len(buffer))


# ------------------------------------------------------- (b) hand-built, every message type


def every_message_type_stream() -> list[StreamItem]:
    """A day touching every ITCH 5.0 message type and every rule of the normalizer."""
    t = iter(range(34_200_000_000_000, 34_300_000_000_000, 1_000))
    return [
        SystemEvent(0, 0, next(t), "O"),
        SystemEvent(0, 0, next(t), "S"),
        directory(1, "AAPL"),
        directory(2, "MSFT"),
        directory(3, "BRK A"),
        directory(1, "AAPL"),  # announced again: keeps the book
        MwcbDeclineLevel(0, 0, next(t), 1_000_000_000_000, 900_000_000_000, 800_000_000_000),
        IpoQuotingPeriodUpdate(2, 0, next(t), "MSFT", 34_200, "A", 1_000_000),
        LuldAuctionCollar(1, 0, next(t), "AAPL", 1_500_000, 1_650_000, 1_350_000, 1),
        MarketParticipantPosition(1, 0, next(t), "GSCO", "AAPL", "Y", "N", "A"),
        RegShoRestriction(1, 0, next(t), "AAPL", "1"),
        StockTradingAction(1, 0, next(t), "AAPL", "Q", " ", "IPO1"),
        StockTradingAction(1, 0, next(t), "AAPL", "T", " ", ""),
        SystemEvent(0, 0, next(t), "Q"),
        AddOrder(1, 0, next(t), 101, "B", 100, "AAPL", 1_500_000),
        AddOrder(1, 0, next(t), 102, "B", 200, "AAPL", 1_500_000),
        AddOrder(1, 0, next(t), 103, "B", 300, "AAPL", 1_499_900),
        AddOrderWithMpid(1, 0, next(t), 104, "S", 400, "AAPL", 1_500_100, "GSCO"),
        AddOrder(1, 0, next(t), 105, "S", 500, "AAPL", 1_500_200),
        AddOrder(2, 0, next(t), 201, "S", 50, "MSFT", 4_000_000),
        OrderExecuted(1, 0, next(t), 101, 100, 9001),  # whole order: the level shrinks
        OrderExecuted(1, 0, next(t), 104, 150, 9002),  # partial
        OrderExecutedWithPrice(1, 0, next(t), 104, 50, 9003, "Y", 1_500_050),
        OrderExecutedWithPrice(1, 0, next(t), 104, 50, 9004, "N", 1_500_060),  # not printed
        OrderCancel(1, 0, next(t), 102, 50),
        OrderReplace(1, 0, next(t), 103, 106, 300, 1_500_000),  # joins the best bid
        OrderReplace(1, 0, next(t), 106, 106, 10, 1_499_000),  # same reference
        OrderDelete(1, 0, next(t), 105),
        NonCrossTrade(1, 0, next(t), 0, "S", 700, "AAPL", 1_500_000, 9005),
        NonCrossTrade(1, 0, next(t), 0, " ", 70, "AAPL", 1_500_000, 9006),  # side unknown
        CrossTrade(1, 0, next(t), 10_000, "AAPL", 1_500_000, 9007, "O"),
        CrossTrade(1, 0, next(t), 0, "AAPL", 1_500_000, 9008, "O"),  # no match: nothing
        BrokenTrade(1, 0, next(t), 9002),  # remembered
        BrokenTrade(1, 0, next(t), 9002),  # already broken: forgotten
        BrokenTrade(1, 0, next(t), 424242),  # never published
        NetOrderImbalanceIndicator(
            1, 0, next(t), 1_000, 200, "B", "AAPL", 1_500_000, 1_500_100, 1_500_000, "C", "L"
        ),
        RetailPriceImprovementIndicator(1, 0, next(t), "AAPL", "B"),
        DirectListingCapitalRaisePriceDiscovery(
            3, 0, next(t), "BRK A", "Y", 100, 200, 150, 34_300_000_000_000, 90, 210
        ),
        OperationalHalt(2, 0, next(t), "MSFT", "Q", "H"),
        StockTradingAction(2, 0, next(t), "MSFT", "H", " ", "LUDP"),
        OperationalHalt(2, 0, next(t), "MSFT", "Q", "T"),  # still halted by the 'H'
        MwcbStatus(0, 0, next(t), "1"),
        # Refused and skipped: unknown locate, unknown and duplicate references, bad values.
        AddOrder(9, 0, next(t), 901, "B", 1, "ZZZZ", 1),
        OrderDelete(1, 0, next(t), 999_999),
        OrderExecuted(2, 0, next(t), 101, 1, 9100),  # 101 lives in another book (or nowhere)
        AddOrder(2, 0, next(t), 201, "B", 10, "MSFT", 3_999_900),  # duplicate
        AddOrder(2, 0, next(t), 202, "X", 10, "MSFT", 3_999_900),  # bad side
        AddOrder(2, 0, next(t), 203, "B", 0, "MSFT", 3_999_900),  # no shares
        OrderCancel(2, 0, next(t), 201, 51),  # more than rests
        OrderReplace(2, 0, next(t), 201, 201, 0, 1),  # no shares
        OrderReplace(1, 0, next(t), 999, 1000, 5, 1),  # unknown original
        Stale("messages 70..80 could not be recovered"),
        AddOrder(1, 0, next(t), 107, "B", 5, "AAPL", 1_600_000),  # stale: no quote
        OrderExecuted(1, 0, next(t), 107, 5, 9200),  # stale: still a trade
        Stale("again: nobody is marked twice"),
        directory(3, "BRKB"),  # a new symbol for locate 3 starts it afresh
        Take(),
        SystemEvent(0, 0, next(t), "M"),
        SystemEvent(0, 0, next(t), "E"),
        SystemEvent(0, 0, next(t), "C"),
        SystemEvent(0, 0, next(t), "O"),  # next day: recovered, empty books, empty quotes
        AddOrder(1, 0, next(t), 101, "B", 10, "AAPL", 1_000),  # references are per day
        OrderExecuted(1, 0, next(t), 101, 10, 9002),
        BrokenTrade(1, 0, next(t), 9002),
    ]


def test_every_message_type_gives_the_same_events_and_stats_as_the_python_normalizer():
    """The hand-built day yields byte-identical events, equal stats, books and symbols."""
    expected = assert_equivalent(every_message_type_stream())

    events = [event for take in expected for event in take]
    assert [len(take) for take in expected] == [37, 12]
    assert sum(event.topic == MD_TRADES for event in events) == 12
    assert sum(event.topic == MD_QUOTES for event in events) == 15
    assert sum(event.topic == MD_STATUS for event in events) == 22


def test_events_are_normalized_event_values_with_serialized_payloads():
    """take_events hands out NormalizedEvent(topic, symbol, payload bytes) in feed order."""
    _, fast = both()
    fast.process(encode(directory(1, "AAPL")), seq=1, receive_ts_ns=7)
    fast.process(encode(AddOrder(1, 0, 5, 1, "B", 100, "AAPL", 1_500_000)), seq=2, receive_ts_ns=8)

    assert fast.pending_events == 1
    (event,) = fast.take_events(publish_ts_ns=9)

    assert fast.pending_events == 0
    assert isinstance(event, NormalizedEvent)
    assert (event.topic, event.symbol) == (MD_QUOTES, "AAPL")
    assert pb.Quote.FromString(event.payload) == pb.Quote(
        symbol="AAPL",
        exchange_ts_ns=MIDNIGHT_NS + 5,
        seq=2,
        receive_ts_ns=8,
        publish_ts_ns=9,
        bid_price=1_500_000,
        bid_size=100,
        session=SESSION,
    )


def test_mark_stale_suppresses_quotes_until_the_next_start_of_messages():
    """Stale books publish trades but no quotes; 'O' recovers them, as in Python."""
    stream: list[StreamItem] = [
        directory(1, "AAPL"),
        directory(2, "MSFT"),
        StockTradingAction(2, 0, 10, "MSFT", "H", " ", "T1"),
        AddOrder(1, 0, 20, 1, "B", 100, "AAPL", 10_000),
        Stale("gap of 10 messages"),
        AddOrder(1, 0, 30, 2, "S", 100, "AAPL", 10_100),
        OrderExecuted(1, 0, 40, 1, 50, 77),
        Stale("a second gap"),
        SystemEvent(0, 0, 50, "O"),
        AddOrder(1, 0, 60, 3, "B", 5, "AAPL", 9_000),
    ]
    expected = assert_equivalent(stream)

    kinds = [pb.Status.FromString(e.payload).kind for e in expected[-1] if e.topic == MD_STATUS]
    assert kinds.count(pb.STATUS_KIND_FEED_STALE) == 2
    assert kinds.count(pb.STATUS_KIND_FEED_RECOVERED) == 2


@pytest.mark.parametrize("memory", [0, 1, 2, 3])
def test_broken_trades_forget_exactly_what_the_python_match_memory_forgets(memory):
    """With a tiny match memory, eviction (repeated numbers included) matches Python's."""
    trades: list[StreamItem] = [directory(1, "AAPL")]
    for i, match in enumerate([5, 6, 5, 7, 5, 8, 6]):
        trades.append(NonCrossTrade(1, 0, 100 + i, 0, "B", 10 + i, "AAPL", 1_000 + i, match))
        trades.append(BrokenTrade(1, 0, 200 + i, (match + i) % 9))
    trades += [BrokenTrade(1, 0, 300 + m, m) for m in range(10)]

    assert_equivalent(trades, match_memory=memory)


@pytest.mark.parametrize("shard_count", [1, 2, 3])
def test_each_shard_keeps_its_locates_and_only_shard_zero_publishes_market_wide(shard_count):
    """locate % count == index, as locate_shard; skipped messages are counted alike."""
    stream = every_message_type_stream()
    stream += [encode(AddOrder(4, 0, 1, 1, "B", 1, "X", 1))[:10], b"A\x00\x05"]
    for index in range(shard_count):
        assert_equivalent(stream, shard_index=index, shard_count=shard_count)


def test_shard_arguments_are_checked_like_locate_shard():
    with pytest.raises(ValueError, match="shard_index must be in 0..1, got 2"):
        FastNormalizer(midnight_ns=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="shard_count must be in 1..65536, got 0"):
        FastNormalizer(midnight_ns=0, shard_count=0)
    with pytest.raises(ValueError, match="match_memory must be >= 0"):
        FastNormalizer(midnight_ns=0, match_memory=-1)
    with pytest.raises(TypeError, match="midnight_ns"):
        FastNormalizer()  # type: ignore[call-arg]


def test_make_normalizer_builds_either_implementation_with_the_same_behaviour():
    """fast=True and fast=False give the two implementations, interchangeable."""
    fast = make_normalizer(midnight_ns=MIDNIGHT_NS, session=SESSION, shard_index=1, shard_count=2)
    python = make_normalizer(
        fast=False, midnight_ns=MIDNIGHT_NS, session=SESSION, shard_index=1, shard_count=2
    )
    assert isinstance(fast, FastNormalizer)
    assert isinstance(python, Normalizer)

    stream = every_message_type_stream()
    assert run(fast, stream) == run(python, stream)
    assert fast.stats == python.stats


def test_process_message_and_book_snapshots_match_the_python_normalizer():
    """The convenience API: decoded messages in, OrderBook snapshots out."""
    python, fast = both()
    for seq, message in enumerate(every_message_type_stream()[:30], start=1):
        if isinstance(message, Message):
            python.process_message(message, seq=seq, receive_ts_ns=seq)
            fast.process_message(message, seq=seq, receive_ts_ns=seq)

    assert fast.take_events(publish_ts_ns=1) == python.take_events(publish_ts_ns=1)
    python_book, fast_book = python.book(1), fast.book(1)
    assert python_book is not None and fast_book is not None
    assert fast_book.bbo() == python_book.bbo()
    assert fast_book.levels(BUY) == python_book.levels(BUY)
    assert dict(fast_book) == dict(python_book)
    assert fast.book(77) is None


# --------------------------------------------------------------- (b) random valid streams

LOCATES = st.sampled_from([1, 1, 1, 1, 1, 2, 2, 3, 5])  # 5 is never announced
REFS = st.integers(min_value=1, max_value=24)
MATCHES = st.integers(min_value=1, max_value=12)
PRICES = st.sampled_from([9_900, 9_950, 10_000, 10_050, 10_100, 0, 4_294_967_295])
SHARES = st.one_of(st.integers(min_value=1, max_value=300), st.sampled_from([0, 4_294_967_295]))
SIDES = st.sampled_from(["B", "B", "S", "S", " "])
TIMES = st.integers(min_value=0, max_value=(1 << 48) - 1)
STOCKS = st.sampled_from(["AAPL", "MSFT", "", "A B", "ABCDEFGH", "AAPL"])
CODE = st.characters(max_codepoint=0x7F)


def weighted(*choices: tuple[st.SearchStrategy, int]) -> st.SearchStrategy:
    """Draw from each strategy with the given relative weight (``one_of`` weighs its flattened
    leaves equally, so repeating a strategy there does not weigh it)."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _adds() -> st.SearchStrategy[StreamItem]:
    return st.one_of(
        st.builds(AddOrder, LOCATES, st.just(0), TIMES, REFS, SIDES, SHARES, STOCKS, PRICES),
        st.builds(
            AddOrderWithMpid,
            LOCATES,
            st.just(0),
            TIMES,
            REFS,
            SIDES,
            SHARES,
            STOCKS,
            PRICES,
            st.just("GSCO"),
        ),
    )


def _order_messages() -> st.SearchStrategy[StreamItem]:
    return st.one_of(
        _adds(),
        st.builds(OrderExecuted, LOCATES, st.just(0), TIMES, REFS, SHARES, MATCHES),
        st.builds(
            OrderExecutedWithPrice,
            LOCATES,
            st.just(0),
            TIMES,
            REFS,
            SHARES,
            MATCHES,
            st.sampled_from(["Y", "N"]),
            PRICES,
        ),
        st.builds(OrderCancel, LOCATES, st.just(0), TIMES, REFS, SHARES),
        st.builds(OrderDelete, LOCATES, st.just(0), TIMES, REFS),
        st.builds(OrderReplace, LOCATES, st.just(0), TIMES, REFS, REFS, SHARES, PRICES),
    )


def _other_messages() -> st.SearchStrategy[StreamItem]:
    return st.one_of(
        st.builds(directory, LOCATES, STOCKS),
        st.builds(
            NonCrossTrade,
            LOCATES,
            st.just(0),
            TIMES,
            REFS,
            SIDES,
            SHARES,
            STOCKS,
            PRICES,
            MATCHES,
        ),
        st.builds(
            CrossTrade,
            LOCATES,
            st.just(0),
            TIMES,
            st.sampled_from([0, 1, 1 << 40, (1 << 64) - 1]),
            STOCKS,
            PRICES,
            MATCHES,
            CODE,
        ),
        st.builds(BrokenTrade, LOCATES, st.just(0), TIMES, MATCHES),
        st.builds(SystemEvent, st.just(0), st.just(0), TIMES, st.sampled_from(list("OSQMEC"))),
        st.builds(
            StockTradingAction,
            LOCATES,
            st.just(0),
            TIMES,
            STOCKS,
            st.sampled_from(list("HPQT")),
            st.just(" "),
            st.sampled_from(["", "T1", "LUDP", "IPO1"]),
        ),
        st.builds(
            OperationalHalt,
            LOCATES,
            st.just(0),
            TIMES,
            STOCKS,
            st.sampled_from(list("QBX")),
            st.sampled_from(["H", "T"]),
        ),
        st.builds(RegShoRestriction, LOCATES, st.just(0), TIMES, STOCKS, CODE),
        st.builds(
            MwcbDeclineLevel,
            st.sampled_from([0, 3]),
            st.just(0),
            TIMES,
            st.integers(0, (1 << 64) - 1),
            st.just(0),
            st.just((1 << 64) - 1),
        ),
        st.builds(MwcbStatus, st.just(0), st.just(0), TIMES, CODE),
        st.builds(
            LuldAuctionCollar,
            LOCATES,
            st.just(0),
            TIMES,
            STOCKS,
            PRICES,
            PRICES,
            PRICES,
            st.integers(0, 5),
        ),
        st.builds(
            IpoQuotingPeriodUpdate,
            LOCATES,
            st.just(0),
            TIMES,
            STOCKS,
            TIMES.map(lambda t: t & 0xFFFFFFFF),
            CODE,
            PRICES,
        ),
    )


def _controls() -> st.SearchStrategy[StreamItem]:
    """Takes, and now and then a stale mark (it silences quotes until the next 'O')."""
    return weighted(
        (st.builds(Take), 7),
        (st.builds(Stale, st.sampled_from(["gap", "", "lost 1..9 of session é"])), 1),
    )


# Adds weigh more so that executions, cancels, deletes and replaces mostly find orders.
STREAMS = st.lists(
    weighted((_adds(), 8), (_order_messages(), 8), (_other_messages(), 4), (_controls(), 1)),
    min_size=20,
    max_size=200,
).map(lambda items: [directory(1, "AAPL"), directory(2, "MSFT"), directory(3, "ZZZZZZZZ"), *items])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS)
def test_random_valid_streams_give_identical_events_stats_and_books(stream):
    """Random order flow over a few symbols: byte-identical events, equal state."""
    assert_equivalent(stream)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS, shard_count=st.integers(1, 4), data=st.data())
def test_random_streams_give_identical_events_on_every_shard(stream, shard_count, data):
    """A random shard of a random stream behaves as the Python shard does."""
    index = data.draw(st.integers(0, shard_count - 1))
    assert_equivalent(stream, shard_index=index, shard_count=shard_count, match_memory=4)


# ----------------------------------------------------------------------- (b) with garbage

ANY_VALID_RAW = st.sampled_from(sorted(MESSAGE_LAYOUTS)).flatmap(valid_bytes_strategy)


def _garbage() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=60),  # random bytes
        ANY_VALID_RAW,  # every type, every field value (mostly unknown locates)
        ANY_VALID_RAW.map(lambda raw: raw[:-1]),  # one byte short
        ANY_VALID_RAW.map(lambda raw: raw + b"\x00"),  # one byte long
        ANY_VALID_RAW.map(lambda raw: raw[:1] + b"\x00\x01" + raw[3:]),  # for locate 1
        ANY_VALID_RAW.map(lambda raw: raw[:-1] + b"\xe9"),  # non-ASCII where text is
        st.sampled_from([b"", b"A", b"A\x00", b"A\x00\x01", b"z" * 36, b"\x00" * 12]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(
        st.one_of(_order_messages(), _other_messages(), _controls(), _garbage(), _garbage()),
        max_size=120,
    ),
    shard_count=st.sampled_from([1, 1, 2]),
)
def test_streams_with_garbage_give_identical_events_stats_and_problem_counts(stream, shard_count):
    """Undecodable bytes, wrong lengths, unknown types, refs and locates: counted alike."""
    stream = [directory(1, "AAPL"), directory(2, "MSFT"), *stream]
    assert_equivalent(stream, shard_count=shard_count)


# ---------------------------------------------------------------------- the fast paths


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS, first_seq=st.integers(0, 1 << 40), cut=st.integers(0, 40))
def test_process_framed_and_process_messages_equal_process_on_each_message(stream, first_seq, cut):
    """A buffer of frames, or a list of messages, gives what per-message process gives; a
    frame cut off by the end of the buffer is left alone."""
    raws = [encode(item) for item in stream if isinstance(item, Message)]
    tail = framed([raws[-1]])[: min(cut, len(raws[-1]) + 1)] if cut else b""
    buffer = framed(raws) + tail
    one, framed_normalizer = both()
    listed = FastNormalizer(midnight_ns=MIDNIGHT_NS, session=SESSION)
    for offset, raw in enumerate(raws):
        one.process(raw, seq=first_seq + offset, receive_ts_ns=99)

    consumed = framed_normalizer.process_framed(buffer, first_seq=first_seq, receive_ts_ns=99)
    applied = listed.process_messages(
        [memoryview(raw) if i % 2 else raw for i, raw in enumerate(raws)],
        first_seq=first_seq,
        receive_ts_ns=99,
    )

    assert consumed == applied == len(raws)
    assert framed_normalizer.last_framed_bytes == len(buffer) - len(tail)
    expected = one.take_events(publish_ts_ns=5)
    assert framed_normalizer.take_events(publish_ts_ns=5) == expected
    assert listed.take_events(publish_ts_ns=5) == expected
    assert framed_normalizer.stats == listed.stats == one.stats


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS, publish=st.one_of(EDGE_INT64, INT64))
def test_take_records_equals_batch_records_of_take_events(stream, publish):
    """(topic, key, EventBatch) per (topic, symbol), first-appearance order, feed order."""
    python, fast = both()
    for seq, item in enumerate(stream, start=1):
        if isinstance(item, Stale):
            python.mark_stale(seq=seq, receive_ts_ns=seq, reason=item.reason)
            fast.mark_stale(seq=seq, receive_ts_ns=seq, reason=item.reason)
        elif isinstance(item, Message):
            python.process(encode(item), seq=seq, receive_ts_ns=seq)
            fast.process(encode(item), seq=seq, receive_ts_ns=seq)

    expected = batch_records(python.take_events(publish_ts_ns=publish))
    records = fast.take_records(publish_ts_ns=publish)

    assert records == expected
    assert fast.pending_events == 0
    assert fast.take_records(publish_ts_ns=publish) == []


def test_take_records_batches_per_topic_and_symbol_with_market_wide_under_the_empty_key():
    """Records are keyed by the symbol's ASCII bytes; market-wide statuses by b''."""
    _, fast = both()
    fast.process_framed(
        framed(
            [
                encode(SystemEvent(0, 0, 1, "O")),
                encode(directory(1, "AAPL")),
                encode(AddOrder(1, 0, 2, 1, "B", 10, "AAPL", 100)),
                encode(OrderExecuted(1, 0, 3, 1, 4, 1)),
                encode(AddOrder(1, 0, 4, 2, "S", 10, "AAPL", 200)),
            ]
        ),
        first_seq=1,
        receive_ts_ns=0,
    )

    records = fast.take_records(publish_ts_ns=0)

    assert [(topic, key) for topic, key, _ in records] == [
        (MD_STATUS, b""),
        (MD_QUOTES, b"AAPL"),
        (MD_TRADES, b"AAPL"),
    ]
    quotes = pb.EventBatch.FromString(records[1][2])
    assert quotes.symbol == "AAPL"
    assert [e.quote.bid_size for e in quotes.events] == [10, 6, 6]


# ---------------------------------------------------------------- the simulator's day


@pytest.fixture(scope="module")
def simulated_day(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    exchange_sim = pytest.importorskip("exchange_sim")
    path = tmp_path_factory.mktemp("sim") / "day.itch"
    exchange_sim.write_file(path, symbols=300, seed=7, messages=200_000)
    return path.read_bytes()


def test_a_simulated_200k_message_day_gives_identical_records_and_stats(simulated_day):
    """The simulator's realistic flow, per 64 KiB chunk: same records, same stats."""
    python, fast = both()
    data = simulated_day
    expected: list = []
    actual: list = []
    seq = 1
    view = memoryview(data)
    position = 0
    while position < len(data):
        chunk = view[position : position + 65_536]
        count = fast.process_framed(chunk, first_seq=seq, receive_ts_ns=seq)
        used = fast.last_framed_bytes
        offset = 0
        for i in range(count):
            length = int.from_bytes(chunk[offset : offset + 2], "big")
            python.process(chunk[offset + 2 : offset + 2 + length], seq=seq + i, receive_ts_ns=seq)
            offset += 2 + length
        assert offset == used
        expected += batch_records(python.take_events(publish_ts_ns=seq))
        actual += fast.take_records(publish_ts_ns=seq)
        seq += count
        position += used

    assert python.stats.messages == 200_000
    assert fast.stats == python.stats
    assert python.stats.decode_errors == python.stats.unknown_order == 0
    assert actual == expected


def test_the_books_agree_with_itchcpps_native_book_engine_on_the_simulated_day(simulated_day):
    """An independent C++ implementation (itchcpp) ends the day with the same BBO per symbol."""
    book_module = pytest.importorskip("itchcpp.book")
    manager = book_module.BookManager()
    manager.process_stream(simulated_day)
    fast = FastNormalizer(midnight_ns=MIDNIGHT_NS)
    fast.process_framed(simulated_day, first_seq=1, receive_ts_ns=0)

    symbols = fast.symbols()
    assert manager.book_count() == len(symbols) == 300
    for locate, symbol in symbols.items():
        theirs = manager.book_for_symbol(symbol).bbo()  # prices as floats of dollars
        bids, asks = fast._levels(locate)
        assert (bids[0] if bids else (0, 0)) + (asks[0] if asks else (0, 0)) == (
            round(theirs.bid_price * 10_000) if theirs.has_bid else 0,
            theirs.bid_shares if theirs.has_bid else 0,
            round(theirs.ask_price * 10_000) if theirs.has_ask else 0,
            theirs.ask_shares if theirs.has_ask else 0,
        ), symbol


# ---------------------------------------------------------- (c) arbitrary bytes, no crash

ARBITRARY = st.one_of(
    st.binary(max_size=600),
    st.lists(st.one_of(ANY_VALID_RAW, _garbage()), max_size=40).map(framed),
    st.lists(st.one_of(ANY_VALID_RAW, _garbage()), max_size=40).map(lambda raws: framed(raws)[:-3]),
)


@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buffer=ARBITRARY, shard_count=st.sampled_from([1, 3]))
def test_arbitrary_bytes_never_crash_process_framed_or_process(buffer, shard_count):
    """Any buffer: every complete frame is one message counted once, nothing raises."""
    _, fast = both(shard_count=shard_count)
    fast.process(buffer, seq=1, receive_ts_ns=1)

    consumed = fast.process_framed(buffer, first_seq=2, receive_ts_ns=1)

    frames, position = 0, 0
    while position + 2 <= len(buffer):
        end = position + 2 + int.from_bytes(buffer[position : position + 2], "big")
        if end > len(buffer):
            break
        frames, position = frames + 1, end
    assert consumed == frames
    assert fast.last_framed_bytes == position
    assert fast.stats.messages == frames + 1
    fast.take_records(publish_ts_ns=0)
    decode_framed(buffer)


def test_buffers_of_every_kind_are_accepted_and_wrong_arguments_are_refused():
    _, fast = both()
    raw = encode(directory(1, "AAPL"))
    fast.process(bytearray(raw), seq=1, receive_ts_ns=0)
    fast.process(memoryview(raw), seq=2, receive_ts_ns=0)
    assert fast.process_framed(bytearray(framed([raw])), first_seq=3, receive_ts_ns=0) == 1
    assert fast.stats.messages == 3

    with pytest.raises(TypeError, match="missing required keyword-only argument: 'seq'"):
        fast.process(raw, receive_ts_ns=0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'sequence'"):
        fast.process(raw, sequence=1, seq=1, receive_ts_ns=0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 1 positional argument"):
        fast.process(raw, 1, seq=1, receive_ts_ns=0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        fast.process("not bytes", seq=1, receive_ts_ns=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq must be in 0..2"):
        fast.process(raw, seq=-1, receive_ts_ns=0)
    with pytest.raises(TypeError, match="process_messages\\(\\) needs an iterable"):
        fast.process_messages(5, first_seq=1, receive_ts_ns=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fast.process_messages([raw, 5], first_seq=1, receive_ts_ns=0)  # type: ignore[list-item]
    assert fast.stats.messages == 4  # the message before the bad item was applied


def test_problems_are_logged_at_counts_1_10_100_with_the_count(caplog):
    """Like the Python normalizer: one line per kind at 1, 10, 100, … never per message."""
    _, fast = both()
    with caplog.at_level("WARNING", logger="normalize.fast"):
        fast.process_framed(framed([b"Z"] * 150), first_seq=1, receive_ts_ns=0)
        for seq in range(5):
            fast.process(b"", seq=seq, receive_ts_ns=0)

    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "skipped 150 ITCH message(s) so far: undecodable message (UnknownMessageType); "
        "latest: unknown ITCH 5.0 message type 'Z' (0x5a) at offset 0",
        "skipped 1 ITCH message(s) so far: undecodable message (TruncatedMessage); "
        "latest: truncated ITCH 5.0 message at offset 0: needs 1 byte, only 0 available",
    ]


# --------------------------------------------------------------------- memory and lifetime


def test_memory_is_given_back_at_the_start_of_the_next_day():
    """Books emptied by 'O' and taken events release their memory."""
    _, fast = both()
    raws = [encode(directory(1, "AAPL"))]
    raws += [encode(AddOrder(1, 0, 1, ref, "B", 1, "AAPL", ref % 500)) for ref in range(50_000)]
    fast.process_framed(framed(raws), first_seq=1, receive_ts_ns=0)
    fast.take_records(publish_ts_ns=0)
    busy = fast.memory_bytes

    fast.process(encode(SystemEvent(0, 0, 2, "O")), seq=50_002, receive_ts_ns=0)
    fast.take_records(publish_ts_ns=0)

    assert busy > 1_000_000
    assert fast.memory_bytes < 700_000
    assert fast._levels(1) == ([], [])


def test_normalizers_are_freed_with_their_books():
    """Many short-lived normalizers with books do not grow the process."""

    def rss_kib() -> int:
        return (
            int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE") // 1024
        )

    raws = [encode(directory(1, "AAPL"))]
    raws += [encode(AddOrder(1, 0, 1, ref, "B", 1, "AAPL", ref)) for ref in range(20_000)]
    buffer = framed(raws)
    for _ in range(5):  # warm up the allocator
        FastNormalizer(midnight_ns=0).process_framed(buffer, first_seq=1, receive_ts_ns=0)
    gc.collect()
    before = rss_kib()
    for _ in range(100):
        fast = FastNormalizer(midnight_ns=0)
        fast.process_framed(buffer, first_seq=1, receive_ts_ns=0)
        fast.take_events(publish_ts_ns=0)
        del fast
    gc.collect()

    assert rss_kib() - before < 20_000  # each one held about 2 MB


def test_the_fuzz_tests_also_pass_under_python_dev_mode():
    """-X dev turns on the debug allocator hooks and extra runtime checks."""
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_arbitrary_bytes_never_crash_process_framed_or_process",
            f"{__file__}::test_streams_with_garbage_give_identical_events_stats_and_problem_counts",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "PYTHONMALLOC": "debug"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
