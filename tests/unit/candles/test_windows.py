"""The pure windowing: exact bars, late and too-late trades, broken trades, Polars parity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candles.bars import Bar, BarAccumulator, vwap_e8
from candles.dataflow import parse_batch, parse_trades
from candles.windows import SymbolWindows
from normalize.proto import marketdata_pb2 as pb
from tests.unit.candles.reference import polars_bars, simulated_records, trades_frame
from tickerplant.bus import Record

S = 1_000_000_000
T0 = 1_709_303_400 * S  # 2024-03-01 14:30:00 UTC, a minute boundary


def trade(ts: int, seq: int, price: int, size: int, match: int = 0, broken: bool = False):
    return (ts, seq, price, size, match, broken)


def bar(start: int, width: int, o, h, lo, c, v, n, notional, *, revised=False, seq, ts) -> Bar:
    return Bar("AAPL", width, start, start + width * S, o, h, lo, c, v, n, notional,
               vwap_e8(notional, v), revised, seq, ts)  # fmt: skip


def test_hand_built_trades_give_exact_one_second_and_one_minute_bars():
    """Three trades in one second, one in the next: the first second's bar closes exactly
    when the next second's trade arrives; the minute bar closes at flush."""
    w = SymbolWindows("AAPL")
    out = w.on_trades(
        [
            trade(T0 + 100, 1, 1_875_000, 100, 11),
            trade(T0 + 200, 2, 1_876_000, 50, 12),
            trade(T0 + 300, 3, 1_874_500, 10, 13),
        ]
    )
    assert out == []
    out = w.on_trades([trade(T0 + S + 5, 4, 1_875_500, 40, 14)])
    notional = 1_875_000 * 100 + 1_876_000 * 50 + 1_874_500 * 10
    assert out == [
        bar(
            T0, 1, 1_875_000, 1_876_000, 1_874_500, 1_874_500, 160, 3, notional, seq=3, ts=T0 + 300
        ),  # fmt: skip
    ]
    assert out[0].vwap_e8 == 18_752_812_500  # 300_045_000 / 160 = 1_875_281.25 (4 decimals)
    assert w.flush() == [
        bar(
            T0 + S,
            1,
            1_875_500,
            1_875_500,
            1_875_500,
            1_875_500,
            40,
            1,
            1_875_500 * 40,
            seq=4,
            ts=T0 + S + 5,
        ),  # fmt: skip
        bar(
            T0,
            60,
            1_875_000,
            1_876_000,
            1_874_500,
            1_875_500,
            200,
            4,
            notional + 1_875_500 * 40,
            seq=4,
            ts=T0 + S + 5,
        ),  # fmt: skip
    ]


def test_vwap_rounds_half_up_at_eight_decimals():
    """VWAP of 1.0001 x1 and 1.0002 x2 is 1.00016666…, stored as 100016667e-8."""
    assert vwap_e8(10_001 + 2 * 10_002, 3) == 100_016_667
    assert vwap_e8(0, 0) == 0


def test_a_late_trade_within_the_lateness_revises_its_closed_bar():
    """A trade 3 s late (lateness 10 s) joins its second's bar, which is republished revised."""
    w = SymbolWindows("AAPL")
    w.on_trades([trade(T0, 1, 1_000_000, 10)])
    assert [b.start_ns for b in w.on_trades([trade(T0 + 3 * S, 2, 1_000_100, 5)])] == [T0]
    out = w.on_trades([trade(T0 + 500, 3, 1_010_000, 1)])
    assert out == [
        bar(
            T0,
            1,
            1_000_000,
            1_010_000,
            1_000_000,
            1_010_000,
            11,
            2,
            10_000_000 + 1_010_000,
            revised=True,
            seq=3,
            ts=T0 + 500,
        ),  # fmt: skip
    ]
    assert w.stats.too_late == 0
    assert w.stats.revisions == 1


def test_a_trade_later_than_the_allowed_lateness_is_counted_not_applied():
    """With the frontier 11 s past a trade's time, the trade is counted in too_late."""
    w = SymbolWindows("AAPL")
    w.on_trades([trade(T0, 1, 1_000_000, 10), trade(T0 + 11 * S, 2, 1_000_000, 10)])
    assert w.on_trades([trade(T0 + 500, 3, 2_000_000, 1)]) == []
    assert w.stats.too_late == 1
    assert w.stats.trades == 2


def test_a_late_trade_in_a_second_without_trades_publishes_an_updated_bar():
    """A late trade opens a bar for an interval that closed empty: published revised at once."""
    w = SymbolWindows("AAPL")
    w.on_trades([trade(T0, 1, 1_000_000, 10), trade(T0 + 5 * S, 2, 1_000_000, 10)])
    out = w.on_trades([trade(T0 + 2 * S, 3, 1_200_000, 7)])
    assert out == [
        bar(
            T0 + 2 * S,
            1,
            1_200_000,
            1_200_000,
            1_200_000,
            1_200_000,
            7,
            1,
            8_400_000,
            revised=True,
            seq=3,
            ts=T0 + 2 * S,
        ),  # fmt: skip
    ]


