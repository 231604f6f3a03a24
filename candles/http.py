"""``GET /v1/bars``: historical bars for quants, Alpaca-like, in JSON, CSV, Arrow or Parquet.

Prices in JSON and CSV are **decimal numbers of dollars written exactly** from the stored
integers (``"o":187.5``, VWAP with up to 8 decimals); Arrow and Parquet use
``decimal128(18, 4)`` for prices and ``decimal128(18, 8)`` for VWAP. ``t`` is RFC 3339 UTC in
JSON/CSV and ``timestamp[ns, UTC]`` in Arrow/Parquet. Rows are ordered by symbol, then time
(``sort`` = asc or desc); ``limit`` counts rows across symbols; ``next_page_token``, when not
null, is passed back as ``page_token`` with the same other parameters for the next page.

``start``/``end`` are RFC 3339 with an offset, or a date meaning that day in New York
(``start`` = its midnight, ``end`` = its last instant); both inclusive on the bar label.
``timeframe``: ``[1-59]Min`` and ``[1-23]Hour`` buckets counted from each New York session
day's midnight, ``1Day`` the New York calendar day, ``1Week`` from Monday, ``NMonth`` (1, 2,
3, 4, 6, 12) calendar months from January; ``t`` is always the bucket start as a UTC instant
(a day, week or month starts at New York midnight: ``05:00Z`` in winter, ``04:00Z`` in summer).
Errors are 400 with ``{"detail": "<parameter>: <what is wrong and what fits>"}``.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from candles.errors import BadBarsQueryError, CandlesError, UnknownSymbolError
from candles.frames import bars_table, csv_body, json_body, page_frame
from candles.query import (
    EXCHANGE_TZ,
    bars_query,
    decode_page_token,
    encode_page_token,
    page_arrays_query,
    parse_timeframe,
    register_raw_arrays,
)
from tickerplant.auth import current_user
from tickerplant.identity import User

__all__ = ["bars_table", "router"]

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_NY = ZoneInfo(EXCHANGE_TZ)
_FORMATS = {
    "json": "application/json",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
_ACCEPT = {media: name for name, media in _FORMATS.items()} | {
    "application/x-parquet": "parquet",
    "application/octet-stream+parquet": "parquet",
}

router = APIRouter(tags=["bars"])


def _parse_time(name: str, text: str, *, end: bool) -> datetime:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            t = datetime.combine(day, time(), _NY)
            return (t - timedelta(microseconds=1) if end else t).astimezone(UTC)
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadBarsQueryError(name, text, "expected RFC 3339 or YYYY-MM-DD") from exc
    if t.tzinfo is None:
        raise BadBarsQueryError(name, text, "RFC 3339 needs an offset, e.g. Z or -05:00")
    return t.astimezone(UTC)


def _format(fmt: str | None, accept: str | None) -> str:
    if fmt is not None:
        if fmt not in _FORMATS:
            raise BadBarsQueryError("format", fmt, "accepted: json, csv, arrow, parquet")
        return fmt
    for part in (accept or "").split(","):
        name = _ACCEPT.get(part.split(";")[0].strip())
        if name is not None:
            return name
    return "json"


def _binary(frame: pl.DataFrame, fmt: str) -> bytes:
    table = bars_table(frame)
    sink = io.BytesIO()
    if fmt == "arrow":
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.get(
    "/v1/bars",
    summary="Historical OHLCV bars",
    description=__doc__,
    responses={400: {"description": "a parameter is invalid; the message names it"}},
)
async def get_bars(
    request: Request,
    user: Annotated[User, Depends(current_user)],
    symbols: Annotated[str, Query(description="comma-separated, e.g. AAPL,MSFT")],
    timeframe: Annotated[str, Query(description="[1-59]Min, [1-23]Hour, 1Day, 1Week, NMonth")],
    start: Annotated[str | None, Query(description="RFC 3339 or date; default: all")] = None,
    end: Annotated[str | None, Query(description="RFC 3339 or date; default: now")] = None,
    limit: Annotated[int, Query(description="rows across symbols, 1-10000")] = DEFAULT_LIMIT,
    page_token: Annotated[str | None, Query()] = None,
    sort: Annotated[str, Query(description="asc or desc (time order)")] = "asc",
    format: Annotated[str | None, Query(description="json, csv, arrow, parquet")] = None,
) -> Response:
    try:
        return await _get_bars(
            request, symbols, timeframe, start, end, limit, page_token, sort, format
        )
    except CandlesError as exc:
        raise HTTPException(400, str(exc)) from exc


async def _get_bars(
    request: Request,
    symbols_text: str,
    timeframe: str,
    start_text: str | None,
    end_text: str | None,
    limit: int,
    page_token: str | None,
    sort: str,
    fmt_text: str | None,
) -> Response:
    fmt = _format(fmt_text, request.headers.get("accept"))
    tf = parse_timeframe(timeframe)
    symbols = list(dict.fromkeys(s.strip().upper() for s in symbols_text.split(",") if s.strip()))
    if not symbols:
        raise BadBarsQueryError("symbols", symbols_text, "give at least one symbol")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadBarsQueryError("limit", limit, f"must be between 1 and {MAX_LIMIT}, got {limit}")
    if sort not in ("asc", "desc"):
        raise BadBarsQueryError("sort", sort, f"accepted: asc, desc, got {sort!r}")
    start = (
        _parse_time("start", start_text, end=False)
        if start_text
        else datetime(1970, 1, 1, tzinfo=UTC)
    )
    end = _parse_time("end", end_text, end=True) if end_text else datetime.now(UTC)
    if start > end:
        raise BadBarsQueryError(
            "start", start_text, f"start {_rfc3339(start)} is after end {_rfc3339(end)}"
        )
    after = decode_page_token(page_token) if page_token else None
    sql, params = bars_query(
        tf,
        symbols=symbols,
        start=start,
        end=end,
        limit=limit + 1,
        descending=sort == "desc",
        after=after,
    )
    async with request.app.state.pool.connection() as conn:
        cur = conn.cursor(binary=True)
        register_raw_arrays(cur)
        one_symbol = len(symbols) == 1
        await cur.execute(page_arrays_query(sql, one_symbol=one_symbol), params)
        first, *columns = await cur.fetchone()
        frame = page_frame((symbols[0], first) if one_symbol else first, tuple(columns))
        # A symbol with a bar in the page is known; only the others need the check.
        missing = set(symbols).difference(frame["symbol"].unique().to_list())
        if missing:
            cur = await conn.execute(
                "SELECT s FROM unnest(%s::text[]) AS s"
                " WHERE NOT EXISTS (SELECT 1 FROM bars WHERE symbol = s)",
                [[s for s in symbols if s in missing]],
            )
            unknown = [row[0] for row in await cur.fetchall()]
            if unknown:
                raise UnknownSymbolError(unknown)
    token = None
    if frame.height > limit:
        frame = frame.head(limit)
        last_symbol, last_t = frame.row(limit - 1)[:2]
        token = encode_page_token(last_symbol, last_t)
    headers = {} if token is None else {"X-Next-Page-Token": token}
    if fmt == "json":
        body = json_body(frame, token)
    elif fmt == "csv":
        body = csv_body(frame)
    else:
        body = _binary(frame, fmt)
    return Response(body, media_type=_FORMATS[fmt], headers=headers)
