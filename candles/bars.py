"""One bar: the OHLCV accumulator and the immutable bar value it produces.

Pure: no I/O, no clock. Prices are integers with 4 implied decimals; VWAP is exact integer
arithmetic, ``vwap_e8 = round_half_up(Σ price·size · 10⁴ / Σ size)`` (8 implied decimals).
Bars are labelled by their start and cover ``[start, end)``; open and close are the first and
last trade in (exchange time, feed sequence) order, so a late trade can change either.

An accumulator keeps its trades (time, seq, price, size, match number) so that a broken
trade can be taken out exactly: removal recomputes the bar from the remaining trades. The
windowing (``windows.py``) forgets an accumulator once the allowed lateness has passed its
end, which bounds that memory to the trades of the last ``bar width + lateness``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bar", "BarAccumulator", "vwap_e8"]

# (exchange_ts_ns, seq, price, size, match_number): a tuple, cheap to build and to pickle.
TradeEntry = tuple[int, int, int, int, int]


def vwap_e8(notional: int, volume: int) -> int:
    """``notional / volume`` (price·size with 4 decimals over shares) with 8 decimals,
    rounded half up; 0 for an empty bar."""
    if volume <= 0:
        return 0
    return (notional * 20_000 + volume) // (2 * volume)


@dataclass(frozen=True, slots=True)
class Bar:
    """An OHLCV bar as published and stored.

    ``trade_count == 0`` only for a *withdrawn* bar: every trade of an already published bar
    was broken, so the bar no longer exists (storage deletes it; subscribers drop it).
    """

    symbol: str
    timeframe_s: int
    start_ns: int
    end_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trade_count: int
    notional: int  # Σ price·size, 4 implied decimals
    vwap_e8: int
    revised: bool
    last_seq: int
    last_ts_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        """What identifies a bar (and its revisions): symbol, width, start."""
        return (self.symbol, self.timeframe_s, self.start_ns)


class BarAccumulator:
    """The trades of one bar ``[start_ns, end_ns)`` and their running aggregates."""

    __slots__ = (
        "_first",
        "_last",
        "close",
        "end_ns",
        "high",
        "low",
        "notional",
        "open",
        "start_ns",
        "trades",
        "volume",
    )

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.trades: list[TradeEntry] = []
        self._reset()

    def _reset(self) -> None:
        self.open = self.high = self.low = self.close = 0
        self.volume = 0
        self.notional = 0
        self._first: tuple[int, int] | None = None
        self._last: tuple[int, int] | None = None

    def __getstate__(self) -> tuple[int, int, list[TradeEntry]]:
        return (self.start_ns, self.end_ns, self.trades)

    def __setstate__(self, state: tuple[int, int, list[TradeEntry]]) -> None:
        self.start_ns, self.end_ns, trades = state
        self.trades = []
        self._reset()
        for trade in trades:
            self.add(*trade)

    def __len__(self) -> int:
        return len(self.trades)

    def add(self, ts_ns: int, seq: int, price: int, size: int, match_number: int = 0) -> None:
        """Include one trade (any order of arrival)."""
        self.trades.append((ts_ns, seq, price, size, match_number))
        self._fold(ts_ns, seq, price, size)

    def _fold(self, ts_ns: int, seq: int, price: int, size: int) -> None:
        order = (ts_ns, seq)
        if self._first is None or self._last is None:
            self._first = self._last = order
            self.open = self.high = self.low = self.close = price
        else:
            if order < self._first:
                self._first = order
                self.open = price
            if order >= self._last:
                self._last = order
                self.close = price
            if price > self.high:
                self.high = price
            if price < self.low:
                self.low = price
        self.volume += size
        self.notional += price * size

    def remove(self, match_number: int) -> bool:
        """Take out the trade with ``match_number`` (a broken trade); False when absent."""
        for i, trade in enumerate(self.trades):
            if trade[4] == match_number:
                del self.trades[i]
                break
        else:
            return False
        self._reset()
        for ts_ns, seq, price, size, _ in self.trades:
            self._fold(ts_ns, seq, price, size)
        return True

    def to_bar(self, symbol: str, *, revised: bool) -> Bar:
        last_ts, last_seq = self._last or (0, 0)
        return Bar(
            symbol=symbol,
            timeframe_s=(self.end_ns - self.start_ns) // 1_000_000_000,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            trade_count=len(self.trades),
            notional=self.notional,
            vwap_e8=vwap_e8(self.notional, self.volume),
            revised=revised,
            last_seq=last_seq,
            last_ts_ns=last_ts,
        )
