"""Event-time tumbling windows of one symbol: trades in, closed and revised bars out.

Pure: no I/O, no clock; time is the trades' exchange time (epoch ns). One
``SymbolWindows`` per symbol holds every width (1 s and 1 min by default).

Time model (two marks, both per symbol):

- the *frontier* is the largest exchange time seen (trades and broken-trade notices);
- the *watermark* is ``frontier - allowed_lateness``.

A bar ``[start, end)`` *closes* — it is emitted as final (``revised=False``) — as soon as the
frontier reaches its end, i.e. the first trade at or after ``end`` arrives. It stays revisable
until the watermark passes its end: a late trade with ``watermark ≤ time < frontier`` joins its
bar, and an already closed bar is emitted again as an *updated bar* (``revised=True``). A
trade older than the watermark is too late: it is counted in ``stats.too_late`` (the caller
logs and exports the count), never applied, never silently dropped. (Closing at the
frontier rather than at the watermark is what lets quants get a bar right after its minute
and still have late prints reflected, as Alpaca's ``bars`` / ``updatedBars`` do.)

A broken trade (``TRADE_KIND_BROKEN``) names the match number it cancels. The windows remember
the exchange time of every trade whose bars are still revisable, find the bars holding the
broken trade, take it out and emit the revisions; a bar whose every trade was broken is
emitted *withdrawn* (``trade_count == 0``). A break of a trade no longer remembered is
counted in ``stats.unmatched_breaks``.

A quiet symbol's last bar closes at that symbol's next trade, or at ``flush()`` (end of
input in a backfill or test). Intervals without trades have no bar.

Cost: a trade is a tuple appended to one list per width (to the bars the previous trade
joined without any lookup); a bar's OHLCV is computed from its list when it is emitted.
Bars close and are forgotten through two heaps ordered by end, not by scanning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from heapq import heappop, heappush

from candles.bars import Bar, BarAccumulator

__all__ = ["DEFAULT_TIMEFRAMES_S", "SymbolWindows", "WindowStats"]

TradeTuple = tuple[int, int, int, int, int, bool]

NS = 1_000_000_000
DEFAULT_TIMEFRAMES_S = (1, 60)


@dataclass(slots=True)
class WindowStats:
    trades: int = 0
    too_late: int = 0
    breaks: int = 0
    unmatched_breaks: int = 0
    revisions: int = 0


@dataclass(slots=True)
class SymbolWindows:
    """Open and revisable bars of one symbol, for every width in ``timeframes_s``."""

    symbol: str
    allowed_lateness_ns: int = 10 * NS
    timeframes_s: tuple[int, ...] = DEFAULT_TIMEFRAMES_S
    frontier_ns: int = -(1 << 62)
    stats: WindowStats = field(default_factory=WindowStats)
    # (width_ns, start_ns) -> trades of that bar, open or closed-but-revisable.
    bars: dict[tuple[int, int], BarAccumulator] = field(default_factory=dict)
    # Keys of ``bars`` already emitted (closed); the others are still open.
    closed: set[tuple[int, int]] = field(default_factory=set)
    # match number -> exchange time, for the trades still in ``bars``.
    matches: dict[int, int] = field(default_factory=dict)
    # The earliest frontier at which ``_advance`` has something to close or forget.
    next_check_ns: int = 1 << 62
    # Heaps of (end_ns, width_ns, start_ns): the bars still open, by closing order, and the
    # closed bars still remembered, by end. An entry whose bar was since deleted or closed
    # is stale and skipped (a bar re-created later is pushed again).
    open_ends: list[tuple[int, int, int]] = field(default_factory=list)
    closed_ends: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def watermark_ns(self) -> int:
        return self.frontier_ns - self.allowed_lateness_ns

    def on_trades(self, trades: list[TradeTuple]) -> list[Bar]:
        """Apply ``(exchange_ts_ns, seq, price, size, match_number, broken)`` tuples in feed
        order (the tuples are kept as they are in the bars they join).

        Returns the bars to publish, in order: each bar that closed, then each closed bar
        that changed (once per call, however many trades changed it; a changed bar that
        the watermark passes during the call is published just before it is forgotten).
        The state after the call, and the last version published of every bar, do not
        depend on how the trades are cut into calls.
        """
        out: list[Bar] = []
        dirty: dict[tuple[int, int], None] = {}
        # The hot loop keeps the marks in locals and writes them back before anything that
        # reads them from ``self`` (_break, _advance) and at the end.
        bars, matches, closed = self.bars, self.matches, self.closed
        open_ends, closed_ends = self.open_ends, self.closed_ends
        widths = [width_s * NS for width_s in self.timeframes_s]
        lateness = self.allowed_lateness_ns
        frontier = self.frontier_ns
        watermark = frontier - lateness
        next_check = self.next_check_ns
        applied = too_late = 0
        # The open bars the last trade joined, one per width: a trade in all of them
        # (cur_start <= time < cur_end) is appended without looking anything up. Cleared
        # by whatever may delete bars (_break; _advance, to be safe).
        cur_start = cur_end = 0
        cur_appends: list[Callable[[TradeTuple], None]] = []
        for trade in trades:
            ts_ns, _, _, _, match_number, broken = trade
            if broken:
                self._break(match_number, dirty)
                cur_start = cur_end = 0
            elif ts_ns < watermark:
                too_late += 1
                continue
            elif cur_start <= ts_ns < cur_end:
                applied += 1
                for append in cur_appends:
                    append(trade)
                if match_number:
                    matches[match_number] = ts_ns
            else:
                applied += 1
                cur_start, cur_end = 0, 1 << 62
                cur_appends = []
                for width in widths:
                    start = ts_ns - ts_ns % width
                    end = start + width
                    key = (width, start)
                    acc = bars.get(key)
                    if acc is None:
                        acc = bars[key] = BarAccumulator(start, end)
                        if end > frontier:
                            heappush(open_ends, (end, width, start))
                            if end < next_check:
                                next_check = end
                        else:
                            heappush(closed_ends, (end, width, start))
                    acc.trades.append(trade)  # as given: (ts, seq, price, size, match, False)
                    cur_appends.append(acc.trades.append)
                    if start > cur_start:
                        cur_start = start
                    if end < cur_end:
                        cur_end = end
                    if end <= frontier:
                        # A closed bar changed, or a late trade opened a bar whose interval
                        # had already closed without trades: either way an updated bar.
                        # (A bar is closed exactly when the frontier reached its end: every
                        # open bar ends after the frontier, see _advance.)
                        closed.add(key)
                        dirty[key] = None
                        cur_start = cur_end = 0  # not all open: no shortcut
                if match_number:
                    matches[match_number] = ts_ns
            if ts_ns > frontier:
                frontier = ts_ns
                watermark = frontier - lateness
                if ts_ns >= next_check:
                    self.frontier_ns, self.next_check_ns = frontier, next_check
                    self._advance(out, dirty)
                    next_check = self.next_check_ns
                    cur_start = cur_end = 0
        self.frontier_ns, self.next_check_ns = frontier, next_check
        self.stats.trades += applied
        self.stats.too_late += too_late
        for key in dirty:
            acc = bars.get(key)
            if acc is not None and key in closed:
                self.stats.revisions += 1
                out.append(acc.to_bar(self.symbol, revised=True))
                if not acc.trades:  # withdrawn: nothing left to revise
                    self._forget(key)
        return out

    def _break(self, match_number: int, dirty: dict[tuple[int, int], None]) -> None:
        self.stats.breaks += 1
        ts_ns = self.matches.pop(match_number, None) if match_number else None
        if ts_ns is None:
            self.stats.unmatched_breaks += 1
            return
        for width_s in self.timeframes_s:
            width = width_s * NS
            key = (width, ts_ns - ts_ns % width)
            acc = self.bars.get(key)
            if acc is None or not acc.remove(match_number):
                continue
            if key in self.closed:
                dirty[key] = None
            elif not acc:
                del self.bars[key]  # an open bar that lost its only trade never existed

    def _advance(self, out: list[Bar], dirty: dict[tuple[int, int], None]) -> None:
        """Close the bars the frontier reached; forget those the watermark passed.

        Afterwards every bar not closed ends after the frontier, and ``next_check_ns`` is the
        earliest frontier at which a bar closes or may be forgotten.
        """
        frontier, watermark = self.frontier_ns, self.watermark_ns
        bars, closed = self.bars, self.closed
        open_ends, closed_ends = self.open_ends, self.closed_ends
        # Closing order: by end, then narrower first.
        while open_ends and open_ends[0][0] <= frontier:
            item = heappop(open_ends)
            key = (item[1], item[2])
            acc = bars.get(key)
            if acc is not None and key not in closed:
                closed.add(key)
                out.append(acc.to_bar(self.symbol, revised=False))
                heappush(closed_ends, item)
        while closed_ends and closed_ends[0][0] <= watermark:
            item = heappop(closed_ends)
            key = (item[1], item[2])
            acc = bars.get(key)
            if acc is None:
                continue
            if key in dirty:
                # Changed in this call: its revision is published now, before it is
                # forgotten, so that what the windows hold never depends on where the
                # trades were cut into calls (the dataflow's batches vary from run to run).
                del dirty[key]
                self.stats.revisions += 1
                out.append(acc.to_bar(self.symbol, revised=True))
            self._forget(key)
        next_check = open_ends[0][0] if open_ends else 1 << 62
        if closed_ends and closed_ends[0][0] + self.allowed_lateness_ns < next_check:
            next_check = closed_ends[0][0] + self.allowed_lateness_ns
        self.next_check_ns = next_check

    def _forget(self, key: tuple[int, int]) -> None:
        acc = self.bars.pop(key)
        self.closed.discard(key)
        if key[0] == max(self.timeframes_s) * NS:
            # The widest bar is forgotten last: its trades' matches are no longer breakable.
            for trade in acc.trades:
                self.matches.pop(trade[4], None)

    def flush(self) -> list[Bar]:
        """End of input: close every open bar (final), forget everything."""
        out = [
            self.bars[key].to_bar(self.symbol, revised=False)
            for key in sorted(self.bars, key=lambda k: (k[1] + k[0], k[0]))
            if key not in self.closed and self.bars[key]
        ]
        self.bars.clear()
        self.closed.clear()
        self.matches.clear()
        self.open_ends.clear()
        self.closed_ends.clear()
        self.next_check_ns = 1 << 62
        return out
