"""One bar: the OHLCV accumulator and the immutable bar value it produces.

Pure: no I/O, no clock. Prices are integers with 4 implied decimals; VWAP is exact integer
arithmetic, ``vwap_e8 = round_half_up(Σ price·size · 10⁴ / Σ size)`` (8 implied decimals).
Bars are labelled by their start and cover ``[start, end)``; open and close are the first and
last trade in (exchange time, feed sequence) order, so a late trade can change either.

An accumulator keeps only its trades (time, seq, price, size, match number): the bar is
computed from them when it is emitted, and a broken trade is taken out exactly. The
windowing (``windows.py``) forgets an accumulator once the allowed lateness has passed its
end, which bounds that memory to the trades of the last ``bar width + lateness``.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter, mul

__all__ = ["Bar", "BarAccumulator", "vwap_e8"]

# (exchange_ts_ns, seq, price, size, match_number, …): a tuple, cheap to build and to
# pickle. The windows store the trade tuples they are given, whose 6th field (False: not a
# broken trade) is ignored here.
TradeEntry = tuple[int, ...]
_ORDER = itemgetter(0, 1)  # (exchange_ts_ns, seq): the order of trades within a bar


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
    """The trades of one bar ``[start_ns, end_ns)``; the OHLCV is computed when asked.

    Adding a trade is one ``list.append`` (the windows' hot path); ``to_bar`` folds the list
    with builtins, once per emitted bar. Nothing else is kept, so a snapshot is the list.
    """

    __slots__ = ("end_ns", "start_ns", "trades")

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.trades: list[TradeEntry] = []

    def __getstate__(self) -> tuple[int, int, list[TradeEntry]]:
        return (self.start_ns, self.end_ns, self.trades)

    def __setstate__(self, state: tuple[int, int, list[TradeEntry]]) -> None:
        self.start_ns, self.end_ns, self.trades = state

    def __len__(self) -> int:
        return len(self.trades)

    def add(self, ts_ns: int, seq: int, price: int, size: int, match_number: int = 0) -> None:
        """Include one trade (any order of arrival)."""
        self.trades.append((ts_ns, seq, price, size, match_number))

    def remove(self, match_number: int) -> bool:
        """Take out the trade with ``match_number`` (a broken trade); False when absent."""
        for i, trade in enumerate(self.trades):
            if trade[4] == match_number:
                del self.trades[i]
                return True
        return False

    def to_bar(self, symbol: str, *, revised: bool) -> Bar:
        trades = self.trades
        timeframe_s = (self.end_ns - self.start_ns) // 1_000_000_000
        if not trades:
            return Bar(symbol, timeframe_s, self.start_ns, self.end_ns,
                       0, 0, 0, 0, 0, 0, 0, 0, revised, 0, 0)  # fmt: skip
        if len(trades) == 1:
            ts_ns, seq, price, size = trades[0][:4]
            notional = price * size
            return Bar(symbol, timeframe_s, self.start_ns, self.end_ns,
                       price, price, price, price, size, 1, notional,
                       vwap_e8(notional, size), revised, seq, ts_ns)  # fmt: skip
        # Open is the first trade in (time, seq) order, close the last; of equal (time,
        # seq), the first added opens and the last added closes. Trades mostly arrive in
        # time order: when the first (last) added has the one smallest (largest) time, it
        # is the open (close); otherwise the general rule (min and max return the first of
        # equals, hence the reversed scan for the close).
        columns = list(
            zip(*trades, strict=False)
        )  # entries may carry more fields; the first 4 are used
        times, prices, sizes = columns[0], columns[2], columns[3]
        earliest, latest = min(times), max(times)
        if times[0] == earliest and times.count(earliest) == 1:
            first = trades[0]
        else:
            first = min(trades, key=_ORDER)
        if times[-1] == latest and times.count(latest) == 1:
            last = trades[-1]
        else:
            last = max(reversed(trades), key=_ORDER)
        volume = sum(sizes)
        notional = sum(map(mul, prices, sizes))
        return Bar(symbol, timeframe_s, self.start_ns, self.end_ns,
                   first[2], max(prices), min(prices), last[2], volume, len(trades),
                   notional, vwap_e8(notional, volume), revised, last[1], last[0])  # fmt: skip
