"""The normalizer against hand-built ITCH streams: exact Trade, Quote and Status events."""

from __future__ import annotations

import logging

import pytest

from normalize.itch import (
    AddOrder,
    AddOrderWithMpid,
    BrokenTrade,
    CrossTrade,
    IpoQuotingPeriodUpdate,
    LuldAuctionCollar,
    Message,
    MwcbDeclineLevel,
    MwcbStatus,
    NonCrossTrade,
    OperationalHalt,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    RegShoRestriction,
    StockDirectory,
    StockTradingAction,
    SystemEvent,
    encode,
)
from normalize.normalizer import (
    LocateShard,
    NormalizedEvent,
    Normalizer,
    NormalizerStats,
    batch_records,
    locate_shard,
)
from normalize.proto import marketdata_pb2 as pb
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

MIDNIGHT_NS = 1_732_060_800_000_000_000  # 2024-11-20T00:00:00Z
SESSION = "20241120AB"
PUBLISH_NS = 1_732_095_000_999_000_000
OPEN_NS = 34_200_000_000_000  # 09:30:00 after midnight, ITCH time
AAPL, MSFT = 1, 2  # stock locates
PAYLOADS = {MD_TRADES: pb.Trade, MD_QUOTES: pb.Quote, MD_STATUS: pb.Status}


def receive_ns(seq: int) -> int:
    """The receive time the tests give the message with MoldUDP64 sequence ``seq``."""
    return MIDNIGHT_NS + OPEN_NS + 5_000 + seq


def ts(seq: int) -> int:
    """The ITCH timestamp the tests give the message with sequence ``seq``."""
    return OPEN_NS + 1_000 * seq


def exchange_ns(seq: int) -> int:
    return MIDNIGHT_NS + ts(seq)


