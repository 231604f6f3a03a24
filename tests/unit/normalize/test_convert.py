"""`normalize-file`: an ITCH file to Parquet trades and quotes with exact values."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl

from normalize.convert import normalize_file
from normalize.itch import AddOrder, OrderExecuted, StockDirectory, SystemEvent, encode
from normalize.itchfile import write_messages
from normalize.session import midnight_ns

DAY = date(2024, 11, 20)
OPEN = 34_200_000_000_000  # 09:30 in ITCH time


def test_an_itch_file_becomes_trade_and_quote_parquet_with_exact_prices(tmp_path):
    """A bid, an ask and a partial execution give 1 trade and 2 quotes, prices in exact dollars."""
    messages = [
        SystemEvent(0, 0, 1, "O"),
        StockDirectory(
            1, 0, 2, "ZVZZT", "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
        ),
        AddOrder(1, 0, OPEN + 10, 1, "B", 300, "ZVZZT", 1_912_500),
        AddOrder(1, 0, OPEN + 20, 2, "S", 100, "ZVZZT", 1_913_000),
        OrderExecuted(1, 0, OPEN + 30, 1, 120, 555),
    ]
    source = tmp_path / "day.itch"
    with source.open("wb") as file:
        write_messages(file, [encode(m) for m in messages])

    stats = normalize_file(source, tmp_path / "out", session_date=DAY)

    base = midnight_ns(DAY)
    trades = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    quotes = pl.read_parquet(tmp_path / "out" / "quotes.parquet")
    assert (stats.messages, stats.trades, stats.quotes) == (5, 1, 3)
    assert trades.to_dicts() == [
        {
            "symbol": "ZVZZT",
            "exchange_ts_ns": base + OPEN + 30,
            "price": Decimal("191.2500"),
            "size": 120,
            "side": "B",
            "kind": "execution",
            "match_number": 555,
            "seq": 5,
        }
    ]
    assert quotes.select("seq", "bid_price", "bid_size", "ask_price", "ask_size").rows() == [
        (3, Decimal("191.2500"), 300, Decimal("0.0000"), 0),
        (4, Decimal("191.2500"), 300, Decimal("191.3000"), 100),
        (5, Decimal("191.2500"), 180, Decimal("191.3000"), 100),
    ]
    assert base == 1_732_078_800_000_000_000  # 2024-11-20 00:00 America/New_York (UTC-5)
