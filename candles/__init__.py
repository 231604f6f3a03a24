"""OHLCV bars from trades (Bytewax), their storage, the bars API and the Parquet archive."""

from __future__ import annotations

from candles.bars import Bar, BarAccumulator, vwap_e8
from candles.errors import (
    BadBarsQueryError,
    CandlesError,
    UnknownSymbolError,
    UnknownTimeframeError,
)
from candles.query import Timeframe, parse_timeframe
from candles.windows import SymbolWindows, WindowStats

__all__ = [
    "BadBarsQueryError",
    "Bar",
    "BarAccumulator",
    "CandlesError",
    "SymbolWindows",
    "Timeframe",
    "UnknownSymbolError",
    "UnknownTimeframeError",
    "WindowStats",
    "parse_timeframe",
    "vwap_e8",
]