class Feed:
    """Sends encoded messages to a normalizer with consecutive sequence numbers from 1."""

    def __init__(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer
        self.seq = 0

    def send(self, *messages: Message) -> None:
        for message in messages:
            self.seq += 1
            seq = self.seq
            self.normalizer.process(encode(message), seq=seq, receive_ts_ns=receive_ns(seq))

    def next_ts(self) -> int:
        """The timestamp to put on the next message sent."""
        return ts(self.seq + 1)

    def events(self) -> list[tuple[str, object]]:
        """The queued events as (topic, decoded Protobuf message)."""
        return [
            (event.topic, PAYLOADS[event.topic].FromString(event.payload))
            for event in self.normalizer.take_events(publish_ts_ns=PUBLISH_NS)
        ]


# ------------------------------------------------------------------------- message builders


def system_event(code: str, timestamp: int) -> SystemEvent:
    return SystemEvent(0, 0, timestamp, code)


def directory(locate: int, stock: str, timestamp: int = 1_000) -> StockDirectory:
    return StockDirectory(
        locate, 0, timestamp, stock, "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
    )


def add(locate: int, ref: int, side: str, shares: int, stock: str, price: int, t: int) -> AddOrder:
    return AddOrder(locate, 0, t, ref, side, shares, stock, price)


def new_feed(**options: object) -> Feed:
    """A normalizer with AAPL (locate 1) and MSFT (locate 2) announced as seq 1 and 2."""
    feed = Feed(Normalizer(midnight_ns=MIDNIGHT_NS, session=SESSION, **options))  # type: ignore[arg-type]
    feed.send(directory(AAPL, "AAPL"), directory(MSFT, "MSFT"))
    return feed


def quote(symbol: str, seq: int, bid: int, bid_size: int, ask: int, ask_size: int) -> tuple:
    return (
        MD_QUOTES,
        pb.Quote(
            symbol=symbol,
            exchange_ts_ns=exchange_ns(seq),
            seq=seq,
            receive_ts_ns=receive_ns(seq),
            publish_ts_ns=PUBLISH_NS,
            bid_price=bid,
            bid_size=bid_size,
            ask_price=ask,
            ask_size=ask_size,
            session=SESSION,
        ),
    )


def trade(symbol: str, seq: int, **fields: object) -> tuple:
    return (
        MD_TRADES,
        pb.Trade(
            symbol=symbol,
            exchange_ts_ns=exchange_ns(seq),
            seq=seq,
            receive_ts_ns=receive_ns(seq),
            publish_ts_ns=PUBLISH_NS,
            session=SESSION,
            **fields,
        ),
    )


def status(symbol: str, seq: int, **fields: object) -> tuple:
    fields.setdefault("exchange_ts_ns", exchange_ns(seq))
    return (
        MD_STATUS,
        pb.Status(
            symbol=symbol,
            seq=seq,
            receive_ts_ns=receive_ns(seq),
            publish_ts_ns=PUBLISH_NS,
            session=SESSION,
            **fields,
        ),
    )


# ------------------------------------------------------------------------------------ tests


def test_a_day_of_order_messages_yields_exactly_these_trades_quotes_and_statuses():
    """Start of messages, directory, trading action, then adds, executions (printable and
    not), a cancel, a replace, a delete, a hidden-order trade, crosses and a broken trade:
    every event with every field, in feed order."""
    feed = Feed(Normalizer(midnight_ns=MIDNIGHT_NS, session=SESSION))
    feed.send(
        system_event("O", ts(1)),  # 1
        directory(AAPL, "AAPL", ts(2)),  # 2
        directory(MSFT, "MSFT", ts(3)),  # 3
        StockTradingAction(AAPL, 0, ts(4), "AAPL", "T", " ", ""),  # 4
        add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(5)),  # 5
        AddOrderWithMpid(AAPL, 0, ts(6), 2, "S", 200, "AAPL", 1_002_500, "GSCO"),  # 6
        add(AAPL, 3, "B", 50, "AAPL", 990_000, ts(7)),  # 7: below the best bid
        OrderExecuted(AAPL, 0, ts(8), 2, 50, 1001),  # 8
        OrderExecutedWithPrice(AAPL, 0, ts(9), 1, 100, 1002, "N", 1_000_100),  # 9
        OrderExecutedWithPrice(AAPL, 0, ts(10), 2, 30, 1003, "Y", 1_002_400),  # 10
        OrderCancel(AAPL, 0, ts(11), 3, 20),  # 11
        OrderReplace(AAPL, 0, ts(12), 3, 4, 80, 1_001_000),  # 12
        OrderDelete(AAPL, 0, ts(13), 4),  # 13
        NonCrossTrade(AAPL, 0, ts(14), 0, "B", 500, "AAPL", 1_002_000, 1004),  # 14
        CrossTrade(AAPL, 0, ts(15), 10_000, "AAPL", 1_002_100, 1005, "C"),  # 15
        CrossTrade(MSFT, 0, ts(16), 0, "MSFT", 4_000_000, 0, "O"),  # 16: no shares matched
        BrokenTrade(AAPL, 0, ts(17), 1003),  # 17
    )
    events = feed.events()
    assert events == [
        status("", 1, kind=pb.STATUS_KIND_SYSTEM_EVENT, code="O"),
        status("AAPL", 4, kind=pb.STATUS_KIND_TRADING_ACTION, code="T", halted=False),
        quote("AAPL", 5, 1_000_000, 100, 0, 0),
        quote("AAPL", 6, 1_000_000, 100, 1_002_500, 200),
        trade(
            "AAPL",
            8,
            price=1_002_500,
            size=50,
            side=pb.SIDE_SELL,
            match_number=1001,
            kind=pb.TRADE_KIND_EXECUTION,
        ),
        quote("AAPL", 8, 1_000_000, 100, 1_002_500, 150),
        quote("AAPL", 9, 990_000, 50, 1_002_500, 150),
        trade(
            "AAPL",
            10,
            price=1_002_400,
            size=30,
            side=pb.SIDE_SELL,
            match_number=1003,
            kind=pb.TRADE_KIND_EXECUTION_WITH_PRICE,
        ),
        quote("AAPL", 10, 990_000, 50, 1_002_500, 120),
        quote("AAPL", 11, 990_000, 30, 1_002_500, 120),
        quote("AAPL", 12, 1_001_000, 80, 1_002_500, 120),
        quote("AAPL", 13, 0, 0, 1_002_500, 120),
        trade(
            "AAPL",
            14,
            price=1_002_000,
            size=500,
            side=pb.SIDE_BUY,
            match_number=1004,
            kind=pb.TRADE_KIND_NON_CROSS,
        ),
        trade(
            "AAPL",
            15,
            price=1_002_100,
            size=10_000,
            match_number=1005,
            kind=pb.TRADE_KIND_CROSS,
            cross_type="C",
        ),
        trade(
            "AAPL",
            17,
            price=1_002_400,
            size=30,
            side=pb.SIDE_SELL,
            match_number=1003,
            kind=pb.TRADE_KIND_BROKEN,
        ),
    ]
    assert feed.normalizer.stats == NormalizerStats(messages=17, trades=5, quotes=8, statuses=2)
    assert feed.normalizer.book(AAPL).bbo() == (0, 0, 1_002_500, 120)  # type: ignore[union-attr]
    assert feed.normalizer.symbols() == {AAPL: "AAPL", MSFT: "MSFT"}


