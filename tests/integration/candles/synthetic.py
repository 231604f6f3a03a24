"""Seeded synthetic 1-minute bars for API tests: two symbols, every calendar day from
20 December 2023 to 3 April 2024 (a year end, month ends, the March daylight-saving change),
at New York minutes on both sides of midnight; fixtures that store them and serve the API."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from candles.bars import Bar, vwap_e8
from candles.storage import upsert_bars
from tickerplant.api import create_app
from tickerplant.db import connect, open_async_pool
from tickerplant.identity import Role, create_user
from tickerplant.observability import Health, new_registry

NY = ZoneInfo("America/New_York")
SYMBOLS = ("AAA", "BBB")
FIRST_DAY, LAST_DAY = date(2023, 12, 20), date(2024, 4, 3)
# Local New York minutes of every calendar day (weekends too, to put bars right before and
# after the Monday and month boundaries): midnight, the session, and the last minute.
LOCAL_MINUTES = (time(0, 0), time(9, 30), time(12, 7), time(15, 59), time(23, 59))


def minute_bars() -> list[Bar]:
    """Seeded 1-minute bars of both symbols at LOCAL_MINUTES of every day."""
    rng = random.Random(5)
    bars = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        for local in LOCAL_MINUTES:
            start_ns = int(datetime.combine(day, local, NY).timestamp()) * 10**9
            for symbol in SYMBOLS:
                o, c = rng.randrange(1_000_000, 2_000_000), rng.randrange(1_000_000, 2_000_000)
                h, lo = max(o, c) + rng.randrange(0, 5_000), min(o, c) - rng.randrange(0, 5_000)
                volume, n = rng.randrange(1, 50_000), rng.randrange(1, 400)
                notional = volume * rng.randrange(lo, h + 1)
                bars.append(
                    Bar(symbol, 60, start_ns, start_ns + 60 * 10**9, o, h, lo, c, volume, n,
                        notional, vwap_e8(notional, volume), False, len(bars), start_ns)
                )  # fmt: skip
        day += timedelta(days=1)
    return bars


@pytest.fixture
def loaded(migrated_dsn: str) -> tuple[str, list[Bar]]:
    bars = minute_bars()
    with connect(migrated_dsn) as conn:
        assert upsert_bars(conn, bars) == (len(bars), 0)
    return migrated_dsn, bars


@pytest.fixture
async def client(loaded) -> AsyncIterator[httpx.AsyncClient]:
    dsn, _ = loaded
    pool = await open_async_pool(dsn)
    app = create_app(pool=pool, registry=new_registry("test"), health=Health())
    with connect(dsn) as conn:
        _, token = create_user(conn, "quinn", Role.QUANT)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        yield http
    await pool.close()