def test_a_broken_trade_is_taken_out_of_its_closed_bar_and_the_revision_published():
    """Breaking the high trade of a closed second republishes the bar without it."""
    w = SymbolWindows("AAPL")
    w.on_trades(
        [
            trade(T0 + 1, 1, 1_000_000, 10, 501),
            trade(T0 + 2, 2, 1_500_000, 20, 502),
            trade(T0 + 3, 3, 1_100_000, 30, 503),
            trade(T0 + S, 4, 1_000_000, 1, 504),
        ]
    )
    out = w.on_trades([trade(T0 + S + 10, 5, 1_500_000, 20, 502, broken=True)])
    assert out == [
        bar(
            T0,
            1,
            1_000_000,
            1_100_000,
            1_000_000,
            1_100_000,
            40,
            2,
            10_000_000 + 33_000_000,
            revised=True,
            seq=3,
            ts=T0 + 3,
        ),  # fmt: skip
    ]
    assert w.stats.breaks == 1
    # The open minute bar loses the trade too, silently until it closes.
    (minute,) = [b for b in w.flush() if b.timeframe_s == 60]
    assert (minute.high, minute.volume, minute.trade_count) == (1_100_000, 41, 3)


def test_breaking_the_only_trade_of_a_closed_bar_withdraws_it():
    """A closed one-trade bar whose trade breaks is republished with trade_count 0."""
    w = SymbolWindows("AAPL")
    w.on_trades([trade(T0, 1, 1_000_000, 10, 7), trade(T0 + S, 2, 1_000_000, 1, 8)])
    (withdrawn,) = w.on_trades([trade(T0 + S + 1, 3, 1_000_000, 10, 7, broken=True)])
    assert (withdrawn.start_ns, withdrawn.trade_count, withdrawn.revised) == (T0, 0, True)


def test_a_break_of_an_unknown_trade_is_counted():
    """A broken trade naming no remembered match number changes nothing and is counted."""
    w = SymbolWindows("AAPL")
    w.on_trades([trade(T0, 1, 1_000_000, 10, 7)])
    assert w.on_trades([trade(T0 + 1, 2, 0, 0, 99, broken=True)]) == []
    assert (w.stats.breaks, w.stats.unmatched_breaks) == (1, 1)


def test_windows_survive_a_pickle_round_trip_mid_bar():
    """The dataflow's snapshot (a pickle) restores the same open bars and counters."""
    import pickle

    w = SymbolWindows("AAPL")
    w.on_trades([trade(T0, 1, 1_000_000, 10, 1), trade(T0 + 5, 2, 1_000_300, 3, 2)])
    restored = pickle.loads(pickle.dumps(w))
    assert restored.flush() == w.flush()
    assert len(w.flush()) == 0


def test_equal_time_and_seq_the_first_added_opens_and_the_last_added_closes():
    """Two trades with the same (time, seq) at each end of a bar: arrival order decides."""
    acc = BarAccumulator(T0, T0 + S)
    for t in [(T0 + 9, 3, 600, 1, 4), (T0 + 1, 1, 500, 1, 1), (T0 + 1, 1, 400, 1, 2),
              (T0 + 9, 3, 700, 1, 3)]:  # fmt: skip
        acc.add(*t)
    b = acc.to_bar("X", revised=False)
    assert (b.open, b.close, b.high, b.low, b.last_seq, b.last_ts_ns) == (
        500,
        700,
        700,
        400,
        3,
        T0 + 9,
    )


def _record(offset: int, symbol: str, trades: list[tuple[int, int, int, int, int, int]]) -> Record:
    batch = pb.EventBatch(
        symbol=symbol,
        events=[
            pb.Event(trade=pb.Trade(symbol=symbol, exchange_ts_ns=ts, seq=seq, price=price,
                                    size=size, match_number=match, kind=kind))
            for ts, seq, price, size, match, kind in trades
        ],
    )  # fmt: skip
    return Record("md.trades", 0, offset, symbol.encode(), batch.SerializeToString(), 0)


def test_a_batch_of_records_parses_to_one_item_per_symbol_with_its_trades_in_order():
    """Records A, B, A, empty C: two items, A's trades of both records in record order, the
    broken trade flagged; a record without trades gives no item."""
    e, broken = pb.TRADE_KIND_EXECUTION, pb.TRADE_KIND_BROKEN
    records = [
        _record(0, "AAA", [(T0, 1, 100, 5, 11, e), (T0 + 1, 2, 101, 6, 12, e)]),
        _record(1, "BBB", [(T0 + 2, 3, 200, 7, 13, e)]),
        _record(2, "AAA", [(T0 + 3, 4, 0, 0, 11, broken)]),
        _record(3, "CCC", []),
    ]
    assert parse_batch(records) == [
        ("AAA", ("AAA", [(T0, 1, 100, 5, 11, False), (T0 + 1, 2, 101, 6, 12, False),
                         (T0 + 3, 4, 0, 0, 11, True)])),
        ("BBB", ("BBB", [(T0 + 2, 3, 200, 7, 13, False)])),
    ]  # fmt: skip


