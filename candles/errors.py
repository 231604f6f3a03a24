"""Errors of the candles component: one root, subclasses that carry the facts."""

from __future__ import annotations

from tickerplant.errors import TickerplantError

__all__ = [
    "BadBarsQueryError",
    "CandlesError",
    "PageArrayError",
    "UnknownSymbolError",
    "UnknownTimeframeError",
]


class CandlesError(TickerplantError):
    """Root of every error raised by ``candles``."""


class BadBarsQueryError(CandlesError):
    """A bars query parameter is invalid; ``parameter`` names it, the message says what fits."""

    def __init__(self, parameter: str, value: object, reason: str) -> None:
        self.parameter = parameter
        self.value = value
        self.reason = reason
        super().__init__(f"{parameter}: {reason}")


class UnknownTimeframeError(BadBarsQueryError):
    def __init__(self, value: str) -> None:
        super().__init__(
            "timeframe",
            value,
            f"unknown timeframe {value!r}; "
            "accepted: [1-59]Min, [1-23]Hour, 1Day, 1Week, [1,2,3,4,6,12]Month",
        )


class UnknownSymbolError(BadBarsQueryError):
    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        names = ", ".join(repr(s) for s in symbols)
        super().__init__("symbols", symbols, f"unknown symbol {names}: no bars are stored for it")


class PageArrayError(CandlesError):
    """A fetched page column is not the one-dimensional array of ``rows`` 8-byte values
    without NULLs that ``candles.query.page_arrays_query`` returns."""

    def __init__(self, rows: int, header: tuple[int, ...] | None, size: int) -> None:
        self.rows = rows
        self.header = header
        self.size = size
        super().__init__(
            f"page column of {rows} rows: array header (ndim, nulls, type, length, lower)"
            f" {header}, {size} bytes"
        )
