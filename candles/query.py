"""Bars at any timeframe, resampled in SQL from the stored 1-minute bars.

Plain PostgreSQL (``date_bin``, ``date_trunc``); TimescaleDB is not required. Alignment:

- ``NMin`` / ``NHour``: buckets of N minutes/hours starting at the exchange's midnight
  (America/New_York) of each session day, computed in absolute time (``date_bin`` with that
  midnight as origin). For N dividing an hour or a day this equals UTC-aligned buckets
  shifted to the exchange day, so 5Min/15Min/30Min/1Hour boundaries fall on 09:30, 10:00 … .
- ``1Day``: the exchange session day (America/New_York calendar date); the bar's ``t`` is
  that day's midnight in New York (e.g. ``2024-03-01T05:00:00Z``), as Alpaca labels them.
- ``1Week``: weeks starting Monday, New York calendar; ``t`` = Monday midnight New York.
- ``NMonth``: calendar months grouped from January (N in 1, 2, 3, 4, 6, 12), New York
  calendar; ``t`` = the first day's midnight New York.

Every returned ``t`` is a UTC instant. Open/close are the first/last minute's; VWAP is
exact: ``Σ notional · 10⁴ / Σ volume`` rounded half up (integer ``div``), 8 decimals.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime

from candles.errors import BadBarsQueryError, UnknownTimeframeError

__all__ = [
    "EXCHANGE_TZ",
    "BarRow",
    "Timeframe",
    "bars_query",
    "decode_page_token",
    "encode_page_token",
    "parse_timeframe",
]

EXCHANGE_TZ = "America/New_York"
_TIMEFRAME = re.compile(r"^([1-9][0-9]?)(Min|Hour|Day|Week|Month)$")
_MONTHS = (1, 2, 3, 4, 6, 12)


@dataclass(frozen=True, slots=True)
class Timeframe:
    amount: int
    unit: str  # Min, Hour, Day, Week, Month

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def max_width(self) -> str:
        """An upper bound of one bucket's width, as a PostgreSQL interval."""
        unit = {"Min": "minutes", "Hour": "hours", "Day": "days", "Week": "weeks"}
        if self.unit == "Month":
            return f"{self.amount} months 1 day"
        return f"{self.amount} {unit[self.unit]} 1 hour"


def parse_timeframe(text: str) -> Timeframe:
    """``5Min`` → Timeframe(5, "Min"); anything outside the accepted set raises."""
    m = _TIMEFRAME.match(text)
    if m is None:
        raise UnknownTimeframeError(text)
    amount, unit = int(m[1]), m[2]
    ok = (
        (unit == "Min" and amount <= 59)
        or (unit == "Hour" and amount <= 23)
        or (unit in ("Day", "Week") and amount == 1)
        or (unit == "Month" and amount in _MONTHS)
    )
    if not ok:
        raise UnknownTimeframeError(text)
    return Timeframe(amount, unit)


def _bucket_sql(tf: Timeframe) -> str:
    """SQL for the bucket start (timestamptz) of the 1-minute bar at column ``start``."""
    local = f"(start AT TIME ZONE '{EXCHANGE_TZ}')"
    if tf.unit in ("Min", "Hour"):
        unit = "minutes" if tf.unit == "Min" else "hours"
        midnight = f"(date_trunc('day', {local}) AT TIME ZONE '{EXCHANGE_TZ}')"
        return f"date_bin(interval '{tf.amount} {unit}', start, {midnight})"
    if tf.unit == "Day":
        return f"(date_trunc('day', {local}) AT TIME ZONE '{EXCHANGE_TZ}')"
    if tf.unit == "Week":
        return f"(date_trunc('week', {local}) AT TIME ZONE '{EXCHANGE_TZ}')"
    # N months from January: month index (year*12 + month-1) rounded down to a multiple of N.
    months = (
        f"((extract(year from {local})::int * 12 + extract(month from {local})::int - 1)"
        f" / {tf.amount} * {tf.amount})"
    )
    return (
        f"(make_date({months} / 12, {months} % 12 + 1, 1)::timestamp"
        f" AT TIME ZONE '{EXCHANGE_TZ}')"
    )


@dataclass(frozen=True, slots=True)
class BarRow:
    symbol: str
    t: datetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    trade_count: int
    vwap_e8: int


def encode_page_token(symbol: str, t: datetime) -> str:
    raw = json.dumps([symbol, t.isoformat()], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, datetime]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        symbol, t = json.loads(raw)
        return str(symbol), datetime.fromisoformat(t)
    except (ValueError, TypeError) as exc:
        raise BadBarsQueryError(
            "page_token", token, "not a token this API returned in next_page_token"
        ) from exc


def bars_query(
    tf: Timeframe,
    *,
    symbols: list[str],
    start: datetime,
    end: datetime,
    limit: int,
    descending: bool,
    after: tuple[str, datetime] | None,
) -> tuple[str, dict[str, object]]:
    """SQL and parameters returning up to ``limit`` ``BarRow`` columns, ordered by symbol
    then time (``descending`` reverses time), bars with ``start ≤ t ≤ end``, continuing
    after ``after`` (a page token's last row)."""
    order = "DESC" if descending else "ASC"
    if tf.unit == "Min" and tf.amount == 1:
        inner = """
            SELECT symbol, start AS t, open, high, low, close, volume, trade_count, vwap_e8
            FROM bars
            WHERE timeframe = '1Min' AND symbol = ANY(%(symbols)s)
              AND start >= %(start)s AND start <= %(end)s"""
    else:
        inner = f"""
            SELECT symbol, t,
                   (array_agg(open ORDER BY start ASC))[1] AS open,
                   max(high) AS high, min(low) AS low,
                   (array_agg(close ORDER BY start DESC))[1] AS close,
                   sum(volume)::bigint AS volume, sum(trade_count)::bigint AS trade_count,
                   div(sum(notional) * 20000 + sum(volume), 2 * sum(volume))::bigint AS vwap_e8
            FROM (SELECT *, {_bucket_sql(tf)} AS t FROM bars
                  WHERE timeframe = '1Min' AND symbol = ANY(%(symbols)s)
                    AND start >= %(start)s
                    AND start < %(end)s + interval '{tf.max_width}') AS m
            GROUP BY symbol, t
            HAVING t >= %(start)s AND t <= %(end)s"""
    where = ""
    params: dict[str, object] = {"symbols": symbols, "start": start, "end": end, "limit": limit}
    if after is not None:
        cmp = "<" if descending else ">"
        where = (
            "WHERE symbol > %(after_symbol)s"
            f" OR (symbol = %(after_symbol)s AND t {cmp} %(after_t)s)"
        )
        params["after_symbol"], params["after_t"] = after
    sql = f"""
        SELECT symbol, t, open, high, low, close, volume, trade_count, vwap_e8
        FROM ({inner}) AS b
        {where}
        ORDER BY symbol ASC, t {order}
        LIMIT %(limit)s"""
    return sql, params
