"""SQL for the ``bars`` table (migration 0004): idempotent batch upserts, plain reads.

A batch is written in one transaction and three round trips, however many bars: the
session's temporary ``bars_stage`` table is created if missing, the batch is ``COPY``-ed
into it, and one message of fixed statements merges it. Upserts are ``INSERT … SELECT …
ON CONFLICT (symbol, timeframe, start) DO UPDATE``: writing the same bar twice (a replay
after a restart) leaves the same row, and a revision overwrites its bar. A withdrawn bar
(every trade broken, ``trade_count == 0``) deletes its row. Within a batch only the last
version of each bar is written, so the order of versions is kept.

``bar_aggregates`` (migration 0005) holds the 5Min, 15Min, 1Hour and 1Day bars resampled from
the 1-minute rows. In the same transaction as a batch, every bucket containing a written or
deleted 1-minute bar is recomputed — 5Min from its 1-minute rows, 15Min from its 5Min rows,
1Hour from 15Min, 1Day from 1Hour, which nest and give exactly the 1-minute resampling
(so the stored bar always equals the query-time resampling of ``candles.query``) — and
deleted when none is left.
Writes that bypass ``upsert_bars`` (``COPY``, a manual ``DELETE``) need
``rebuild_bar_aggregates``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg

from candles.bars import Bar
from candles.query import AGGREGATE_COLUMNS, STORED_TIMEFRAMES, bucket_sql, parse_timeframe

__all__ = [
    "TIMEFRAME_NAMES",
    "bar_row",
    "read_bars",
    "rebuild_bar_aggregates",
    "upsert_bars",
]

TIMEFRAME_NAMES = {1: "1Sec", 60: "1Min"}
"""Stored widths (seconds) and their ``timeframe`` column value."""

_STAGE_COLUMNS = (
    "symbol, timeframe, start_ns, open, high, low, close, volume, trade_count, notional,"
    " vwap_e8, revised, last_seq"
)
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS bars_stage (
    symbol text, timeframe text, start_ns bigint, open bigint, high bigint, low bigint,
    close bigint, volume bigint, trade_count bigint, notional numeric(38, 0),
    vwap_e8 bigint, revised boolean, last_seq bigint
)"""
_COPY_STAGE = f"COPY bars_stage ({_STAGE_COLUMNS}) FROM STDIN"
# Epoch ns → timestamptz, exactly (whole seconds through to_timestamp, then microseconds).
_START = (
    "(to_timestamp(s.start_ns / 1000000000)"
    " + (s.start_ns % 1000000000 / 1000) * interval '1 microsecond')"
)

_UPSERT = f"""
INSERT INTO bars (symbol, timeframe, start, open, high, low, close, volume, trade_count,
                  notional, vwap_e8, revised, last_seq)
SELECT s.symbol, s.timeframe, {_START}, s.open, s.high, s.low, s.close, s.volume,
       s.trade_count, s.notional, s.vwap_e8, s.revised, s.last_seq
FROM bars_stage AS s WHERE s.trade_count > 0
ON CONFLICT (symbol, timeframe, start) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count,
    notional = EXCLUDED.notional, vwap_e8 = EXCLUDED.vwap_e8,
    revised = EXCLUDED.revised, last_seq = EXCLUDED.last_seq, updated_at = now()
"""
_DELETE = f"""
DELETE FROM bars AS b USING bars_stage AS s
WHERE s.trade_count = 0 AND b.symbol = s.symbol AND b.timeframe = s.timeframe
  AND b.start = {_START}
"""

_AGGREGATE_INSERT = """
INSERT INTO bar_aggregates (symbol, timeframe, start, open, high, low, close, volume,
                            trade_count, vwap_e8, notional)"""
_AGGREGATE_CONFLICT = """
ON CONFLICT (symbol, timeframe, start) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count,
    vwap_e8 = EXCLUDED.vwap_e8, notional = EXCLUDED.notional"""


# Each stored timeframe is resampled from the next finer one, which nests in it (buckets
# start at the exchange's midnight: 1Min in 5Min in 15Min in 1Hour in 1Day): the same rows
# as resampling the 1-minute bars (first open and last close by start, max, min, sums, VWAP
# from the summed notional and volume), from at most 5, 3, 4 and 25 rows a bucket.
_REFRESH_FROM = {
    "5Min": ("bars", "1Min"),
    "15Min": ("bar_aggregates", "5Min"),
    "1Hour": ("bar_aggregates", "15Min"),
    "1Day": ("bar_aggregates", "1Hour"),
}
_REFRESH_ORDER = ("5Min", "15Min", "1Hour", "1Day")
if set(_REFRESH_ORDER) != STORED_TIMEFRAMES:  # a new stored timeframe needs its place here
    raise RuntimeError(f"candles.storage refreshes {_REFRESH_ORDER}, not {STORED_TIMEFRAMES}")