prices = st.integers(min_value=1, max_value=10_000_000)
sizes = st.integers(min_value=1, max_value=100_000)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 130 * S), prices, sizes),
        min_size=1,
        max_size=200,
    )
)
def test_every_bar_keeps_the_ohlcv_invariants(raw):
    """For any trades (any order): low ≤ open, close ≤ high; volume = Σ size of the
    applied trades; VWAP within [low, high]."""
    w = SymbolWindows("AAPL")
    out: list[Bar] = []
    applied = 0
    for seq, (ts, price, size) in enumerate(raw, start=1):
        late = w.stats.too_late
        out += w.on_trades([trade(T0 + ts, seq, price, size, seq)])
        applied += size if w.stats.too_late == late else 0
    out += w.flush()
    latest = {b.key: b for b in out}
    for b in latest.values():
        assert b.low <= b.open <= b.high and b.low <= b.close <= b.high
        assert b.low * 10_000 <= b.vwap_e8 <= b.high * 10_000
    for width in (1, 60):
        assert sum(b.volume for k, b in latest.items() if k[1] == width) == applied


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 130 * S), prices, sizes, st.booleans()),
        min_size=1,
        max_size=120,
    ),
    st.lists(st.integers(1, 10), min_size=1, max_size=40),
    st.sampled_from([0, 2 * S, 10 * S]),
)
def test_splitting_the_trades_into_calls_differently_leaves_the_same_bars(raw, cuts, lateness):
    """The dataflow hands the windows a symbol's trades of a whole batch at once: for any
    trades (late, too late, breaks of earlier ones) and any split into calls, the last
    version of every bar, the counters and the flushed bars are those of one trade per
    call."""
    trades = []
    for seq, (ts, price, size, breaks) in enumerate(raw, start=1):
        if breaks and seq > 1:  # break the trade two before (perhaps already broken)
            trades.append(trade(T0 + ts, seq, 0, 0, max(1, seq - 2), broken=True))
        else:
            trades.append(trade(T0 + ts, seq, price, size, seq))

    def run(calls: list[list]) -> tuple[dict, list, tuple]:
        w = SymbolWindows("AAPL", allowed_lateness_ns=lateness)
        latest = {}
        for call in calls:
            latest.update((b.key, b) for b in w.on_trades(call))
        stats = (w.stats.trades, w.stats.too_late, w.stats.breaks, w.stats.unmatched_breaks)
        return latest, w.flush(), stats

    one_each = [[t] for t in trades]
    split, i = [], 0
    for n in cuts * len(trades):
        if i >= len(trades):
            break
        split.append(trades[i : i + n])
        i += n
    assert run(split) == run(one_each)


def test_bar_accumulator_in_any_arrival_order_equals_sorted_order():
    """Open/close follow (time, seq), not arrival: reversed arrival gives the same bar."""
    a, b = BarAccumulator(T0, T0 + S), BarAccumulator(T0, T0 + S)
    trades = [(T0 + i, i, 1_000_000 + 7 * i, i + 1, i) for i in range(5)]
    for t in trades:
        a.add(*t)
    for t in reversed(trades):
        b.add(*t)
    assert a.to_bar("X", revised=False) == b.to_bar("X", revised=False)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory):
    return simulated_records(str(tmp_path_factory.mktemp("sim")))


def test_bars_equal_polars_group_by_dynamic_on_a_simulated_session(day):
    """Simulator → normalizer trades through the windows give, for every symbol and every
    1-second and 1-minute window, exactly Polars' group_by_dynamic bars."""
    windows: dict[str, SymbolWindows] = {}
    out: list[Bar] = []
    for offset, (key, value) in enumerate(day):
        for symbol, (_, trades) in parse_trades(Record("md.trades", 0, offset, key, value, 0)):
            w = windows.setdefault(symbol, SymbolWindows(symbol))
            out += w.on_trades(trades)
    for w in windows.values():
        out += w.flush()
    assert sum(w.stats.too_late for w in windows.values()) == 0
    frame = trades_frame(day)
    for width, every in ((1, "1s"), (60, "1m")):
        latest = {b.key: b for b in out if b.timeframe_s == width}
        ours = sorted(
            (
                b.symbol,
                b.start_ns,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.trade_count,
                b.vwap_e8,
            )  # fmt: skip
            for b in latest.values()
            if b.trade_count
        )
        expected = polars_bars(frame, every)
        assert len(expected) > 100 if width == 1 else len(expected) >= 16
        assert ours == expected