def test_an_add_below_the_best_bid_or_above_the_best_ask_emits_no_quote():
    """With 100.00 x 100 / 100.25 x 200 quoted, adds at 99.99 (bid) and 100.26 (ask) and
    their cancels change no best level, so no Quote follows them."""
    feed = new_feed()
    t = feed.next_ts()
    feed.send(
        add(AAPL, 1, "B", 100, "AAPL", 1_000_000, t),
        add(AAPL, 2, "S", 200, "AAPL", 1_002_500, t),
    )
    assert len(feed.events()) == 2
    feed.send(
        add(AAPL, 3, "B", 700, "AAPL", 999_900, t),
        add(AAPL, 4, "S", 700, "AAPL", 1_002_600, t),
        OrderCancel(AAPL, 0, t, 3, 100),
        OrderDelete(AAPL, 0, t, 4),
    )
    assert feed.events() == []
    assert feed.normalizer.stats.quotes == 2


def test_an_add_at_the_best_bid_price_emits_a_quote_with_the_new_size():
    """A second 100.00 bid of 50 shares makes the best bid size 150."""
    feed = new_feed()
    feed.send(add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(3)))
    feed.send(add(AAPL, 2, "B", 50, "AAPL", 1_000_000, ts(4)))
    assert feed.events() == [
        quote("AAPL", 3, 1_000_000, 100, 0, 0),
        quote("AAPL", 4, 1_000_000, 150, 0, 0),
    ]


def test_a_non_printable_execution_reduces_the_book_but_prints_no_trade():
    """A 'C' with Printable 'N' for 40 of 100 shares: a Quote with 60, no Trade."""
    feed = new_feed()
    feed.send(add(MSFT, 7, "S", 100, "MSFT", 4_000_000, ts(3)))
    feed.send(OrderExecutedWithPrice(MSFT, 0, ts(4), 7, 40, 555, "N", 3_999_900))
    assert feed.events() == [
        quote("MSFT", 3, 0, 0, 4_000_000, 100),
        quote("MSFT", 4, 0, 0, 4_000_000, 60),
    ]
    assert feed.normalizer.stats.trades == 0


def test_a_broken_trade_of_a_forgotten_match_carries_only_its_match_number_and_symbol():
    """With match_memory=1, trade 11 is forgotten once trade 12 prints: its break has price,
    size 0 and no side; the break of trade 12 repeats its price, size and side."""
    feed = new_feed(match_memory=1)
    t = feed.next_ts()
    feed.send(
        NonCrossTrade(MSFT, 0, t, 0, "S", 10, "MSFT", 4_000_000, 11),  # 3
        NonCrossTrade(MSFT, 0, t, 0, "B", 20, "MSFT", 4_000_100, 12),  # 4
    )
    feed.events()
    feed.send(BrokenTrade(MSFT, 0, ts(5), 11), BrokenTrade(MSFT, 0, ts(6), 12))
    assert feed.events() == [
        trade("MSFT", 5, match_number=11, kind=pb.TRADE_KIND_BROKEN),
        trade(
            "MSFT",
            6,
            price=4_000_100,
            size=20,
            side=pb.SIDE_BUY,
            match_number=12,
            kind=pb.TRADE_KIND_BROKEN,
        ),
    ]


