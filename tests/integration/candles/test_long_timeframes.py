"""1Week and 1/3/6/12Month bars from ``GET /v1/bars`` on the real PostgreSQL equal Polars'
``group_by_dynamic`` of the same 1-minute bars in New York time (weeks from Monday, months
from the 1st, grouped from January), across week and month ends, a year end and the March
daylight-saving change, with minutes on both sides of New York midnight."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest

from candles.bars import Bar, vwap_e8
from tests.integration.candles.synthetic import SYMBOLS, client, loaded, minute_bars

pytestmark = pytest.mark.postgres
__all__ = ["client", "loaded"]  # fixtures

NY = ZoneInfo("America/New_York")
POLARS_EVERY = {"1Week": "1w", "1Month": "1mo", "3Month": "3mo", "6Month": "6mo", "12Month": "12mo"}


def polars_resampled(bars: list[Bar], timeframe: str) -> dict[str, list[tuple]]:
    """The same bars resampled by Polars in New York time: (t as RFC 3339 UTC, o, h, l, c,
    v, n, vwap_e8) per symbol; VWAP exact from the summed notionals."""
    frame = pl.DataFrame(
        {
            "symbol": [b.symbol for b in bars],
            "time": [b.start_ns // 1000 for b in bars],
            "o": [b.open for b in bars],
            "h": [b.high for b in bars],
            "l": [b.low for b in bars],
            "c": [b.close for b in bars],
            "v": [b.volume for b in bars],
            "n": [b.trade_count for b in bars],
            "notional": [b.notional for b in bars],
        },
        schema_overrides={"notional": pl.Int128},
    ).with_columns(
        pl.from_epoch("time", time_unit="us")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(NY.key)
    )
    out = (
        frame.sort("symbol", "time")
        .group_by_dynamic("time", every=POLARS_EVERY[timeframe], group_by="symbol",
                          closed="left", label="left", start_by="window")
        .agg(pl.col("o").first(), pl.col("h").max(), pl.col("l").min(), pl.col("c").last(),
             pl.col("v").sum(), pl.col("n").sum(), pl.col("notional").sum())
        .sort("symbol", "time")
    )  # fmt: skip
    result: dict[str, list[tuple]] = {}
    for s, t, o, h, lo, c, v, n, notional in out.iter_rows():
        label = t.astimezone(UTC).isoformat().replace("+00:00", "Z")
        result.setdefault(s, []).append((label, o, h, lo, c, v, n, vwap_e8(notional, v)))
    return result


async def api_bars(client: httpx.AsyncClient, timeframe: str) -> dict[str, list[tuple]]:
    r = await client.get(
        "/v1/bars",
        params={
            "symbols": ",".join(SYMBOLS),
            "timeframe": timeframe,
            "start": "2023-01-01",
            "end": "2024-12-31",
            "limit": 10_000,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json(parse_float=Decimal)
    assert body["next_page_token"] is None
    return {
        s: [
            (b["t"], int(b["o"] * 10**4), int(b["h"] * 10**4), int(b["l"] * 10**4),
             int(b["c"] * 10**4), b["v"], b["n"], int(b["vw"] * 10**8))
            for b in bars
        ]
        for s, bars in body["bars"].items()
    }  # fmt: skip


@pytest.mark.parametrize("timeframe", ["1Week", "1Month", "3Month", "6Month", "12Month"])
async def test_week_and_month_bars_equal_polars_resampling_in_new_york_time(
    client, loaded, timeframe
):
    """Every bar of both symbols, all values exact, equals Polars' group_by_dynamic of the
    same 1-minute bars over New York local time."""
    _, bars = loaded
    want = polars_resampled(bars, timeframe)
    assert await api_bars(client, timeframe) == want
    assert sum(len(v) for v in want.values()) == 2 * {
        "1Week": 16, "1Month": 5, "3Month": 3, "6Month": 2, "12Month": 2
    }[timeframe]  # fmt: skip


async def test_week_and_month_labels_are_new_york_midnights_of_monday_and_the_first(client):
    """Labels are UTC instants of New York midnight: EST (05:00Z) before 10 March 2024,
    EDT (04:00Z) after; the 23:59 New York minute of 31 December (04:59Z on 1 January) is
    in December's and 2023's bars, and Sunday 23:59 in the week before Monday's."""
    weeks = await api_bars(client, "1Week")
    assert [b[0] for b in weeks["AAA"]][:3] == [
        "2023-12-18T05:00:00Z",
        "2023-12-25T05:00:00Z",
        "2024-01-01T05:00:00Z",
    ]
    assert [b[0] for b in weeks["AAA"]][-4:] == [
        "2024-03-11T04:00:00Z",
        "2024-03-18T04:00:00Z",
        "2024-03-25T04:00:00Z",
        "2024-04-01T04:00:00Z",
    ]
    months = await api_bars(client, "1Month")
    assert [b[0] for b in months["BBB"]] == [
        "2023-12-01T05:00:00Z",
        "2024-01-01T05:00:00Z",
        "2024-02-01T05:00:00Z",
        "2024-03-01T05:00:00Z",
        "2024-04-01T04:00:00Z",
    ]
    assert [b[0] for b in (await api_bars(client, "3Month"))["AAA"]] == [
        "2023-10-01T04:00:00Z",
        "2024-01-01T05:00:00Z",
        "2024-04-01T04:00:00Z",
    ]
    years = (await api_bars(client, "12Month"))["AAA"]
    assert [b[0] for b in years] == ["2023-01-01T05:00:00Z", "2024-01-01T05:00:00Z"]
    # 2023's bar holds 12 days (20-31 December) x 5 minutes; its close is the 23:59 New
    # York minute of 31 December, which is 04:59Z on 1 January.
    aaa = [b for b in minute_bars() if b.symbol == "AAA"]
    in_2023 = [b for b in aaa if datetime.fromtimestamp(b.start_ns / 1e9, NY).year == 2023]
    last = in_2023[-1]
    assert len(in_2023) == 60
    assert datetime.fromtimestamp(last.start_ns / 1e9, UTC) == datetime(
        2024, 1, 1, 4, 59, tzinfo=UTC
    )
    assert years[0][4:7] == (last.close, sum(b.volume for b in in_2023),
                             sum(b.trade_count for b in in_2023))  # fmt: skip
