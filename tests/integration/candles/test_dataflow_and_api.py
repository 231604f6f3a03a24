"""The candles dataflow end to end on the MemoryBus into real PostgreSQL, and GET /v1/bars."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main

from candles.dataflow import BarBusSink, BusBridge, BusSource, build_flow
from candles.storage import read_bars
from normalize.proto import marketdata_pb2 as pb
from tests.unit.candles.reference import polars_bars, simulated_records, trades_frame
from tickerplant.api import create_app
from tickerplant.bus import MemoryBus
from tickerplant.db import connect, open_async_pool
from tickerplant.identity import Role, create_user
from tickerplant.observability import Health, new_registry
from tickerplant.topics import MD_BARS, MD_TRADES

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[bytes, bytes], ...]:
    return simulated_records(str(tmp_path_factory.mktemp("sim")))


@pytest.fixture
def bridge() -> BusBridge:
    b = BusBridge(MemoryBus(partitions=4))
    b.run(b.bus.start())
    for topic in (MD_TRADES, MD_BARS):
        b.run(b.bus.create_topic(topic))
    yield b
    b.run(b.bus.close())
    b.close()


def run_candles_over(bridge: BusBridge, dsn: str) -> None:
    """Run the dataflow once over everything on md.trades, to the end, flushing windows."""
    flow = build_flow(
        BusSource(bridge, MD_TRADES, until_end=True), dsn=dsn, bars_sink=BarBusSink(bridge)
    )
    run_main(flow)


def stored(dsn: str, timeframe: str) -> list[tuple]:
    with connect(dsn) as conn:
        rows = read_bars(conn, timeframe=timeframe)
    return [
        (s, int(t.timestamp()) * 1_000_000_000, o, h, lo, c, v, n, vw)
        for s, t, o, h, lo, c, v, n, vw, _ in rows
    ]


def test_stored_bars_equal_polars_bars_and_a_second_run_changes_nothing(bridge, day, migrated_dsn):
    """A simulated session through MemoryBus → dataflow → PostgreSQL stores exactly Polars'
    1-second and 1-minute bars; running the dataflow again over the same trades leaves the
    same rows (idempotent upserts)."""
    bridge.run(bridge.bus.publish_many(MD_TRADES, day))
    run_candles_over(bridge, migrated_dsn)
    frame = trades_frame(day)
    seconds, minutes = stored(migrated_dsn, "1Sec"), stored(migrated_dsn, "1Min")
    assert seconds == polars_bars(frame, "1s")
    assert minutes == polars_bars(frame, "1m")
    run_candles_over(bridge, migrated_dsn)
    assert stored(migrated_dsn, "1Sec") == seconds
    assert stored(migrated_dsn, "1Min") == minutes


def test_md_bars_receives_every_closed_bar_keyed_by_symbol(bridge, day, migrated_dsn):
    """Every bar stored is also published on md.bars as a pb.Bar in an EventBatch keyed by
    its symbol; with in-order trades none is revised."""
    bridge.run(bridge.bus.publish_many(MD_TRADES, day))
    run_candles_over(bridge, migrated_dsn)

    async def read_all() -> list[tuple[bytes, pb.EventBatch]]:
        sub = await bridge.bus.subscribe([MD_BARS], start="earliest")
        out = []
        while batch := await sub.next_batch(10_000, timeout=0.2):
            out += [(r.key, pb.EventBatch.FromString(r.value)) for r in batch]
        await sub.close()
        return out

    published = bridge.run(read_all())
    bars = [(key, e.bar) for key, b in published for e in b.events]
    assert all(key.decode() == bar.symbol for key, bar in bars)
    assert not any(bar.revised for _, bar in bars)
    frame = trades_frame(day)
    expected = len(polars_bars(frame, "1s")) + len(polars_bars(frame, "1m"))
    assert len(bars) == expected


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def loaded(bridge, day, migrated_dsn) -> str:
    bridge.run(bridge.bus.publish_many(MD_TRADES, day))
    run_candles_over(bridge, migrated_dsn)
    return migrated_dsn


@pytest.fixture
async def client(loaded: str) -> AsyncIterator[httpx.AsyncClient]:
    pool = await open_async_pool(loaded)
    app = create_app(pool=pool, registry=new_registry("test"), health=Health())
    with connect(loaded) as conn:
        _, token = create_user(conn, "quinn", Role.QUANT)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http
    await pool.close()


def dollars(value: int, places: int) -> Decimal:
    return Decimal(value).scaleb(-places)


def symbol_of(day) -> str:
    return sorted(trades_frame(day)["symbol"].unique())[0]


async def test_one_minute_bars_in_json_carry_exact_dollar_prices(client, day):
    """GET /v1/bars 1Min answers the Alpaca-like JSON with the Polars bars, prices exact."""
    sym = symbol_of(day)
    expected = [b for b in polars_bars(trades_frame(day), "1m") if b[0] == sym]
    r = await client.get("/v1/bars", params={"symbols": sym, "timeframe": "1Min"})
    assert r.status_code == 200, r.text
    body = r.json(parse_float=Decimal)
    assert body["next_page_token"] is None
    got = [
        (b["t"], b["o"], b["h"], b["l"], b["c"], b["v"], b["n"], b["vw"]) for b in body["bars"][sym]
    ]
    want = [
        (
            datetime.fromtimestamp(t // 10**9, UTC).isoformat().replace("+00:00", "Z"),
            dollars(o, 4),
            dollars(h, 4),
            dollars(lo, 4),
            dollars(c, 4),
            v,
            n,
            dollars(vw, 8),
        )  # fmt: skip
        for _, t, o, h, lo, c, v, n, vw in expected
    ]
    assert got == want


async def test_csv_arrow_and_parquet_hold_the_same_bars_as_json(client, day):
    """format=csv, Accept: arrow stream, and format=parquet give the same rows."""
    sym = symbol_of(day)
    params = {"symbols": sym, "timeframe": "1Min"}
    expected = [b for b in polars_bars(trades_frame(day), "1m") if b[0] == sym]
    csv = await client.get("/v1/bars", params=params | {"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().split("\n")
    assert lines[0] == "symbol,t,o,h,l,c,v,n,vw"
    assert len(lines) == 1 + len(expected)
    arrow = await client.get(
        "/v1/bars", params=params, headers={"Accept": "application/vnd.apache.arrow.stream"}
    )
    table = pa.ipc.open_stream(arrow.content).read_all()
    parquet = await client.get("/v1/bars", params=params | {"format": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
    got = [
        (
            s,
            t,
            int(o.scaleb(4)),
            int(h.scaleb(4)),
            int(lo.scaleb(4)),
            int(c.scaleb(4)),
            v,
            n,
            int(vw.scaleb(8)),
        )  # fmt: skip
        for s, t, o, h, lo, c, v, n, vw in zip(
            *(table[c].to_pylist() for c in table.column_names), strict=True
        )
    ]
    assert [(g[0], *g[2:]) for g in got] == [(e[0], *e[2:]) for e in expected]
    assert table.schema.field("o").type == pa.decimal128(18, 4)


async def test_higher_timeframes_from_the_database_equal_polars_resampling(client, day):
    """5Min and 1Day bars from date_bin resampling equal Polars' resampling of the trades;
    the day bar is labelled at New York midnight."""
    frame = trades_frame(day)
    symbols = sorted(frame["symbol"].unique())
    r = await client.get(
        "/v1/bars", params={"symbols": ",".join(symbols), "timeframe": "5Min", "limit": 10_000}
    )
    body = r.json(parse_float=Decimal)
    got = sorted(
        (
            s,
            b["t"],
            int(b["o"] * 10_000),
            int(b["h"] * 10_000),
            int(b["l"] * 10_000),
            int(b["c"] * 10_000),
            b["v"],
            b["n"],
            int(b["vw"] * 10**8),
        )  # fmt: skip
        for s, bars in body["bars"].items()
        for b in bars
    )
    want = sorted(
        (s, datetime.fromtimestamp(t // 10**9, UTC).isoformat().replace("+00:00", "Z"), *rest)
        for s, t, *rest in polars_bars(frame, "5m")
    )
    assert got == want
    r = await client.get("/v1/bars", params={"symbols": symbols[0], "timeframe": "1Day"})
    (day_bar,) = r.json(parse_float=Decimal)["bars"][symbols[0]]
    totals = frame.filter(pl.col("symbol") == symbols[0])
    assert day_bar["t"] == "2024-03-01T05:00:00Z"
    assert (day_bar["v"], day_bar["n"]) == (totals["size"].sum(), totals.height)


async def test_pages_follow_with_the_token_until_every_bar_is_returned(client, day):
    """limit=7 across all symbols: following next_page_token returns every 1Min bar once."""
    symbols = sorted(trades_frame(day)["symbol"].unique())
    params = {"symbols": ",".join(symbols), "timeframe": "1Min", "limit": 7, "sort": "desc"}
    seen: list[tuple[str, str]] = []
    token = None
    for _ in range(100):
        r = await client.get("/v1/bars", params=params | ({"page_token": token} if token else {}))
        body = r.json()
        seen += [(s, b["t"]) for s, bars in body["bars"].items() for b in bars]
        token = body["next_page_token"]
        if token is None:
            break
    assert len(seen) == len(set(seen)) == len(polars_bars(trades_frame(day), "1m"))


ACCEPTED = "; accepted: [1-59]Min, [1-23]Hour, 1Day, 1Week, [1,2,3,4,6,12]Month"


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"timeframe": "7Days"}, 400, f"timeframe: unknown timeframe '7Days'{ACCEPTED}"),
        ({"timeframe": "60Min"}, 400, f"timeframe: unknown timeframe '60Min'{ACCEPTED}"),
        ({"timeframe": "5Month"}, 400, f"timeframe: unknown timeframe '5Month'{ACCEPTED}"),
        ({"start": "2024-03-02", "end": "2024-03-01"}, 400,
         "start: start 2024-03-02T05:00:00Z is after end 2024-03-02T04:59:59.999999Z"),
        ({"symbols": "ZZZZ"}, 400, "symbols: unknown symbol 'ZZZZ': no bars are stored for it"),
        ({"limit": 0}, 400, "limit: must be between 1 and 10000, got 0"),
        ({"limit": 10_001}, 400, "limit: must be between 1 and 10000, got 10001"),
        ({"sort": "up"}, 400, "sort: accepted: asc, desc, got 'up'"),
        ({"format": "xml"}, 400, "format: accepted: json, csv, arrow, parquet"),
        ({"start": "yesterday"}, 400, "start: expected RFC 3339 or YYYY-MM-DD"),
        ({"page_token": "!!"}, 400, "page_token: not a token this API returned in next_page_token"),
    ],
)  # fmt: skip
async def test_a_bad_parameter_is_a_400_naming_it(client, day, params, status, detail):
    """Each invalid parameter answers 400 with a message that names it and what fits."""
    query = {"symbols": symbol_of(day), "timeframe": "1Min"} | params
    r = await client.get("/v1/bars", params=query)
    assert (r.status_code, r.json()) == (status, {"detail": detail})


async def test_bars_need_a_bearer_token(loaded):
    """Without Authorization the bars endpoint answers 401."""
    pool = await open_async_pool(loaded)
    app = create_app(pool=pool, registry=new_registry("test"), health=Health())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        r = await http.get("/v1/bars", params={"symbols": "AAPL", "timeframe": "1Min"})
    await pool.close()
    assert r.status_code == 401