def test_trading_actions_set_halted_for_halt_pause_and_quotation_only_and_clear_it_on_trading():
    """'H', 'P', 'Q' → halted with their reason codes; 'T' → not halted."""
    feed = new_feed()
    feed.send(
        StockTradingAction(AAPL, 0, ts(3), "AAPL", "H", " ", "T1"),
        StockTradingAction(AAPL, 0, ts(4), "AAPL", "P", " ", "LUDP"),
        StockTradingAction(AAPL, 0, ts(5), "AAPL", "Q", " ", "LUDP"),
        StockTradingAction(AAPL, 0, ts(6), "AAPL", "T", " ", ""),
    )
    action = pb.STATUS_KIND_TRADING_ACTION
    assert feed.events() == [
        status("AAPL", 3, kind=action, code="H", reason="T1", halted=True),
        status("AAPL", 4, kind=action, code="P", reason="LUDP", halted=True),
        status("AAPL", 5, kind=action, code="Q", reason="LUDP", halted=True),
        status("AAPL", 6, kind=action, code="T", reason="", halted=False),
    ]


def test_per_symbol_statuses_carry_the_symbols_current_halted_state():
    """Reg SHO, LULD collar and IPO statuses repeat the halt in force; an operational halt
    halts the symbol until its resume."""
    feed = new_feed()
    feed.send(
        StockTradingAction(MSFT, 0, ts(3), "MSFT", "P", " ", "LUDP"),
        LuldAuctionCollar(MSFT, 0, ts(4), "MSFT", 4_000_000, 4_200_000, 3_800_000, 1),
        StockTradingAction(MSFT, 0, ts(5), "MSFT", "T", " ", ""),
        RegShoRestriction(MSFT, 0, ts(6), "MSFT", "1"),
        OperationalHalt(MSFT, 0, ts(7), "MSFT", "Q", "H"),
        IpoQuotingPeriodUpdate(MSFT, 0, ts(8), "MSFT", 36_000, "A", 250_000),
        OperationalHalt(MSFT, 0, ts(9), "MSFT", "Q", "T"),
    )
    assert feed.events() == [
        status("MSFT", 3, kind=pb.STATUS_KIND_TRADING_ACTION, code="P", reason="LUDP", halted=True),
        status(
            "MSFT",
            4,
            kind=pb.STATUS_KIND_LULD_COLLAR,
            reason="reference=4000000 upper=4200000 lower=3800000 extension=1",
            halted=True,
        ),
        status("MSFT", 5, kind=pb.STATUS_KIND_TRADING_ACTION, code="T", halted=False),
        status("MSFT", 6, kind=pb.STATUS_KIND_REG_SHO, code="1", halted=False),
        status("MSFT", 7, kind=pb.STATUS_KIND_OPERATIONAL_HALT, code="H", reason="Q", halted=True),
        status(
            "MSFT",
            8,
            kind=pb.STATUS_KIND_IPO_QUOTING,
            code="A",
            reason="release_time=36000 price=250000",
            halted=True,
        ),
        status("MSFT", 9, kind=pb.STATUS_KIND_OPERATIONAL_HALT, code="T", reason="Q", halted=False),
    ]


def test_market_wide_circuit_breaker_messages_are_market_wide_statuses():
    """'V' lists the three levels (Price(8)); 'W' names the breached level; symbol is ""."""
    feed = new_feed()
    feed.send(
        MwcbDeclineLevel(0, 0, ts(3), 500_000_000_000, 450_000_000_000, 400_000_000_000),
        MwcbStatus(0, 0, ts(4), "1"),
    )
    assert feed.events() == [
        status(
            "",
            3,
            kind=pb.STATUS_KIND_MWCB,
            reason="level_1=500000000000 level_2=450000000000 level_3=400000000000",
        ),
        status("", 4, kind=pb.STATUS_KIND_MWCB, code="1"),
    ]


def test_orders_of_unknown_references_and_symbols_are_counted_and_skipped():
    """An execution, cancel, delete and replace of ref 999 count four unknown orders; an add
    and a trading action for locate 9 (never announced) count two unknown symbols."""
    feed = new_feed()
    t = feed.next_ts()
    feed.send(
        OrderExecuted(AAPL, 0, t, 999, 10, 1),
        OrderCancel(AAPL, 0, t, 999, 10),
        OrderDelete(AAPL, 0, t, 999),
        OrderReplace(AAPL, 0, t, 999, 1000, 10, 1_000_000),
        add(9, 1, "B", 100, "ZZZZ", 1_000_000, t),
        StockTradingAction(9, 0, t, "ZZZZ", "H", " ", "T1"),
    )
    assert feed.events() == []
    assert feed.normalizer.stats == NormalizerStats(messages=8, unknown_order=4, unknown_symbol=2)
    assert feed.normalizer.problem_counts() == {
        "order message for an unknown reference number": 4,
        "message for an unannounced stock locate": 2,
    }


