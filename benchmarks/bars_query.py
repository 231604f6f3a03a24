"""Bars query latency: "one symbol, 5-minute bars, last year" through ``GET /v1/bars``.

Loads 100 symbols x one year of 1-minute bars (252 weekdays x 390 session minutes =
98,280 bars per symbol, 9.8 M rows; random-walk integer prices, every row satisfying the
table's checks) into the ``bars`` table of a scratch database with ``COPY``, runs the HTTP
API (``tickerplant.api.create_app``) under uvicorn on 127.0.0.1 (port 0, a thread of this
process), and times ``--requests`` queries per format with httpx:
``symbols=<one>&timeframe=5Min&start=<now - 365 days>&end=<now>&limit=10000``.

A year of 5-minute bars is 19,656 rows, more than the API's maximum ``limit`` (10,000): one
*query* is therefore the first request plus the follow-up with ``page_token`` (2 requests),
and its latency is the time for the whole set. Each query picks the next symbol in turn;
the formats alternate query by query (JSON, Arrow, JSON, …: until 2026-11-25 all JSON queries
ran before all Arrow ones, so a change of load on the shared machine between the two phases
showed as a difference between formats). For the attribution, the SQL is also timed
directly with psycopg, without HTTP or encoding: as the API fetches it now (one row of
arrays per page, ``page_arrays_query``, read into a frame) and as plain rows of
``bars_query`` turned into Python tuples (what the API did before).

Targets (issue 5): JSON p50 < 50 ms and p99 < 200 ms; Arrow faster than JSON.

Run: ``.venv/bin/python benchmarks/bars_query.py [--dsn URL] [--requests 200] [--keep NAME]``

``--keep NAME`` (for development) loads into the database ``NAME`` once and leaves it there;
later runs with the same ``NAME`` find its rows (same symbols, same day of loading) and skip
the ~2-minute load. The migrations still run, so a new migration applies to a kept database.
Without it a scratch database is created and dropped. Figures for the record come from a
fresh load (no ``--keep``), or from a kept database loaded the same day.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

if __name__ == "__main__":
    # Run as a script, this folder heads sys.path and benchmarks/normalize.py would shadow
    # the normalize package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import httpx
import polars as pl
import psycopg
import uvicorn
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks.itch_input import machine
from candles.frames import page_frame
from candles.query import bars_query, page_arrays_query, parse_timeframe, register_raw_arrays
from candles.storage import rebuild_bar_aggregates
from tickerplant.api import create_app
from tickerplant.db import migrate, open_async_pool
from tickerplant.identity import Role, create_user
from tickerplant.observability import Health, new_registry

SYMBOLS = 100
DAYS = 252
SESSION_MINUTES = 390  # 09:30-16:00 New York
LIMIT = 10_000
TARGET_P50_MS = 50.0
TARGET_P99_MS = 200.0
NY = ZoneInfo("America/New_York")
COLUMNS = (
    "symbol, timeframe, start, open, high, low, close, volume, trade_count, notional,"
    " vwap_e8, revised, last_seq"
)


# -- data -----------------------------------------------------------------------------------


def session_starts(today: date) -> pl.Series:
    """The UTC start of every session minute of the last ``DAYS`` weekdays before today."""
    days: list[date] = []
    day = today
    while len(days) < DAYS:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    opens = [
        datetime(d.year, d.month, d.day, 9, 30, tzinfo=NY).astimezone(UTC) for d in sorted(days)
    ]
    frame = pl.DataFrame({"open": opens}).with_columns(
        pl.col("open").dt.cast_time_unit("us"),
        pl.lit(list(range(SESSION_MINUTES))).alias("minute"),
    )
    frame = frame.explode("minute", empty_as_null=True).select(
        (pl.col("open") + pl.duration(minutes=pl.col("minute"))).alias("start")
    )
    return frame["start"]


def noise(n: int, seed: int, low: int, high: int) -> pl.Expr:
    """Deterministic pseudo-random integers in [low, high] (a hash of the row index)."""
    return (pl.int_range(n, dtype=pl.UInt64).hash(seed) % (high - low + 1)).cast(pl.Int64) + low


def symbol_bars(symbol: str, index: int, starts: pl.Series) -> pl.DataFrame:
    """One symbol's year of 1-minute bars: a random walk of integer prices (4 decimals)."""
    n = starts.len()
    base = 200_000 + 10_000 * index  # $20.00 + $1 per symbol index
    frame = pl.DataFrame({"start": starts}).with_columns(
        (base + noise(n, 4 * index + 1, -300, 300).cum_sum()).clip(10_000).alias("close")
    )
    frame = frame.with_columns(pl.col("close").shift(1, fill_value=base).alias("open"))
    frame = frame.with_columns(
        (pl.max_horizontal("open", "close") + noise(n, 4 * index + 2, 0, 200)).alias("high"),
        (pl.min_horizontal("open", "close") - noise(n, 4 * index + 3, 0, 200)).clip(1).alias("low"),
        noise(n, 4 * index + 4, 100, 20_000).alias("volume"),
    )
    vwap = (pl.col("high") + pl.col("low")) // 2  # within [low, high]
    return frame.select(
        pl.lit(symbol).alias("symbol"),
        pl.lit("1Min").alias("timeframe"),
        pl.col("start").dt.strftime("%Y-%m-%d %H:%M:%S+00"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        (pl.col("volume") // 100 + 1).alias("trade_count"),
        (vwap * pl.col("volume")).alias("notional"),
        (vwap * 10_000).alias("vwap_e8"),
        pl.lit("f").alias("revised"),
        pl.int_range(n, dtype=pl.Int64).alias("last_seq"),
    )


def load(dsn: str, symbols: list[str]) -> int:
    """COPY every symbol's bars into ``bars`` and build the stored aggregates; returns the rows
    loaded."""
    starts = session_starts(datetime.now(NY).date())
    rows = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY bars ({COLUMNS}) FROM STDIN (FORMAT csv)") as cp:
            for index, symbol in enumerate(symbols):
                frame = symbol_bars(symbol, index, starts)
                cp.write(frame.write_csv(include_header=False).encode())
                rows += frame.height
        # COPY bypasses upsert_bars, which keeps the stored 5Min/15Min/1Hour/1Day bars: build
        # them once, as the migration does for bars already in the table.
        rebuild_bar_aggregates(conn)
        conn.execute("VACUUM ANALYZE bars")
        conn.execute("VACUUM ANALYZE bar_aggregates")
    return rows


# -- the server -----------------------------------------------------------------------------


class ApiServer:
    """The HTTP API under uvicorn on 127.0.0.1 (a free port), on its own thread and loop."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.port = 0
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        pool = await open_async_pool(self.dsn)
        app = create_app(pool=pool, registry=new_registry("bench"), health=Health())
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        task = asyncio.create_task(self._server.serve())
        while not self._server.started and not task.done():
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._ready.set()
        await task
        await pool.close()

    def __enter__(self) -> ApiServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("uvicorn did not start within 30 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)


# -- timing ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def one_query(
    client: httpx.Client, symbol: str, start: str, end: str, fmt: str
) -> tuple[float, int, int]:
    """Seconds for the whole set (following page tokens), requests made, body bytes."""
    params = {
        "symbols": symbol,
        "timeframe": "5Min",
        "start": start,
        "end": end,
        "limit": str(LIMIT),
        "format": fmt,
    }
    requests = size = 0
    started = time.perf_counter()
    token = None
    while True:
        r = client.get("/v1/bars", params=params | ({"page_token": token} if token else {}))
        if r.status_code != 200:
            raise RuntimeError(f"GET /v1/bars {r.status_code}: {r.text[:200]}")
        requests += 1
        size += len(r.content)
        token = r.headers.get("x-next-page-token")
        if token is None:
            break
    return time.perf_counter() - started, requests, size


def sql_only(
    dsn: str,
    symbols: list[str],
    start: datetime,
    end: datetime,
    n: int,
    *,
    page_arrays: bool = False,
) -> list[float]:
    """Seconds for the SQL alone (both pages, psycopg, no HTTP, no encoding): the rows of
    ``bars_query`` as Python tuples, or (``page_arrays``) the one row of arrays of
    ``page_arrays_query`` the API fetches, read into a frame for the page token."""
    tf = parse_timeframe("5Min")
    times = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            symbol = symbols[i % len(symbols)]
            started = time.perf_counter()
            after = None
            while True:
                query, params = bars_query(
                    tf,
                    symbols=[symbol],
                    start=start,
                    end=end,
                    limit=LIMIT + 1,
                    descending=False,
                    after=after,
                )
                if page_arrays:
                    cur = conn.cursor(binary=True)
                    register_raw_arrays(cur)
                    rows, *columns = cur.execute(
                        page_arrays_query(query, one_symbol=True), params
                    ).fetchone()
                    frame = page_frame((symbol, rows), tuple(columns))
                    if frame.height <= LIMIT:
                        break
                    after = frame.row(LIMIT - 1)[:2]
                    continue
                rows = conn.execute(query, params).fetchall()
                if len(rows) <= LIMIT:
                    break
                after = (rows[LIMIT - 1][0], rows[LIMIT - 1][1])
            times.append(time.perf_counter() - started)
    return times


def scratch_database(admin_dsn: str, name: str | None = None) -> tuple[str, str, bool]:
    """A database for the run: ``name`` if given (created unless it exists), else a new
    scratch one; returns (name, DSN, whether it already existed)."""
    name = name or f"bench_bars_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(admin_dsn, dbname=name), exists is not None


def already_loaded(dsn: str) -> int:
    """Rows of 1-minute bars a kept database holds (0 when it needs loading)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM bars WHERE timeframe = '1Min' AND symbol = 'S000'"
            ).fetchone()[0]
            * SYMBOLS
        )


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("TP_TEST_DATABASE_URL", ""))
    parser.add_argument("--requests", type=int, default=200, help="queries per format")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--keep", metavar="NAME", help="load into database NAME once and reuse it (development)"
    )
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set TP_TEST_DATABASE_URL (deploy/postgres/pg.sh start DIR)")

    print(f"{machine()}; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    symbols = [f"S{i:03d}" for i in range(SYMBOLS)]
    name, dsn, existed = scratch_database(args.dsn, args.keep)
    try:
        migrate(dsn)
        rows = already_loaded(dsn) if existed else 0
        if rows:
            print(f"reusing database {name}: {rows:,} 1-minute bars already loaded", flush=True)
        else:
            started = time.perf_counter()
            rows = load(dsn, symbols)
            print(
                f"loaded {rows:,} 1-minute bars ({rows // SYMBOLS:,} per symbol,"
                f" {SYMBOLS} symbols) with COPY in {time.perf_counter() - started:.1f} s"
                " (incl. aggregates and VACUUM ANALYZE)",
                flush=True,
            )
        with psycopg.connect(dsn, autocommit=True) as conn:
            _, token = create_user(conn, f"bench-{uuid.uuid4().hex[:8]}", Role.QUANT)
        now = datetime.now(UTC).replace(microsecond=0)
        year_ago = now - timedelta(days=365)
        start, end = year_ago.isoformat(), now.isoformat()
        results: dict[str, list[float]] = {}
        with (
            ApiServer(dsn) as server,
            httpx.Client(
                base_url=f"http://127.0.0.1:{server.port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as client,
        ):
            # The formats alternate query by query (same symbol in turn), so a change in
            # the shared machine's load falls on both alike.
            formats = ("json", "arrow")
            for i in range(args.warmup):
                for fmt in formats:
                    one_query(client, symbols[i], start, end, fmt)
            results.update({fmt: [] for fmt in formats})
            sizes = dict.fromkeys(formats, 0)
            for i in range(args.requests):
                for fmt in formats:
                    seconds, requests, sizes[fmt] = one_query(
                        client, symbols[i % SYMBOLS], start, end, fmt
                    )
                    results[fmt].append(seconds)
            for fmt in formats:
                print(
                    f"  {fmt}: {args.requests} queries, {requests} requests each,"
                    f" {sizes[fmt] / 1e6:.2f} MB per query",
                    flush=True,
                )
        n_sql = max(20, args.requests // 4)
        results["API SQL only (page arrays, psycopg)"] = sql_only(
            dsn, symbols, year_ago, now, n_sql, page_arrays=True
        )
        results["SQL rows only (psycopg tuples)"] = sql_only(dsn, symbols, year_ago, now, n_sql)

        print(f"\nbars per query: one symbol, 5Min, {start} .. {end}")
        print("\n| path | queries | p50 ms | p99 ms | mean ms | max ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, times in results.items():
            ms = [t * 1e3 for t in times]
            print(
                f"| {label} | {len(ms)} | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.99):.1f}"
                f" | {statistics.mean(ms):.1f} | {max(ms):.1f} |"
            )
        p50 = percentile(results["json"], 0.5) * 1e3
        p99 = percentile(results["json"], 0.99) * 1e3
        a50 = percentile(results["arrow"], 0.5) * 1e3
        print(
            f"\nJSON p50 < {TARGET_P50_MS:.0f} ms: {'PASS' if p50 < TARGET_P50_MS else 'FAIL'}"
            f" ({p50:.1f}); JSON p99 < {TARGET_P99_MS:.0f} ms:"
            f" {'PASS' if p99 < TARGET_P99_MS else 'FAIL'} ({p99:.1f});"
            f" Arrow faster than JSON at p50: {'PASS' if a50 < p50 else 'FAIL'}"
            f" ({a50:.1f} vs {p50:.1f})"
        )
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        if args.keep is None:
            drop_database(args.dsn, name)


if __name__ == "__main__":
    main()
