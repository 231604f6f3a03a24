"""``tickerplant backfill``: a whole ITCH file into the ``bars`` table, as the live plant would.

The same code as live, step by step, without a bus or Bytewax in between:

- messages are normalized by the plant's normalizer (``normalize.fast.make_normalizer``;
  sequence numbers are the message's position in the file from 1, as ``normalize-file``
  numbers them), which hands out the same ``md.trades`` records the plant publishes;
- each record is parsed by the dataflow's own ``candles.dataflow.parse_trades``;
- each symbol's trades go, in feed order, to one ``candles.windows.SymbolWindows`` with the
  dataflow's settings (``allowed_lateness_s``, ``timeframes_s``), flushed at the end of the
  file as the dataflow flushes at the end of its input;
- the bars it emits are written with ``candles.storage.upsert_bars`` in batches of
  ``batch_bars`` (one transaction each).

So the rows stored equal those the live dataflow stores for the same trades (one symbol's
trades reach one ``SymbolWindows`` in the same order there too). Rerunning a file rewrites
the same rows (idempotent upserts). Bars of the file's symbols already stored from another
source are overwritten where their keys meet, never merged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg

from candles.bars import Bar
from candles.dataflow import parse_trades
from candles.storage import upsert_bars
from candles.windows import DEFAULT_TIMEFRAMES_S, NS, SymbolWindows
from normalize.fast import make_normalizer
from normalize.itchfile import iter_messages
from normalize.session import midnight_ns
from tickerplant.bus import Record
from tickerplant.db import connect
from tickerplant.topics import MD_TRADES

__all__ = ["BackfillStats", "backfill_file"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackfillStats:
    messages: int
    trades: int  # trades applied to bars (broken-trade notices not counted)
    symbols: int
    bars_written: int  # bar rows upserted (a bar revised later in the file counts again)
    bars_withdrawn: int  # bars deleted: every trade broken
    too_late: int  # trades older than the allowed lateness: not applied, as live
    unmatched_breaks: int  # broken-trade notices naming no trade still revisable


class _BarWriter:
    """Collects bars and upserts them ``batch_bars`` at a time, in emission order."""

    def __init__(self, conn: psycopg.Connection, batch_bars: int) -> None:
        self.conn = conn
        self.batch_bars = batch_bars
        self.pending: list[Bar] = []
        self.written = 0
        self.withdrawn = 0

    def add(self, bars: list[Bar]) -> None:
        self.pending.extend(bars)
        if len(self.pending) >= self.batch_bars:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            upserted, deleted = upsert_bars(self.conn, self.pending)
            self.written += upserted
            self.withdrawn += deleted
            self.pending = []


def backfill_file(
    path: Path,
    dsn: str,
    *,
    session_date: date,
    allowed_lateness_s: float = 10.0,
    timeframes_s: tuple[int, ...] = DEFAULT_TIMEFRAMES_S,
    batch_bars: int = 20_000,
    messages_per_take: int = 65_536,
) -> BackfillStats:
    """Normalize every message of ``path`` (``.gz`` read as such) and store its bars in the
    database at ``dsn`` (migrated). ``session_date`` anchors the ITCH timestamps (ns since
    the exchange's midnight). Defaults equal the live dataflow's (``CandlesSettings``)."""
    normalizer = make_normalizer(midnight_ns=midnight_ns(session_date))
    lateness_ns = int(allowed_lateness_s * NS)
    windows: dict[str, SymbolWindows] = {}

    def apply(writer: _BarWriter) -> None:
        for topic, key, value in normalizer.take_records(publish_ts_ns=0):
            if topic != MD_TRADES:
                continue
            for symbol, (_, trades) in parse_trades(Record(topic, 0, 0, key, value, 0)):
                w = windows.get(symbol)
                if w is None:
                    w = windows[symbol] = SymbolWindows(
                        symbol, allowed_lateness_ns=lateness_ns, timeframes_s=timeframes_s
                    )
                writer.add(w.on_trades(trades))

    seq = 0
    with connect(dsn, autocommit=True) as conn:
        writer = _BarWriter(conn, batch_bars)
        for seq, message in enumerate(iter_messages(path), start=1):
            normalizer.process(message, seq=seq, receive_ts_ns=0)
            if seq % messages_per_take == 0:
                apply(writer)
        apply(writer)
        for symbol in sorted(windows):
            writer.add(windows[symbol].flush())
        writer.flush()
    stats = BackfillStats(
        messages=seq,
        trades=sum(w.stats.trades for w in windows.values()),
        symbols=len(windows),
        bars_written=writer.written,
        bars_withdrawn=writer.withdrawn,
        too_late=sum(w.stats.too_late for w in windows.values()),
        unmatched_breaks=sum(w.stats.unmatched_breaks for w in windows.values()),
    )
    if stats.too_late or stats.unmatched_breaks:
        logger.warning(
            "%d trades later than the allowed lateness not applied; %d broken trades name "
            "no trade still revisable",
            stats.too_late,
            stats.unmatched_breaks,
        )
    logger.info(
        "backfilled %d messages: %d trades of %d symbols, %d bars written",
        stats.messages,
        stats.trades,
        stats.symbols,
        stats.bars_written,
    )
    return stats