def test_an_order_the_book_refuses_is_counted_as_inconsistent_and_skipped():
    """A second add of live ref 1 and an execution of more shares than rest are skipped."""
    feed = new_feed()
    t = feed.next_ts()
    feed.send(
        add(AAPL, 1, "B", 100, "AAPL", 1_000_000, t),
        add(AAPL, 1, "S", 100, "AAPL", 1_010_000, t),
        OrderExecuted(AAPL, 0, t, 1, 101, 77),
    )
    assert feed.events() == [quote("AAPL", 3, 1_000_000, 100, 0, 0)]
    assert feed.normalizer.stats.inconsistent_order == 2
    assert feed.normalizer.stats.trades == 0


def test_messages_for_other_shards_are_skipped_and_counted_without_decoding():
    """Shard 1 of 2 owns odd locates: locate 2's directory, add and a garbled locate-2 add
    are skipped; it processes 'S' but leaves publishing market-wide events to shard 0."""
    shard1 = Feed(Normalizer(midnight_ns=MIDNIGHT_NS, session=SESSION, shard=locate_shard(1, 2)))
    shard0 = Feed(Normalizer(midnight_ns=MIDNIGHT_NS, session=SESSION, shard=locate_shard(0, 2)))
    for feed in (shard1, shard0):
        feed.send(
            system_event("O", ts(1)),
            directory(AAPL, "AAPL", ts(2)),
            directory(MSFT, "MSFT", ts(3)),
            add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(4)),
            add(MSFT, 2, "S", 100, "MSFT", 4_000_000, ts(5)),
        )
        feed.seq += 1
        feed.normalizer.process(b"A\x00\x02garbage", seq=feed.seq, receive_ts_ns=receive_ns(6))
    assert shard1.events() == [quote("AAPL", 4, 1_000_000, 100, 0, 0)]
    assert shard1.normalizer.stats == NormalizerStats(messages=6, skipped_other_shard=3, quotes=1)
    assert shard0.events() == [
        status("", 1, kind=pb.STATUS_KIND_SYSTEM_EVENT, code="O"),
        quote("MSFT", 5, 0, 0, 4_000_000, 100),
    ]
    assert shard0.normalizer.stats == NormalizerStats(
        messages=6, skipped_other_shard=2, decode_errors=1, quotes=1, statuses=1
    )


def test_decoded_messages_for_other_shards_are_skipped_too():
    """process_message applies the same shard rule as process."""
    normalizer = Normalizer(midnight_ns=MIDNIGHT_NS, shard=locate_shard(1, 2))
    normalizer.process_message(directory(MSFT, "MSFT"), seq=1, receive_ts_ns=0)
    normalizer.process_message(directory(AAPL, "AAPL"), seq=2, receive_ts_ns=0)
    assert normalizer.symbols() == {AAPL: "AAPL"}
    assert normalizer.stats == NormalizerStats(messages=2, skipped_other_shard=1)


def test_locate_shard_owns_locates_by_remainder_and_rejects_bad_arguments():
    """Shard 2 of 3 owns 2, 5, 8; index and count out of range raise ValueError."""
    shard = locate_shard(2, 3)
    assert shard == LocateShard(2, 3)
    assert [locate for locate in range(10) if shard(locate)] == [2, 5, 8]
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        locate_shard(0, 0)
    with pytest.raises(ValueError, match=r"index must be in 0\.\.2, got 3"):
        locate_shard(3, 3)


