"""Properties of the books and Quotes over random valid order streams.

``order_streams`` draws ITCH order messages over three symbols in which every execution,
cancel, delete and replace names a live order, and keeps a plain model of the live orders
beside it; the expected BBO is recomputed from scratch from that model after every message.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from normalize.book import BUY, SELL, Bbo
from normalize.itch import (
    AddOrder,
    AddOrderWithMpid,
    Message,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    StockDirectory,
    encode,
)
from normalize.normalizer import Normalizer
from normalize.proto import marketdata_pb2 as pb
from tickerplant.topics import MD_QUOTES, MD_TRADES

SYMBOLS = {1: "AAPL", 2: "MSFT", 3: "NVDA"}  # stock locate -> symbol
# A narrow band of 21 prices, so orders often share levels and changes often hit the top.
PRICES = st.integers(min_value=99_90, max_value=100_10).map(lambda cents: cents * 100)
SHARES = st.integers(min_value=1, max_value=500)


@dataclass(frozen=True)
class Step:
    """One message of a stream, the locate it touches, what the model expects after it."""

    message: Message
    locate: int
    levels: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]  # bids, asks
    bbo: Bbo
    printed: bool  # whether the message prints a Trade


def brute_force_levels(
    live: dict[int, tuple[int, str, int, int]], locate: int
) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """Aggregate shares per price of ``locate``'s live orders: bids high→low, asks low→high."""
    sides: dict[str, dict[int, int]] = {BUY: {}, SELL: {}}
    for order_locate, side, price, shares in live.values():
        if order_locate == locate:
            sides[side][price] = sides[side].get(price, 0) + shares
    bids = tuple(sorted(sides[BUY].items(), reverse=True))
    asks = tuple(sorted(sides[SELL].items()))
    return bids, asks


def bbo_of(levels: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]) -> Bbo:
    bids, asks = levels
    bid = bids[0] if bids else (0, 0)
    ask = asks[0] if asks else (0, 0)
    return bid[0], bid[1], ask[0], ask[1]


@st.composite
def order_streams(draw: st.DrawFn) -> list[Step]:
    """Up to 80 valid order messages over three symbols, with the model's expectations."""
    live: dict[int, tuple[int, str, int, int]] = {}  # ref -> (locate, side, price, shares)
    next_ref = 1
    next_match = 1
    steps: list[Step] = []
    for timestamp in range(draw(st.integers(min_value=1, max_value=80))):
        kinds = ["add"] + (["execute", "execute_with_price", "cancel", "delete", "replace"] * 2)
        kind = draw(st.sampled_from(kinds)) if live else "add"
        printed = False
        if kind == "add":
            locate = draw(st.sampled_from(sorted(SYMBOLS)))
            side = draw(st.sampled_from([BUY, SELL]))
            price = draw(PRICES)
            shares = draw(SHARES)
            ref, next_ref = next_ref, next_ref + 1
            live[ref] = (locate, side, price, shares)
            if draw(st.booleans()):
                message: Message = AddOrder(
                    locate, 0, timestamp, ref, side, shares, SYMBOLS[locate], price
                )
            else:
                message = AddOrderWithMpid(
                    locate, 0, timestamp, ref, side, shares, SYMBOLS[locate], price, "MPID"
                )
        else:
            ref = draw(st.sampled_from(sorted(live)))
            locate, side, price, resting = live[ref]
            if kind == "delete":
                del live[ref]
                message = OrderDelete(locate, 0, timestamp, ref)
            elif kind == "replace":
                new_price = draw(PRICES)
                new_shares = draw(SHARES)
                new_ref, next_ref = next_ref, next_ref + 1
                del live[ref]
                live[new_ref] = (locate, side, new_price, new_shares)
                message = OrderReplace(locate, 0, timestamp, ref, new_ref, new_shares, new_price)
            else:
                shares = draw(st.integers(min_value=1, max_value=resting))
                if shares == resting:
                    del live[ref]
                else:
                    live[ref] = (locate, side, price, resting - shares)
                match, next_match = next_match, next_match + 1
                if kind == "execute":
                    printed = True
                    message = OrderExecuted(locate, 0, timestamp, ref, shares, match)
                elif kind == "execute_with_price":
                    printable = draw(st.sampled_from(["Y", "N"]))
                    printed = printable == "Y"
                    message = OrderExecutedWithPrice(
                        locate, 0, timestamp, ref, shares, match, printable, draw(PRICES)
                    )
                else:
                    message = OrderCancel(locate, 0, timestamp, ref, shares)
        levels = brute_force_levels(live, locate)
        steps.append(Step(message, locate, levels, bbo_of(levels), printed))
    return steps


def announced_normalizer() -> Normalizer:
    normalizer = Normalizer(midnight_ns=0, session="S")
    for locate, symbol in SYMBOLS.items():
        directory = StockDirectory(
            locate, 0, 0, symbol, "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
        )
        normalizer.process(encode(directory), seq=0, receive_ts_ns=0)
    return normalizer


@settings(max_examples=200, deadline=None)
@given(order_streams())
def test_the_incremental_bbo_after_every_message_equals_a_bbo_recomputed_from_live_orders(steps):
    """After each message, each symbol's levels and BBO equal the model's, computed from
    scratch from the live orders; no message is refused or skipped."""
    normalizer = announced_normalizer()
    expected: dict[int, tuple] = {locate: ((), ()) for locate in SYMBOLS}
    for seq, step in enumerate(steps, start=1):
        normalizer.process(encode(step.message), seq=seq, receive_ts_ns=seq)
        expected[step.locate] = step.levels
        for locate, levels in expected.items():
            book = normalizer.book(locate)
            assert book is not None
            assert (tuple(book.levels(BUY)), tuple(book.levels(SELL))) == levels
            assert book.bbo() == bbo_of(levels)
    stats = normalizer.stats
    assert stats.unknown_order == stats.inconsistent_order == stats.decode_errors == 0


@settings(max_examples=200, deadline=None)
@given(order_streams())
def test_the_quotes_published_are_exactly_the_sequence_of_bbo_changes(steps):
    """A Quote is published for a message exactly when it changed its symbol's BBO, carrying
    that message's sequence and the new BBO; a Trade exactly for 'E' and printable 'C'."""
    normalizer = announced_normalizer()
    previous: dict[int, Bbo] = {locate: (0, 0, 0, 0) for locate in SYMBOLS}
    expected_quotes: list[tuple[str, int, Bbo]] = []
    expected_trades: list[tuple[str, int]] = []
    for seq, step in enumerate(steps, start=1):
        normalizer.process(encode(step.message), seq=seq, receive_ts_ns=seq)
        if step.printed:
            expected_trades.append((SYMBOLS[step.locate], seq))
        if step.bbo != previous[step.locate]:
            expected_quotes.append((SYMBOLS[step.locate], seq, step.bbo))
            previous[step.locate] = step.bbo
    events = normalizer.take_events(publish_ts_ns=0)
    quotes = [pb.Quote.FromString(e.payload) for e in events if e.topic == MD_QUOTES]
    trades = [pb.Trade.FromString(e.payload) for e in events if e.topic == MD_TRADES]
    assert [
        (q.symbol, q.seq, (q.bid_price, q.bid_size, q.ask_price, q.ask_size)) for q in quotes
    ] == expected_quotes
    assert [(t.symbol, t.seq) for t in trades] == expected_trades
