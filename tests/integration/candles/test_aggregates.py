"""Stored higher-timeframe bars (``bar_aggregates``) on the real PostgreSQL: equal to the
query-time ``date_bin`` resampling and to Polars after a backfill, and still equal after
1-minute bars are revised, withdrawn and added."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from candles.backfill import backfill_file
from candles.bars import Bar
from candles.query import STORED_TIMEFRAMES, bars_query, parse_timeframe
from candles.storage import rebuild_bar_aggregates, upsert_bars
from tests.unit.candles.reference import (
    SESSION_DATE,
    polars_bars,
    simulated_records,
    trades_frame,
)
from tickerplant.db import connect

pytestmark = pytest.mark.postgres

DAY_START = datetime(2024, 3, 1, tzinfo=UTC)
DAY_END = datetime(2024, 3, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[tuple[bytes, bytes], ...]]:
    """The reference's simulated ITCH file and the md.trades records the plant makes of it."""
    tmp = tmp_path_factory.mktemp("sim")
    records = simulated_records(str(tmp))
    return tmp / "sim-8-7-150000.itch", records


@pytest.fixture
def backfilled(sim, migrated_dsn) -> str:
    """The simulated day backfilled in batches of 300 bars, so that buckets span batches."""
    path, _ = sim
    backfill_file(path, migrated_dsn, session_date=SESSION_DATE, batch_bars=300)
    return migrated_dsn


def bars_of(dsn: str, timeframe: str, *, resample: bool) -> list[tuple]:
    """Every bar of ``timeframe`` on the session day, stored or resampled at query time."""
    with connect(dsn, autocommit=True) as conn:
        symbols = [
            r[0]
            for r in conn.execute("SELECT symbol FROM bars UNION SELECT symbol FROM bar_aggregates")
        ]
        sql, params = bars_query(
            parse_timeframe(timeframe),
            symbols=symbols,
            start=DAY_START,
            end=DAY_END,
            limit=1_000_000,
            descending=False,
            after=None,
            resample=resample,
        )
        return conn.execute(sql, params).fetchall()


def minute_bars(dsn: str, symbol: str) -> list[Bar]:
    """The stored 1-minute bars of ``symbol`` as ``Bar`` values, in time order."""
    with connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT start, open, high, low, close, volume, trade_count, notional, vwap_e8,"
            " last_seq FROM bars WHERE timeframe = '1Min' AND symbol = %s ORDER BY start",
            [symbol],
        ).fetchall()
    bars = []
    for start, o, h, lo, c, v, n, notional, vwap, seq in rows:
        start_ns = int(start.timestamp()) * 10**9
        bars.append(
            Bar(symbol, 60, start_ns, start_ns + 60 * 10**9, o, h, lo, c, v, n, int(notional),
                vwap, False, seq, start_ns)
        )  # fmt: skip
    return bars


def test_stored_5min_and_1day_bars_equal_resampling_and_polars_after_a_backfill(sim, backfilled):
    """A backfill in 300-bar batches: every stored timeframe equals the date_bin
    resampling row for row, and 5Min also equals Polars' resampling of the trades."""
    _, records = sim
    for timeframe in sorted(STORED_TIMEFRAMES):
        stored = bars_of(backfilled, timeframe, resample=False)
        assert stored == bars_of(backfilled, timeframe, resample=True), timeframe
    want = [
        (s, datetime.fromtimestamp(t // 10**9, UTC), *rest)
        for s, t, *rest in polars_bars(trades_frame(records), "5m")
    ]
    assert bars_of(backfilled, "5Min", resample=False) == want
    day = bars_of(backfilled, "1Day", resample=False)
    assert len(day) == 8
    assert {row[1] for row in day} == {datetime(2024, 3, 1, 5, tzinfo=UTC)}


def test_revised_withdrawn_and_new_minutes_recompute_exactly_their_buckets(backfilled):
    """Revise one minute (new high, close, volume), withdraw one minute, withdraw every minute
    of one 5-minute bucket, and add a minute in a new hour: the stored bars of every stored
    timeframe still equal the resampling; the emptied bucket is gone, the new one present."""
    with connect(backfilled, autocommit=True) as conn:
        symbol = conn.execute("SELECT min(symbol) FROM bars").fetchone()[0]
    minutes = minute_bars(backfilled, symbol)
    # Every minute of the 5-minute bucket of the first stored minute is withdrawn.
    first_bucket_ns = minutes[0].start_ns - minutes[0].start_ns % (300 * 10**9)
    emptied = [
        replace(b, trade_count=0, volume=0, notional=0, revised=True)
        for b in minutes
        if b.start_ns < first_bucket_ns + 300 * 10**9
    ]
    rest = minutes[len(emptied) :]
    assert len(rest) >= 2
    before = bars_of(backfilled, "5Min", resample=False)
    revised = replace(
        rest[0],
        high=rest[0].high + 5000,
        close=rest[0].high + 5000,
        volume=rest[0].volume + 100,
        notional=rest[0].notional + 100 * (rest[0].high + 5000),
        revised=True,
    )
    withdrawn = replace(rest[1], trade_count=0, volume=0, notional=0, revised=True)
    new_start_ns = int(datetime(2024, 3, 1, 20, 7, tzinfo=UTC).timestamp()) * 10**9
    added = replace(minutes[0], start_ns=new_start_ns, end_ns=new_start_ns + 60 * 10**9)
    with connect(backfilled) as conn:
        assert upsert_bars(conn, [revised, withdrawn, *emptied, added]) == (
            2,
            1 + len(emptied),
        )
    for timeframe in sorted(STORED_TIMEFRAMES):
        stored = bars_of(backfilled, timeframe, resample=False)
        assert stored == bars_of(backfilled, timeframe, resample=True), timeframe
    after = bars_of(backfilled, "5Min", resample=False)
    starts = {(row[0], row[1]) for row in after}
    first_bucket = datetime.fromtimestamp(first_bucket_ns // 10**9, UTC)
    assert (symbol, first_bucket) not in starts
    assert (symbol, datetime(2024, 3, 1, 20, 5, tzinfo=UTC)) in starts
    assert len(after) == len(before)  # one bucket emptied, one added
    (day,) = [row for row in bars_of(backfilled, "1Day", resample=False) if row[0] == symbol]
    assert day[3] == rest[0].high + 5000  # the revised high is the day's high


def test_a_rebuild_after_a_direct_delete_matches_the_resampling_again(backfilled):
    """Rows deleted from bars with plain SQL are reflected once bar_aggregates is rebuilt."""
    with connect(backfilled, autocommit=True) as conn:
        symbol = conn.execute("SELECT min(symbol) FROM bars").fetchone()[0]
        conn.execute("DELETE FROM bars WHERE symbol = %s", [symbol])
    assert bars_of(backfilled, "5Min", resample=False) != bars_of(backfilled, "5Min", resample=True)
    with connect(backfilled) as conn:
        written = rebuild_bar_aggregates(conn)
    expected = 0
    for timeframe in sorted(STORED_TIMEFRAMES):
        stored = bars_of(backfilled, timeframe, resample=False)
        assert stored == bars_of(backfilled, timeframe, resample=True), timeframe
        expected += len(stored)
    assert written == expected
    assert symbol not in {row[0] for row in bars_of(backfilled, "1Day", resample=False)}
