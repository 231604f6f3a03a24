"""``tickerplant archive``: one session day's trades, quotes and bars as Parquet for quants.

Three datasets under ``out_dir``, each hive-partitioned by date and symbol, zstd::

    out_dir/trades/date=2024-11-20/symbol=AAPL/part-0.parquet
    out_dir/quotes/date=2024-11-20/symbol=AAPL/part-0.parquet
    out_dir/bars/date=2024-11-20/symbol=AAPL/part-0.parquet

read with ``pl.scan_parquet("out_dir/trades/**/*.parquet", hive_partitioning=True)`` (the
``date`` and ``symbol`` columns come from the paths, not the files). Rows keep their order:
trades and quotes in feed sequence, bars by timeframe then start.

Where each comes from:

- **bars** from the ``bars`` table: the session day's 1-second and 1-minute bars (labels in
  ``[midnight, next midnight)`` New York time), with the bars API's exact types
  (``candles.frames.bars_table``: ``decimal128(18, 4)`` prices, ``decimal128(18, 8)`` VWAP,
  ``t`` as ``timestamp[ns, UTC]``) plus ``timeframe`` (``1Sec``/``1Min``);
- **trades and quotes** from the day's ITCH file, through ``normalize.convert`` (the plant's
  normalizer, the columns of ``tickerplant normalize-file``): the plant publishes ticks on
  the bus but does not store them in the database, so the recorded feed is their source.
  Without an ITCH file only bars are archived.

Writing a day again replaces that day's directory in each dataset; other days stay.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from candles.frames import PAGE_COLUMNS, bars_table
from normalize.convert import normalize_file
from normalize.session import midnight_ns
from tickerplant.db import connect

__all__ = ["ArchiveStats", "archive_day"]

logger = logging.getLogger(__name__)

_BATCH_ROWS = 1 << 20


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    trades: int
    quotes: int
    bars: int
    symbols: int  # symbols with at least one row in any dataset


def _write(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, out_dir: Path, day: date
) -> tuple[int, set[str]]:
    """Write ``batches`` (which have a ``symbol`` column) as ``out_dir/date=…/symbol=…``;
    returns the rows written and the symbols seen."""
    count = 0
    symbols: set[str] = set()
    date_type = pa.date32()
    full_schema = schema.append(pa.field("date", date_type))

    def with_date() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for batch in batches:
            if batch.num_rows == 0:
                continue
            count += batch.num_rows
            symbols.update(batch.column("symbol").unique().to_pylist())
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, pa.repeat(pa.scalar(day, date_type), batch.num_rows)],
                schema=full_schema,
            )

    # The day is replaced as a whole: a symbol absent this time must not keep old files.
    shutil.rmtree(out_dir / f"date={day.isoformat()}", ignore_errors=True)
    ds.write_dataset(
        with_date(),
        out_dir,
        schema=full_schema,
        format="parquet",
        partitioning=ds.partitioning(
            pa.schema([("date", date_type), ("symbol", pa.string())]), flavor="hive"
        ),
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        # One thread keeps each partition's rows in the order they came (feed order).
        use_threads=False,
        max_open_files=4096,
    )
    return count, symbols


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    """The session day in New York as ``[start, end)`` UTC instants (DST-aware)."""
    start_ns, end_ns = midnight_ns(day), midnight_ns(day + timedelta(days=1))
    return (
        datetime.fromtimestamp(start_ns // 10**9, UTC),
        datetime.fromtimestamp(end_ns // 10**9, UTC),
    )


def _bar_batches(dsn: str, day: date) -> tuple[Iterator[pa.RecordBatch], pa.Schema]:
    start, end = _day_bounds(day)
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT timeframe, symbol, start, open, high, low, close, volume, trade_count,"
            " vwap_e8 FROM bars WHERE start >= %s AND start < %s"
            " ORDER BY symbol, timeframe, start",
            [start, end],
        ).fetchall()
    frame = pl.DataFrame(
        [row[1:] for row in rows],
        schema={"symbol": pl.String, "t": pl.Datetime("us", "UTC")}
        | dict.fromkeys(PAGE_COLUMNS[2:], pl.Int64),
        orient="row",
    )
    table = bars_table(frame)
    table = table.append_column("timeframe", pa.array([row[0] for row in rows], pa.string()))
    return iter(table.to_batches(_BATCH_ROWS)), table.schema


def _parquet_batches(path: Path) -> tuple[Iterator[pa.RecordBatch], pa.Schema]:
    file = pq.ParquetFile(path)
    return file.iter_batches(batch_size=_BATCH_ROWS), file.schema_arrow


def archive_day(
    dsn: str, day: date, out_dir: Path, *, itch_file: Path | None = None
) -> ArchiveStats:
    """Archive ``day`` into ``out_dir``: bars from the database at ``dsn``, trades and quotes
    from ``itch_file`` (normalized with ``day`` as its session date) when given."""
    symbols: set[str] = set()
    trades = quotes = 0
    if itch_file is not None:
        with tempfile.TemporaryDirectory(prefix="tp-archive-") as tmp:
            normalize_file(itch_file, Path(tmp), session_date=day)
            for name in ("trades", "quotes"):
                batches, schema = _parquet_batches(Path(tmp) / f"{name}.parquet")
                count, seen = _write(batches, schema, out_dir / name, day)
                symbols |= seen
                trades, quotes = (count, quotes) if name == "trades" else (trades, count)
    batches, schema = _bar_batches(dsn, day)
    bars, seen = _write(batches, schema, out_dir / "bars", day)
    symbols |= seen
    stats = ArchiveStats(trades=trades, quotes=quotes, bars=bars, symbols=len(symbols))
    logger.info(
        "archived %s: %d trades, %d quotes, %d bars of %d symbols in %s",
        day,
        stats.trades,
        stats.quotes,
        stats.bars,
        stats.symbols,
        out_dir,
    )
    return stats
