"""Backfill (ITCH file → bars table) and archive (a day → hive-partitioned Parquet) on the
real PostgreSQL, checked against the live dataflow, the Polars reference and the DB."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main

from candles.archive import archive_day
from candles.backfill import backfill_file
from candles.dataflow import BusBridge, BusSource, build_flow
from normalize.convert import normalize_file
from tests.unit.candles.reference import (
    SESSION_DATE,
    polars_bars,
    simulated_records,
    trades_frame,
)
from tickerplant.bus import MemoryBus
from tickerplant.db import connect
from tickerplant.topics import MD_TRADES

pytestmark = pytest.mark.postgres

ALL_COLUMNS = (
    "symbol, timeframe, start, open, high, low, close, volume, trade_count, notional,"
    " vwap_e8, revised, last_seq"
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[tuple[bytes, bytes], ...]]:
    """The reference's simulated ITCH file and the md.trades records the plant makes of it."""
    tmp = tmp_path_factory.mktemp("sim")
    records = simulated_records(str(tmp))
    return tmp / "sim-8-7-150000.itch", records


def all_rows(dsn: str) -> list[tuple]:
    with connect(dsn) as conn:
        return conn.execute(
            f"SELECT {ALL_COLUMNS} FROM bars ORDER BY symbol, timeframe, start"
        ).fetchall()


def live_dataflow(records, dsn: str) -> None:
    bridge = BusBridge(MemoryBus(partitions=4))
    bridge.run(bridge.bus.start())
    bridge.run(bridge.bus.create_topic(MD_TRADES))
    bridge.run(bridge.bus.publish_many(MD_TRADES, records))
    run_main(build_flow(BusSource(bridge, MD_TRADES, until_end=True), dsn=dsn, bars_sink=None))
    bridge.run(bridge.bus.close())
    bridge.close()


def as_reference(rows: list[tuple], timeframe: str) -> list[tuple]:
    """Stored rows of one timeframe in ``polars_bars``' shape."""
    return [
        (s, int(t.timestamp()) * 10**9, o, h, lo, c, v, n, vw)
        for s, tf, t, o, h, lo, c, v, n, _, vw, _, _ in rows
        if tf == timeframe
    ]


def test_backfilled_bars_equal_the_live_dataflows_row_for_row_and_a_rerun_changes_nothing(
    sim, migrated_dsn
):
    """The same simulated day stored by the live dataflow (MemoryBus → Bytewax) and by
    `backfill_file` gives identical rows in every column (notional, last_seq and revised
    included), equal to Polars' 1s and 1min bars; backfilling the file again leaves them."""
    path, records = sim
    live_dataflow(records, migrated_dsn)
    live = all_rows(migrated_dsn)
    with connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bars")

    stats = backfill_file(path, migrated_dsn, session_date=SESSION_DATE, batch_bars=500)
    backfilled = all_rows(migrated_dsn)
    assert backfilled == live
    frame = trades_frame(records)
    assert as_reference(backfilled, "1Sec") == polars_bars(frame, "1s")
    assert as_reference(backfilled, "1Min") == polars_bars(frame, "1m")
    assert stats.messages == 150_000
    assert stats.symbols == frame["symbol"].n_unique() == 8
    assert stats.bars_written == len(backfilled)
    assert (stats.bars_withdrawn, stats.too_late) == (0, 0)

    again = backfill_file(path, migrated_dsn, session_date=SESSION_DATE)
    assert all_rows(migrated_dsn) == backfilled
    assert again == stats


def test_the_archive_round_trips_trades_quotes_and_bars_exactly(sim, migrated_dsn, tmp_path):
    """`archive_day` with the ITCH file writes trades/quotes/bars under
    `<kind>/date=2024-03-01/symbol=S/part-0.parquet` (zstd); `scan_parquet(...,
    hive_partitioning=True)` gives back normalize-file's trades and quotes and the stored
    bars, value for value, with `date` and `symbol` from the paths."""
    path, _ = sim
    backfill_file(path, migrated_dsn, session_date=SESSION_DATE)
    out = tmp_path / "archive"
    stats = archive_day(migrated_dsn, SESSION_DATE, out, itch_file=path)

    normalize_file(path, tmp_path / "flat", session_date=SESSION_DATE)
    for kind, count in (("trades", stats.trades), ("quotes", stats.quotes)):
        flat = pl.read_parquet(tmp_path / "flat" / f"{kind}.parquet")
        expected = (
            flat.sort("symbol", maintain_order=True)
            .with_columns(pl.lit(SESSION_DATE).alias("date"))
            .select(*(c for c in flat.columns if c != "symbol"), "date", "symbol")
        )
        got = pl.scan_parquet(out / kind / "**" / "*.parquet", hive_partitioning=True).collect()
        assert got.schema == expected.schema
        assert got.equals(expected)
        assert count == flat.height > 0

    bars = pl.scan_parquet(out / "bars" / "**" / "*.parquet", hive_partitioning=True).collect()
    stored = all_rows(migrated_dsn)
    assert bars.columns == ["t", "o", "h", "l", "c", "v", "n", "vw", "timeframe", "date", "symbol"]
    assert bars.rows() == [
        (t, *(Decimal(p).scaleb(-4) for p in (o, h, lo, c)), v, n, Decimal(vw).scaleb(-8),
         tf, SESSION_DATE, s)
        for s, tf, t, o, h, lo, c, v, n, _, vw, _, _ in stored
    ]  # fmt: skip
    assert bars.schema["t"] == pl.Datetime("ns", "UTC")
    assert (stats.bars, stats.symbols) == (len(stored), 8)

    symbol = stored[0][0]
    part = out / "trades" / "date=2024-03-01" / f"symbol={symbol}" / "part-0.parquet"
    meta = pq.ParquetFile(part).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert sorted(p.name for p in out.iterdir()) == ["bars", "quotes", "trades"]


def test_an_archive_without_an_itch_file_has_bars_only_and_a_rerun_replaces_the_day(
    sim, migrated_dsn, tmp_path
):
    """Without `itch_file` only `bars/` is written; archiving again after the bars of one
    symbol were deleted leaves no stale partition of that symbol."""
    path, _ = sim
    backfill_file(path, migrated_dsn, session_date=SESSION_DATE)
    out = tmp_path / "archive"
    first = archive_day(migrated_dsn, SESSION_DATE, out)
    assert (first.trades, first.quotes, first.symbols) == (0, 0, 8)
    assert [p.name for p in out.iterdir()] == ["bars"]
    day_dir = out / "bars" / "date=2024-03-01"
    symbols = sorted(p.name.removeprefix("symbol=") for p in day_dir.iterdir())
    with connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM bars WHERE symbol = %s", [symbols[0]])
    second = archive_day(migrated_dsn, SESSION_DATE, out)
    assert second.symbols == 7
    assert sorted(p.name.removeprefix("symbol=") for p in day_dir.iterdir()) == symbols[1:]
    frame = pl.scan_parquet(out / "bars" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert frame.height == second.bars == len(all_rows(migrated_dsn))


def test_an_archive_of_a_day_without_bars_writes_no_rows(sim, migrated_dsn, tmp_path):
    """A day the database has no bars for: zero bars, nothing under bars/."""
    stats = archive_day(migrated_dsn, datetime(2024, 3, 2, tzinfo=UTC).date(), tmp_path / "a")
    assert (stats.trades, stats.quotes, stats.bars, stats.symbols) == (0, 0, 0, 0)
    assert list((tmp_path / "a" / "bars").glob("**/*.parquet")) == []