def _refresh_sql(timeframe: str, *, deletes: bool) -> str:
    """One statement recomputing the ``timeframe`` buckets of the staged 1-minute bars from
    the finer rows now in each bucket; with ``deletes``, a bucket left without rows (its
    minutes withdrawn) is deleted instead (only a withdrawn minute can empty a bucket)."""
    tf = parse_timeframe(timeframe)
    table, finer = _REFRESH_FROM[timeframe]
    # The lateral scan is the index range [t, t + max width) of one symbol, narrowed to
    # the rows whose bucket is t (a 1Day bucket is 23-25 hours, a Min bucket can end at
    # the exchange midnight before t + width).
    cte = f"""
WITH touched AS (
    SELECT DISTINCT symbol, {bucket_sql(tf)} AS t
    FROM (SELECT s.symbol, {_START} AS start FROM bars_stage AS s
          WHERE s.timeframe = '1Min') AS k
), fresh AS (
    SELECT k.symbol, k.t, {AGGREGATE_COLUMNS}, sum(notional) AS notional
    FROM touched AS k
    CROSS JOIN LATERAL (
        SELECT * FROM {table}
        WHERE symbol = k.symbol AND timeframe = '{finer}'
          AND start >= k.t AND start < k.t + interval '{tf.max_width}'
          AND {bucket_sql(tf)} = k.t
    ) AS m
    GROUP BY k.symbol, k.t
)"""
    upsert = f"""{_AGGREGATE_INSERT}
    SELECT symbol, '{timeframe}', t, open, high, low, close, volume, trade_count, vwap_e8,
           notional
    FROM fresh
    {_AGGREGATE_CONFLICT}"""
    if not deletes:
        return cte + upsert
    return f"""{cte}, upserted AS ({upsert}
)
DELETE FROM bar_aggregates AS a
USING (SELECT * FROM touched EXCEPT SELECT symbol, t FROM fresh) AS k
WHERE a.symbol = k.symbol AND a.timeframe = '{timeframe}' AND a.start = k.t
"""


def _rebuild_sql(timeframe: str) -> str:
    tf = parse_timeframe(timeframe)
    return f"""
{_AGGREGATE_INSERT}
SELECT symbol, '{timeframe}', t, {AGGREGATE_COLUMNS}, sum(notional) AS notional
FROM (SELECT *, {bucket_sql(tf)} AS t FROM bars WHERE timeframe = '1Min') AS m
GROUP BY symbol, t
"""


_REBUILD = {timeframe: _rebuild_sql(timeframe) for timeframe in sorted(STORED_TIMEFRAMES)}
# Sent as one simple-query message (no parameters): one round trip per batch. The
# aggregates' DELETEs run only for a batch that withdraws a 1-minute bar.
_MERGE = {
    deletes: ";\n".join(
        [
            _UPSERT,
            _DELETE,
            *(_refresh_sql(t, deletes=deletes) for t in _REFRESH_ORDER),
            "DELETE FROM bars_stage",
        ]
    )
    for deletes in (False, True)
}


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
    """Write ``bars`` in one transaction; returns (rows upserted, rows deleted).

    The batch is copied into the session's temporary ``bars_stage`` table (``COPY``, one
    round trip for any number of bars), then merged by a fixed set of statements sent as
    one: upsert, delete of the withdrawn, refresh of the aggregates, emptying the stage.
    """
    latest: dict[tuple[str, int, int], Bar] = {}
    for bar in bars:
        latest[bar.key] = bar
    if not latest:
        return 0, 0
    names = TIMEFRAME_NAMES
    deletes = 0
    withdrawn_minute = False
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_CREATE_STAGE)
        with cur.copy(_COPY_STAGE) as copy:
            write_row = copy.write_row
            for b in latest.values():
                if not b.trade_count:
                    deletes += 1
                    withdrawn_minute = withdrawn_minute or b.timeframe_s == 60
                write_row(
                    (b.symbol, names[b.timeframe_s], b.start_ns, b.open, b.high, b.low,
                     b.close, b.volume, b.trade_count, b.notional, b.vwap_e8, b.revised,
                     b.last_seq)
                )  # fmt: skip
        cur.execute(_MERGE[withdrawn_minute])
    return len(latest) - deletes, deletes


def rebuild_bar_aggregates(conn: psycopg.Connection) -> int:
    """Recompute all of ``bar_aggregates`` from the 1-minute bars in one transaction, after
    writes that bypassed ``upsert_bars``; returns the rows written."""
    rows = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM bar_aggregates")
        for rebuild in _REBUILD.values():
            cur.execute(rebuild)
            rows += cur.rowcount
    return rows


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