def test_a_gap_marks_every_symbol_stale_until_the_next_start_of_messages():
    """After mark_stale: FEED_STALE per symbol; no Quotes, but trades of known orders and
    hidden/cross trades still print and unknown refs are counted. The next 'O' publishes
    FEED_RECOVERED and an empty Quote per symbol, and Quotes resume from the empty book."""
    feed = new_feed()
    feed.send(
        add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(3)),
        add(MSFT, 2, "S", 300, "MSFT", 4_000_000, ts(4)),
    )
    assert len(feed.events()) == 2

    feed.normalizer.mark_stale(seq=5, receive_ts_ns=receive_ns(5), reason="lost 5..9")
    assert feed.events() == [
        status(
            "AAPL",
            5,
            kind=pb.STATUS_KIND_FEED_STALE,
            reason="lost 5..9",
            exchange_ts_ns=exchange_ns(4),  # the last message seen
        ),
        status(
            "MSFT",
            5,
            kind=pb.STATUS_KIND_FEED_STALE,
            reason="lost 5..9",
            exchange_ts_ns=exchange_ns(4),
        ),
    ]
    assert feed.normalizer.stats.stale_symbols == 2
    assert feed.normalizer.is_stale(AAPL)

    feed.seq = 9
    feed.send(
        add(AAPL, 3, "B", 100, "AAPL", 1_001_000, ts(10)),  # 10: better bid, no Quote
        OrderExecuted(MSFT, 0, ts(11), 2, 100, 901),  # 11: known order, trade
        OrderExecuted(MSFT, 0, ts(12), 404, 100, 902),  # 12: lost add, counted
        NonCrossTrade(AAPL, 0, ts(13), 0, "B", 5, "AAPL", 1_000_500, 903),  # 13
    )
    feed.normalizer.mark_stale(seq=14, receive_ts_ns=receive_ns(14), reason="again")
    assert feed.events() == [
        trade(
            "MSFT",
            11,
            price=4_000_000,
            size=100,
            side=pb.SIDE_SELL,
            match_number=901,
            kind=pb.TRADE_KIND_EXECUTION,
        ),
        trade(
            "AAPL",
            13,
            price=1_000_500,
            size=5,
            side=pb.SIDE_BUY,
            match_number=903,
            kind=pb.TRADE_KIND_NON_CROSS,
        ),
    ]
    assert feed.normalizer.book(AAPL).bbo() == (1_001_000, 100, 0, 0)  # type: ignore[union-attr]
    assert feed.normalizer.stats.unknown_order == 1

    feed.seq = 19
    feed.send(system_event("O", ts(20)))
    assert feed.events() == [
        status("", 20, kind=pb.STATUS_KIND_SYSTEM_EVENT, code="O"),
        status(
            "AAPL",
            20,
            kind=pb.STATUS_KIND_FEED_RECOVERED,
            reason="start of messages: the book restarts empty",
        ),
        quote("AAPL", 20, 0, 0, 0, 0),
        status(
            "MSFT",
            20,
            kind=pb.STATUS_KIND_FEED_RECOVERED,
            reason="start of messages: the book restarts empty",
        ),
        quote("MSFT", 20, 0, 0, 0, 0),
    ]
    assert feed.normalizer.stats.stale_symbols == 0
    assert not feed.normalizer.is_stale(AAPL)
    assert len(feed.normalizer.book(AAPL)) == 0  # type: ignore[arg-type]

    feed.send(add(AAPL, 1, "S", 10, "AAPL", 1_100_000, ts(21)))
    assert feed.events() == [quote("AAPL", 21, 0, 0, 1_100_000, 10)]


def test_a_symbol_announced_again_under_another_name_starts_afresh():
    """Locate 1 re-announced as AAPL keeps its book; announced as AMZN it gets an empty one."""
    feed = new_feed()
    feed.send(add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(3)), directory(AAPL, "AAPL"))
    assert len(feed.normalizer.book(AAPL)) == 1  # type: ignore[arg-type]
    feed.send(directory(AAPL, "AMZN"))
    assert feed.normalizer.symbols() == {AAPL: "AMZN", MSFT: "MSFT"}
    assert len(feed.normalizer.book(AAPL)) == 0  # type: ignore[arg-type]


def test_garbled_bytes_are_counted_and_logged_by_kind_at_powers_of_ten(caplog):
    """Empty, cut-short, over-long, non-ASCII and unknown-type messages never raise (a
    message whose bytes disagree with its type's length is a LengthMismatch); 15
    unknown-type messages log twice (at 1 and 10), each other kind once."""
    feed = new_feed()
    good_add = encode(add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(3)))
    bad_stock = good_add[:24] + b"\xff" + good_add[25:]
    garbage = [b"", good_add[:10], good_add + b"\x00", bad_stock] + [b"Z\x00\x01xyz"] * 15
    with caplog.at_level(logging.WARNING, logger="normalize.normalizer"):
        for seq, payload in enumerate(garbage, start=3):
            feed.normalizer.process(payload, seq=seq, receive_ts_ns=0)
    assert feed.events() == []
    assert feed.normalizer.stats == NormalizerStats(messages=2 + 19, decode_errors=19)
    assert feed.normalizer.problem_counts() == {
        "undecodable message (TruncatedMessage)": 1,
        "undecodable message (LengthMismatch)": 2,
        "undecodable message (InvalidAlphaField)": 1,
        "undecodable message (UnknownMessageType)": 15,
    }
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 5
    assert logged[-1] == (
        "skipped 10 ITCH message(s) so far: undecodable message (UnknownMessageType); "
        "latest: unknown ITCH 5.0 message type 'Z' (0x5a) at offset 0"
    )


