"""SQL for the ``bars`` table (migration 0004): idempotent batch upserts, plain reads.

A batch is written in one transaction. Upserts are ``INSERT … ON CONFLICT (symbol,
timeframe, start) DO UPDATE``: writing the same bar twice (a replay after a restart) leaves
the same row, and a revision overwrites its bar. A withdrawn bar (every trade broken,
``trade_count == 0``) deletes its row. Within a batch only the last version of each bar is
written, so the order of versions is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg

from candles.bars import Bar

__all__ = ["TIMEFRAME_NAMES", "bar_row", "read_bars", "upsert_bars"]

TIMEFRAME_NAMES = {1: "1Sec", 60: "1Min"}
"""Stored widths (seconds) and their ``timeframe`` column value."""

_UPSERT = """
INSERT INTO bars (symbol, timeframe, start, open, high, low, close, volume, trade_count,
                  notional, vwap_e8, revised, last_seq)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (symbol, timeframe, start) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count,
    notional = EXCLUDED.notional, vwap_e8 = EXCLUDED.vwap_e8,
    revised = EXCLUDED.revised, last_seq = EXCLUDED.last_seq, updated_at = now()
"""
_DELETE = "DELETE FROM bars WHERE symbol = %s AND timeframe = %s AND start = %s"


def ns_to_datetime(ns: int) -> datetime:
    """Epoch nanoseconds (whole microseconds, as bar starts are) as an aware UTC datetime."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def bar_row(bar: Bar) -> tuple[object, ...]:
    return (
        bar.symbol,
        TIMEFRAME_NAMES[bar.timeframe_s],
        ns_to_datetime(bar.start_ns),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.trade_count,
        bar.notional,
        bar.vwap_e8,
        bar.revised,
        bar.last_seq,
    )


def upsert_bars(conn: psycopg.Connection, bars: Iterable[Bar]) -> tuple[int, int]:
    """Write ``bars`` in one transaction; returns (rows upserted, rows deleted)."""
    latest: dict[tuple[str, int, int], Bar] = {}
    for bar in bars:
        latest[bar.key] = bar
    upserts = [bar_row(b) for b in latest.values() if b.trade_count > 0]
    deletes = [
        (b.symbol, TIMEFRAME_NAMES[b.timeframe_s], ns_to_datetime(b.start_ns))
        for b in latest.values()
        if b.trade_count == 0
    ]
    with conn.transaction(), conn.cursor() as cur:
        if upserts:
            cur.executemany(_UPSERT, upserts)
        if deletes:
            cur.executemany(_DELETE, deletes)
    return len(upserts), len(deletes)


def read_bars(
    conn: psycopg.Connection, *, timeframe: str, symbol: str | None = None
) -> list[tuple[object, ...]]:
    """Stored bars ``(symbol, start, open, high, low, close, volume, trade_count, vwap_e8,
    revised)`` of one stored timeframe, ordered by symbol and start (tests, tools)."""
    query = (
        "SELECT symbol, start, open, high, low, close, volume, trade_count, vwap_e8, revised"
        " FROM bars WHERE timeframe = %s"
    )
    params: list[object] = [timeframe]
    if symbol is not None:
        query += " AND symbol = %s"
        params.append(symbol)
    return conn.execute(query + " ORDER BY symbol, start", params).fetchall()
