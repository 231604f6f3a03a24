"""Page tokens on the real PostgreSQL: following ``next_page_token`` in small pages returns
exactly the bars of one large page, in the same order, for read-as-stored timeframes (1Min,
the stored 5Min and 1Hour: per-symbol range scans, one symbol without a sort) and
resampled ones (7Min, 1Week), one symbol or two, ascending or descending."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.candles.synthetic import SYMBOLS, client, loaded

pytestmark = pytest.mark.postgres
__all__ = ["client", "loaded"]  # fixtures


async def pages(client: httpx.AsyncClient, params: dict[str, str | int]) -> list[list[tuple]]:
    """Every page's (symbol, t, o, c, v) rows, following the tokens."""
    out: list[list[tuple]] = []
    token = None
    for _ in range(1_000):
        r = await client.get("/v1/bars", params=params | ({"page_token": token} if token else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert r.headers.get("x-next-page-token") == body["next_page_token"]
        out.append(
            [(s, b["t"], b["o"], b["c"], b["v"]) for s, bars in body["bars"].items() for b in bars]
        )
        token = body["next_page_token"]
        if token is None:
            return out
    raise AssertionError("more than 1,000 pages")


@pytest.mark.parametrize("timeframe", ["1Min", "5Min", "1Hour", "7Min", "1Week"])
@pytest.mark.parametrize("symbols", [SYMBOLS[:1], SYMBOLS], ids=["one", "two"])
@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_small_pages_return_exactly_the_bars_of_one_large_page(
    client, timeframe, symbols, sort
):
    """limit=97 pages, concatenated, equal the single limit=10000 page; every page but the
    last is full, and the large page is ordered by symbol, then time in ``sort`` order."""
    params = {
        "symbols": ",".join(symbols),
        "timeframe": timeframe,
        "start": "2023-12-01",
        "end": "2024-04-30",
        "sort": sort,
    }
    (whole,) = await pages(client, params | {"limit": 10_000})
    small = await pages(client, params | {"limit": 97})
    assert [row for page in small for row in page] == whole
    assert all(len(page) == 97 for page in small[:-1])
    assert 0 < len(small[-1]) <= 97
    assert [r[0] for r in whole] == sorted(r[0] for r in whole)
    for symbol in symbols:
        times = [r[1] for r in whole if r[0] == symbol]
        assert times == sorted(times, reverse=sort == "desc")
        assert len(set(times)) == len(times) > 0
    expected = {"1Min": 530, "1Week": 16}.get(timeframe)
    if expected is not None:  # 106 days x 5 minutes; 16 Mondays
        assert len(whole) == expected * len(symbols)