def test_a_memoryview_payload_is_processed_like_bytes():
    """The add arrives as a memoryview slice of a larger buffer; its Quote is published."""
    feed = new_feed()
    buffer = b"\x00\x00" + encode(add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(3)))
    feed.normalizer.process(memoryview(buffer)[2:], seq=3, receive_ts_ns=receive_ns(3))
    assert feed.events() == [quote("AAPL", 3, 1_000_000, 100, 0, 0)]


def test_take_events_stamps_the_publish_time_and_empties_the_queue():
    """Events come out once, with publish_ts_ns set; the next call returns nothing."""
    feed = new_feed()
    feed.send(add(AAPL, 1, "B", 100, "AAPL", 1_000_000, ts(3)))
    assert feed.normalizer.pending_events == 1
    (event,) = feed.normalizer.take_events(publish_ts_ns=123)
    assert event.topic == MD_QUOTES
    assert event.symbol == "AAPL"
    assert pb.Quote.FromString(event.payload).publish_ts_ns == 123
    assert feed.normalizer.take_events(publish_ts_ns=124) == []
    assert feed.normalizer.pending_events == 0


def test_batch_records_groups_events_per_topic_and_symbol_in_feed_order():
    """Interleaved AAPL/MSFT trades, quotes and a market-wide status become four records,
    ordered by first appearance, each an EventBatch with its events in feed order."""
    trades = [pb.Trade(symbol=s, seq=n) for n, s in enumerate(["AAPL", "MSFT", "AAPL"])]
    quotes = [pb.Quote(symbol="AAPL", seq=10), pb.Quote(symbol="AAPL", seq=11)]
    system = pb.Status(symbol="", code="O", seq=12)
    events = [
        NormalizedEvent(MD_TRADES, "AAPL", trades[0].SerializeToString()),
        NormalizedEvent(MD_QUOTES, "AAPL", quotes[0].SerializeToString()),
        NormalizedEvent(MD_TRADES, "MSFT", trades[1].SerializeToString()),
        NormalizedEvent(MD_STATUS, "", system.SerializeToString()),
        NormalizedEvent(MD_TRADES, "AAPL", trades[2].SerializeToString()),
        NormalizedEvent(MD_QUOTES, "AAPL", quotes[1].SerializeToString()),
    ]
    records = batch_records(events)
    assert [(topic, key) for topic, key, _ in records] == [
        (MD_TRADES, b"AAPL"),
        (MD_QUOTES, b"AAPL"),
        (MD_TRADES, b"MSFT"),
        (MD_STATUS, b""),
    ]
    batches = [pb.EventBatch.FromString(value) for _, _, value in records]
    assert batches[0] == pb.EventBatch(
        symbol="AAPL", events=[pb.Event(trade=trades[0]), pb.Event(trade=trades[2])]
    )
    assert batches[1] == pb.EventBatch(
        symbol="AAPL", events=[pb.Event(quote=quotes[0]), pb.Event(quote=quotes[1])]
    )
    assert batches[2] == pb.EventBatch(symbol="MSFT", events=[pb.Event(trade=trades[1])])
    assert batches[3] == pb.EventBatch(symbol="", events=[pb.Event(status=system)])


def test_batch_records_rejects_a_topic_it_cannot_batch():
    """An oms.orders event raises ValueError naming the accepted topics."""
    with pytest.raises(ValueError, match="topic 'oms.orders' cannot be batched"):
        batch_records([NormalizedEvent("oms.orders", "X", b"")])


def test_the_normalized_event_is_a_frozen_value():
    """Equal fields compare equal; assigning a field raises."""
    event = NormalizedEvent(MD_TRADES, "AAPL", b"\x08\x01")
    assert event == NormalizedEvent(MD_TRADES, "AAPL", b"\x08\x01")
    with pytest.raises(AttributeError):
        event.symbol = "MSFT"  # type: ignore[misc]
