"""Per-tier conflation: at most one update per key per interval, volumes never lost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conflate import (
    BarUpdate,
    Channel,
    Conflator,
    InvalidTierError,
    LatestValueCache,
    NotMergeableError,
    QuoteUpdate,
    StatusUpdate,
    Tier,
    TierTable,
    TradeUpdate,
    UnknownTierError,
    UpdateBuilder,
)
from tests.unit.conflate.builders import bar, quote, status, trade

TICK = Tier("200ms", 200)
MS = 1_000_000


def test_fifty_quote_changes_in_one_interval_become_exactly_one_quote_equal_to_the_last():
    """50 BBO changes of AAPL within an interval: the tick emits one quote, the 50th."""
    conflator = Conflator(TICK)
    for seq in range(1, 51):
        assert conflator.add(quote("AAPL", seq, bid=990_000 + seq)) == []
    out = conflator.tick(200 * MS)
    assert len(out) == 1
    assert isinstance(out[0], QuoteUpdate)
    assert (out[0].seq, out[0].quote.bid_price) == (50, 990_050)
    assert conflator.stats.events_in[Channel.QUOTES] == 50
    assert conflator.stats.updates_out[Channel.QUOTES] == 1
    assert conflator.stats.ratio == 50.0


def test_trades_conflate_to_the_last_trade_with_the_interval_volume_and_count():
    """Three MSFT trades of 100, 200, 300 shares: one update, last price, volume 600, count 3."""
    conflator = Conflator(TICK)
    for seq, (price, size) in enumerate([(1_000_000, 100), (1_010_000, 200), (1_020_000, 300)], 1):
        conflator.add(trade("MSFT", seq, price=price, size=size))
    [update] = conflator.tick(0)
    assert isinstance(update, TradeUpdate)
    assert (update.trade.price, update.trade.size, update.seq) == (1_020_000, 300, 3)
    assert (update.volume, update.count, update.total_volume, update.total_count) == (
        600,
        3,
        600,
        3,
    )
    conflator.add(trade("MSFT", 4, size=50))
    [second] = conflator.tick(200 * MS)
    assert (second.volume, second.count, second.total_volume, second.total_count) == (
        50,
        1,
        650,
        4,
    )


def test_a_tick_emits_only_what_changed_since_the_last_tick():
    """AAPL changes in the first interval and MSFT in the second: each tick has only its own."""
    conflator = Conflator(TICK)
    conflator.add(quote("AAPL", 1))
    assert [u.symbol for u in conflator.tick(0)] == ["AAPL"]
    conflator.add(quote("MSFT", 2))
    assert [u.symbol for u in conflator.tick(200 * MS)] == ["MSFT"]
    assert conflator.tick(400 * MS) == []


def test_statuses_are_never_conflated_and_keep_their_order():
    """Halt, resume, halt of AAPL in one interval: all three come out, in order."""
    conflator = Conflator(TICK)
    conflator.add(status("AAPL", 1, code="H", halted=True))
    conflator.add(status("AAPL", 2, code="T"))
    conflator.add(status("AAPL", 3, code="H", halted=True))
    out = conflator.tick(0)
    assert [(type(u), u.seq, u.status.code) for u in out] == [
        (StatusUpdate, 1, "H"),
        (StatusUpdate, 2, "T"),
        (StatusUpdate, 3, "H"),
    ]
    assert conflator.cache.get(Channel.STATUSES, "AAPL").seq == 3


def test_a_bar_that_closes_in_the_interval_is_delivered_beside_the_next_one():
    """Bars of 14:30 (revised twice) and 14:31 in one interval: two updates, the latest of each."""
    conflator = Conflator(TICK)
    conflator.add(bar("AAPL", 1, start_ns=0, close=1))
    conflator.add(bar("AAPL", 2, start_ns=0, close=2))
    conflator.add(bar("AAPL", 3, start_ns=60, close=3))
    out = conflator.tick(0)
    assert [(u.bar.start_ts_ns, u.bar.close) for u in out] == [(0, 2), (60, 3)]
    conflator.add(bar("AAPL", 4, start_ns=0, close=4))  # late revision of the older bar
    conflator.tick(200 * MS)
    assert conflator.cache.get(Channel.BARS, "AAPL").bar.start_ts_ns == 60


def test_the_realtime_tier_emits_every_event_at_once_and_caches_the_latest():
    """Realtime: each add returns its update; nothing waits for a tick."""
    conflator = Conflator(Tier("realtime", 0))
    assert [u.seq for u in conflator.add(trade("A", 1, size=5))] == [1]
    [update] = conflator.add(trade("A", 2, size=7))
    assert (update.volume, update.count, update.total_volume, update.total_count) == (7, 1, 12, 2)
    assert conflator.pending == 0
    assert conflator.due(10**12) is False
    assert conflator.cache.get(Channel.TRADES, "A").seq == 2


def test_the_cache_holds_what_was_emitted_not_what_is_pending():
    """A quote added after the last tick is not in the snapshot until the next tick."""
    conflator = Conflator(TICK)
    conflator.add(quote("AAPL", 1))
    conflator.tick(0)
    conflator.add(quote("AAPL", 2))
    assert [u.seq for u in conflator.cache.snapshot(Channel.QUOTES)] == [1]
    conflator.tick(200 * MS)
    assert [u.seq for u in conflator.cache.snapshot(Channel.QUOTES)] == [2]


def test_due_and_next_due_follow_the_interval():
    """First tick is due at once; the next one interval after it."""
    conflator = Conflator(TICK)
    assert conflator.due(5) and conflator.next_due_ns(5) == 5
    conflator.tick(1_000 * MS)
    assert not conflator.due(1_199 * MS)
    assert conflator.due(1_200 * MS)
    assert conflator.next_due_ns(1_050 * MS) == 1_200 * MS


def test_cache_snapshot_is_sorted_and_skips_symbols_without_a_value():
    """Snapshot of [MSFT, AAPL, ZZZZ] returns AAPL then MSFT."""
    cache = LatestValueCache()
    cache.put(QuoteUpdate(quote("MSFT", 1).quote))
    cache.put(QuoteUpdate(quote("AAPL", 2).quote))
    assert [u.symbol for u in cache.snapshot(Channel.QUOTES, ["MSFT", "AAPL", "ZZZZ"])] == [
        "AAPL",
        "MSFT",
    ]
    assert cache.symbols(Channel.QUOTES) == ["AAPL", "MSFT"]
    assert len(cache) == 2


def test_merging_different_kinds_or_keys_or_statuses_is_refused():
    """A quote does not merge into a trade, AAPL not into MSFT, a status into nothing."""
    aapl = TradeUpdate(trade("AAPL", 1).trade, 1, 1, 1, 1)
    msft = TradeUpdate(trade("MSFT", 1).trade, 1, 1, 1, 1)
    with pytest.raises(NotMergeableError, match="cannot conflate TradeUpdate with QuoteUpdate"):
        aapl.merge(QuoteUpdate(quote("AAPL", 2).quote))
    with pytest.raises(NotMergeableError):
        aapl.merge(msft)
    with pytest.raises(NotMergeableError):
        StatusUpdate(status("AAPL", 1).status).merge(StatusUpdate(status("AAPL", 2).status))
    assert BarUpdate(bar("A", 1, start_ns=0).bar).key == (Channel.BARS, "A", 0)


def test_the_tier_table_names_the_default_after_its_interval():
    """interval 200 with realtime and 1s: tiers 200ms, realtime, 1s; default 200ms."""
    table = TierTable.from_settings(200, {"realtime": 0, "1s": 1000})
    assert list(table.tiers) == ["200ms", "realtime", "1s"]
    assert table.get(None) == Tier("200ms", 200)
    assert table.get("1s").interval_ns == 1_000_000_000
    assert table.get("realtime").realtime
    assert TierTable.from_settings(1000, {}).default == "1s"
    with pytest.raises(UnknownTierError, match="unknown tier '5s': expected one of 200ms, rt"):
        TierTable.from_settings(200, {"rt": 0}).get("5s")
    with pytest.raises(InvalidTierError, match="the interval must be >= 0"):
        TierTable.from_settings(200, {"bad": -1})


events = st.lists(
    st.tuples(
        st.sampled_from(["trade", "quote", "status"]),
        st.sampled_from(["AAPL", "MSFT", "GOOG"]),
        st.integers(1, 10_000),  # size
        st.booleans(),  # tick after this event
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_conflation_never_loses_volume_count_or_status_and_ends_on_the_latest_values(run):
    """Any event sequence with ticks anywhere: per symbol, emitted interval volumes and counts
    sum to the totals of all trades; every status comes out once, in order; the final cached
    quote and trade are the last ones added; and the running totals are consistent."""
    conflator = Conflator(TICK)
    volume: dict[str, int] = {}
    count: dict[str, int] = {}
    last: dict[tuple[str, str], int] = {}
    statuses_in: list[int] = []
    out = []
    now = 0
    for seq, (kind, symbol, size, tick) in enumerate(run, 1):
        if kind == "trade":
            conflator.add(trade(symbol, seq, size=size))
            volume[symbol] = volume.get(symbol, 0) + size
            count[symbol] = count.get(symbol, 0) + 1
        elif kind == "quote":
            conflator.add(quote(symbol, seq))
        else:
            conflator.add(status(symbol, seq))
            statuses_in.append(seq)
        last[(kind, symbol)] = seq
        if tick:
            now += 200 * MS
            out.extend(conflator.tick(now))
    out.extend(conflator.tick(now + 200 * MS))
    trades = [u for u in out if isinstance(u, TradeUpdate)]
    for symbol in volume:
        mine = [u for u in trades if u.symbol == symbol]
        assert sum(u.volume for u in mine) == volume[symbol]
        assert sum(u.count for u in mine) == count[symbol]
        running = 0
        for u in mine:  # no gap, no duplicate: each total follows the previous one exactly
            running += u.count
            assert u.total_count == running
    assert [u.seq for u in out if isinstance(u, StatusUpdate)] == statuses_in
    for (kind, symbol), seq in last.items():
        channel = {"trade": Channel.TRADES, "quote": Channel.QUOTES, "status": Channel.STATUSES}
        assert conflator.cache.get(channel[kind], symbol).seq == seq


@settings(max_examples=100, deadline=None)
@given(events)
def test_tiers_fed_shared_updates_emit_and_cache_what_tiers_fed_events_do(run):
    """One ``UpdateBuilder`` shared by a realtime and a 200 ms tier (as the fanout feeds
    them; the realtime tier with ``emit=False``, as when nobody subscribes to it) gives
    the same ticks and the same caches as tiers fed the events themselves; the muted
    realtime tier returns nothing."""
    builder = UpdateBuilder()
    shared = (Conflator(Tier("realtime", 0)), Conflator(TICK))
    alone = (Conflator(Tier("realtime", 0)), Conflator(TICK))
    now = 0
    for seq, (kind, symbol, size, tick) in enumerate(run, 1):
        event = {"trade": trade(symbol, seq, size=size), "quote": quote(symbol, seq)}.get(
            kind, status(symbol, seq)
        )
        updates = builder.build_batch([event])
        assert shared[0].add_updates(updates, emit=False) == []
        assert shared[1].add_updates(updates) == []
        assert alone[0].add(event) == updates
        alone[1].add(event)
        if tick:
            now += 200 * MS
            assert shared[1].tick(now) == alone[1].tick(now)
    for a, b in zip(shared, alone, strict=True):
        for channel in Channel:
            assert a.cache.snapshot(channel) == b.cache.snapshot(channel)
        assert a.stats == b.stats


def test_keys_are_computed_once_and_hash_like_their_plain_strings():
    """An update's key is one stored tuple; ``Channel`` members hash as their values, so a
    key built from plain strings finds the same dict entry."""
    update = QuoteUpdate(quote("AAPL", 1).quote)
    assert update.key is update.key
    assert update.key == (Channel.QUOTES, "AAPL")
    assert {update.key: 1}[("quotes", "AAPL")] == 1
    assert (update.symbol, update.publish_ts_ns) == ("AAPL", update.quote.publish_ts_ns)


conflated_runs = st.lists(
    st.tuples(
        st.sampled_from(["trade", "quote", "status", "bar"]),
        st.sampled_from(["AAPL", "MSFT", "GOOG"]),
        st.integers(1, 10_000),  # size
        st.integers(0, 2),  # bar start (minute); a repeated one is a revision
        st.sampled_from(["none", "batch", "read", "tick"]),  # what ends after this event
    ),
    max_size=200,
)


def _event(kind: str, symbol: str, seq: int, size: int, minute: int):
    if kind == "trade":
        return trade(symbol, seq, size=size, price=1_000_000 + seq)
    if kind == "quote":
        return quote(symbol, seq, bid=990_000 + seq)
    if kind == "bar":
        return bar(symbol, seq, start_ns=minute * 60 * 10**9, close=1_000_000 + seq)
    return status(symbol, seq)


@settings(max_examples=300, deadline=None)
@given(conflated_runs)
def test_tiers_fed_a_conflated_read_end_as_tiers_fed_every_update(run):
    """Events grouped in batches and reads (a read = some bus records, each a batch) at
    random, ticks between reads: interval tiers fed ``build_conflated(read).updates`` and a
    muted realtime tier fed ``.latest`` emit the same ticks (trade volumes, counts, totals,
    quotes, bars, every status in order), hold the same caches and count the same events
    in and out as the same tiers fed ``build_batch`` of every event."""
    tiers = (Tier("realtime", 0), TICK, Tier("1s", 1000))
    conflated, every = [Conflator(t) for t in tiers], [Conflator(t) for t in tiers]
    by_read, by_event = UpdateBuilder(), UpdateBuilder()
    read: list[list] = [[]]
    now = 0

    def deliver() -> None:
        batches = [batch for batch in read if batch]
        summary = by_read.build_conflated(batches)
        updates = [u for batch in batches for u in by_event.build_batch(batch)]
        for tier, one, other in zip(tiers, conflated, every, strict=True):
            if tier.realtime:
                assert (
                    one.add_updates(summary.latest, emit=False, events_in=summary.events_in) == []
                )
                assert other.add_updates(updates, emit=False) == []
            else:
                assert one.add_updates(summary.updates, events_in=summary.events_in) == []
                assert other.add_updates(updates) == []
        read[:] = [[]]

    for seq, (kind, symbol, size, minute, then) in enumerate(run, 1):
        read[-1].append(_event(kind, symbol, seq, size, minute))
        if then == "batch":
            read.append([])
        elif then in ("read", "tick"):
            deliver()
        if then == "tick":
            now += 1000 * MS
            for one, other in zip(conflated[1:], every[1:], strict=True):
                assert one.tick(now) == other.tick(now)
    deliver()
    now += 1000 * MS
    for one, other in zip(conflated, every, strict=True):
        if not one.tier.realtime:
            assert one.tick(now) == other.tick(now)
        for channel in Channel:
            assert one.cache.snapshot(channel) == other.cache.snapshot(channel)
        assert one.stats == other.stats


def test_a_conflated_read_keeps_one_update_per_key_and_counts_every_event():
    """Three AAPL trades (100, 200, 300 shares) and 50 MSFT quotes in two batches, a status
    between: interval updates = one AAPL trade of volume 600 / count 3 / the last price,
    the 50th quote, the status; ``latest`` has the last trade as a single trade."""
    builder = UpdateBuilder()
    first = [trade("AAPL", 1, size=100), quote("MSFT", 2), status("AAPL", 3)]
    second = [trade("AAPL", 4, size=200), *(quote("MSFT", s) for s in range(5, 54))]
    second.append(trade("AAPL", 54, size=300, price=1_020_000))
    summary = builder.build_conflated([first, second])
    t, q, s = summary.updates
    assert isinstance(t, TradeUpdate) and isinstance(q, QuoteUpdate)
    assert (t.seq, t.trade.price, t.volume, t.count, t.total_volume, t.total_count) == (
        54,
        1_020_000,
        600,
        3,
        600,
        3,
    )
    assert (q.seq, s.seq) == (53, 3)
    single = summary.latest[0]
    assert (single.seq, single.volume, single.count, single.total_count) == (54, 300, 1, 3)
    assert summary.latest[1:] == [q, s]
    assert summary.events_in == {
        Channel.TRADES: 3,
        Channel.QUOTES: 50,
        Channel.BARS: 0,
        Channel.STATUSES: 1,
    }
