"""Synthetic ITCH 5.0 order flow: a seeded simulation of a day's limit order books, pure.

``OrderFlow`` simulates one limit order book per symbol and yields the ITCH 5.0 messages a
NASDAQ-like exchange would publish for it, as ``normalize.itch`` value objects with
non-decreasing timestamps. It reads no clock, does no I/O and uses only its own
``random.Random(seed)``: the same symbols, seed and options give the same messages, byte for
byte, every time ``messages()`` is called.

The model:

- **Arrivals.** Events arrive as one Poisson process whose rate is the sum of the symbols'
  rates times the session phase's factor (pre-market, the opening-bell burst, regular hours,
  post-market); each event goes to a symbol with probability proportional to its rate
  (Walker's alias method, O(1)). ``default_symbols`` gives the rates a Zipf-Mandelbrot shape,
  so a few names carry most of the flow and the tail trades a few times a minute.
- **Books.** A symbol's book is a dict of price levels per side, each a FIFO list of live
  orders ``[ref, is_buy, tick, shares, position in live]``, plus a flat ``live`` list for
  picking a random order in O(1) (swap-remove keeps positions valid). Prices are kept in
  1-cent ticks (100 in ITCH's 4-decimal units) around a ``center`` tick: bids rest at or below
  ``center``, asks at or above ``center + 1``, so the book is never crossed.
- **Price moves.** With a per-symbol probability per event (derived from its daily
  volatility) the center moves one tick; an up-move first executes every ask at the level it
  crosses, a down-move every bid (an aggressive order sweeping the touch).
- **Events.** Adds ('A', some 'F' with an MPID) at geometric distances from the touch,
  deletes ('D'), partial cancels ('X'), replaces ('U', new ref, same side), executions of the
  first order at the best level ('E', a few 'C' printable 'Y'), hidden midpoint prints ('P'),
  an occasional broken trade ('B') of the latest printed match; the mix of adds and removals
  pulls each book back toward a target depth.
- **Schedule.** System events ('O', 'S', 'Q', 'M', 'E', 'C'), the directory ('R') and a
  trading action ('H' 'T') per symbol; NOII ('I') messages before the opening (09:30) and
  closing (16:00) crosses ('Q', with 'C' printable 'N' executions of resting orders); a few
  LULD halts ('H' 'H') that resume five minutes later through a halt cross.

Invariants (checked by the unit tests over hundreds of thousands of messages): every
'E'/'C'/'X'/'D'/'U' names a live order of the same symbol and never more shares than it has;
order references are unique and increasing; match numbers are unique and increasing; a halted
symbol does not trade; every symbol's 'R' precedes its other messages.

Everything before ``start_at`` (the directory, the system events already past) is emitted
first with its scheduled timestamps, then each book is seeded with resting orders at
``start_at`` so a consumer sees a populated market at once.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from random import Random
from typing import Any

from exchange_sim.errors import OptionError, SymbolSpecError
from exchange_sim.schedule import (
    CLOSING_NOII_FAST,
    CLOSING_NOII_START,
    END_OF_MARKET_HOURS,
    END_OF_SYSTEM_HOURS,
    NS_PER_SECOND,
    OPENING_NOII_FAST,
    OPENING_NOII_START,
    START_OF_MARKET_HOURS,
    START_OF_MESSAGES,
    START_OF_SYSTEM_HOURS,
    SYSTEM_EVENTS,
    noii_times,
    parse_time,
)
from normalize.itch import (
    AddOrder,
    AddOrderWithMpid,
    BrokenTrade,
    CrossTrade,
    Message,
    NetOrderImbalanceIndicator,
    NonCrossTrade,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    StockDirectory,
    StockTradingAction,
    SystemEvent,
)
from tickerplant.settings import ExchangeSimSettings

__all__ = [
    "DEFAULT_TOTAL_RATE",
    "OrderFlow",
    "SymbolSpec",
    "default_symbols",
]

_DEFAULTS = ExchangeSimSettings.model_fields
DEFAULT_SYMBOLS: int = _DEFAULTS["symbols"].default
DEFAULT_SEED: int = _DEFAULTS["seed"].default
DEFAULT_START_AT: str = _DEFAULTS["start_at"].default
DEFAULT_BURST_MULTIPLIER: float = _DEFAULTS["burst_multiplier"].default
DEFAULT_BURST_SECONDS: float = _DEFAULTS["burst_seconds"].default

DEFAULT_TOTAL_RATE = 1000.0
"""Messages per second across all symbols in regular hours (``default_symbols``)."""
DEFAULT_ZIPF_EXPONENT = 2.2
DEFAULT_ZIPF_SHIFT = 2.0
DEFAULT_PREMARKET_FACTOR = 0.05  # pre-market rate as a fraction of the regular rate
DEFAULT_POSTMARKET_FACTOR = 0.05
DEFAULT_HALTS = 2  # LULD pauses per day, at seeded times between 09:35 and 15:30
DEFAULT_HALT_SECONDS = 300.0
DEFAULT_BROKEN_TRADE_RATE = 2e-5  # per event

TICK = 100  # one cent in ITCH's 4-decimal price units
_MIN_TICK = 100  # $1.00: no order is ever priced below it
_REGULAR_SECONDS = (END_OF_MARKET_HOURS - START_OF_MARKET_HOURS) / NS_PER_SECOND
_HALT_WINDOW = (parse_time("09:35:00"), parse_time("15:30:00"))

# Distances from the touch, in ticks, of new orders: roughly geometric (each tick out has
# 3/4 the orders of the one before), cut at 20. A lookup table indexed by one random() is
# several times cheaper than drawing from a distribution.
_OFFSETS: tuple[int, ...] = tuple(k for k in range(20) for _ in range(max(1, round(40 * 0.75**k))))
_MAX_OFFSET = max(_OFFSETS)
_MIN_CENTER = _MIN_TICK + _MAX_OFFSET  # keeps every bid at or above $1.00
# Order sizes in shares: mostly round lots, some odd lots, a few blocks.
_SIZES: tuple[int, ...] = (
    (100,) * 24
    + (200,) * 10
    + (300,) * 6
    + (400,) * 3
    + (500,) * 5
    + (1000,) * 3
    + (1,)
    + (10,) * 2
    + (25,) * 2
    + (50,) * 3
    + (75,)
    + (2500, 5000)
)
_MPIDS: tuple[str, ...] = ("SIMA", "SIMB", "SIMC", "MMKR", "ARCA", "FLOW", "RTLX", "BLKX")
_FULL_FILL_SHARE = 0.55  # executions that fill the whole resting order
_WITH_PRICE_SHARE = 0.03  # executions reported as 'C' printable 'Y'
_MPID_SHARE = 0.06  # adds attributed to an MPID ('F')
_ADD_BELOW_DEPTH = 0.60  # probability an event is an add while the book is below its depth
_ADD_AT_DEPTH = 0.40  # ... and once it is at or above it
# Cumulative shares of the other events: delete, replace, partial cancel, execute, 'P'.
_DELETE_CUT = 0.72
_REPLACE_CUT = 0.82
_CANCEL_CUT = 0.85
_EXECUTE_CUT = 0.97

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NAME_LENGTHS = (1,) * 1 + (2,) * 4 + (3,) * 35 + (4,) * 55 + (5,) * 5

# Heap entry kinds of scheduled events.
_SYSTEM, _NOII, _CROSS, _HALT, _RESUME = range(5)


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One simulated security.

    ``price`` is the opening price in ITCH's 4-decimal units, a whole number of cents of at
    least $1 (``1_0000``); ``rate`` the messages per second it gets in regular hours;
    ``volatility`` its daily return standard deviation (0.02 = 2 %).
    """

    stock: str
    price: int
    rate: float
    volatility: float = 0.02
    round_lot_size: int = 100

    def __post_init__(self) -> None:
        stock = self.stock
        if not (isinstance(stock, str) and 1 <= len(stock) <= 8 and stock.isascii()):
            raise SymbolSpecError(str(stock), "stock", stock, "1 to 8 ASCII characters")
        if not (stock.isalnum() and stock.upper() == stock):
            raise SymbolSpecError(stock, "stock", stock, "upper-case letters and digits")
        if self.price < 1_0000 or self.price % TICK:
            raise SymbolSpecError(stock, "price", self.price, "whole cents of at least 1_0000")
        if not self.rate > 0:
            raise SymbolSpecError(stock, "rate", self.rate, "a positive messages/s")
        if not 0 <= self.volatility <= 1:
            raise SymbolSpecError(stock, "volatility", self.volatility, "0..1")
        if not 1 <= self.round_lot_size <= 0xFFFFFFFF:
            raise SymbolSpecError(stock, "round_lot_size", self.round_lot_size, "1..2**32-1")


def default_symbols(
    count: int = DEFAULT_SYMBOLS,
    *,
    seed: int = DEFAULT_SEED,
    total_rate: float = DEFAULT_TOTAL_RATE,
    zipf_exponent: float = DEFAULT_ZIPF_EXPONENT,
) -> list[SymbolSpec]:
    """``count`` plausible symbols with heterogeneous activity, the same for the same seed.

    Tickers are 1 to 5 letters (mostly 3 or 4), unique; prices log-uniform between $2 and $400;
    the regular-hours message rates follow ``(rank + 2) ** -zipf_exponent`` scaled to sum to
    ``total_rate``: with the defaults the busiest name gets about a quarter of the flow and
    the least active tenth of the names together well under 1 %, a few messages a minute
    each. Ranks are shuffled so activity is not sorted by locate.
    """
    if not 1 <= count <= 0xFFFF:
        raise OptionError("count", count, "1..65535 (stock locates are 2 bytes)")
    if not total_rate > 0:
        raise OptionError("total_rate", total_rate, "a positive messages/s")
    rng = Random(f"exchange_sim.symbols:{seed}")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        length = _NAME_LENGTHS[int(rng.random() * len(_NAME_LENGTHS))]
        if count > 10_000:
            length = max(length, 4)  # enough distinct names for a large universe
        name = "".join(rng.choice(_LETTERS) for _ in range(length))
        if name not in seen:
            seen.add(name)
            names.append(name)
    weights = [(rank + DEFAULT_ZIPF_SHIFT) ** -zipf_exponent for rank in range(1, count + 1)]
    rng.shuffle(weights)
    scale = total_rate / math.fsum(weights)
    symbols = []
    for name, weight in zip(names, weights, strict=True):
        dollars = math.exp(rng.uniform(math.log(2.0), math.log(400.0)))
        price = max(1_0000, round(dollars * 100) * TICK)
        volatility = round(rng.uniform(0.01, 0.04), 4)
        symbols.append(SymbolSpec(name, price, weight * scale, volatility))
    return symbols


class _Book:
    """One symbol's live orders. Not a public type: the flow's private state."""

    __slots__ = (
        "asks",
        "bids",
        "center",
        "depth",
        "halt_token",
        "halted",
        "live",
        "locate",
        "p_move",
        "spec",
        "stock",
    )

    def __init__(self, locate: int, spec: SymbolSpec, depth: int, p_move: float) -> None:
        self.locate = locate
        self.spec = spec
        self.stock = spec.stock
        self.center = max(spec.price // TICK, _MIN_CENTER)  # the best possible bid tick
        self.depth = depth
        self.p_move = p_move
        self.bids: dict[int, list[list]] = {}  # tick -> FIFO of order records
        self.asks: dict[int, list[list]] = {}
        self.live: list[list] = []  # records [ref, is_buy, tick, shares, index in live]
        self.halted = False
        self.halt_token = -1


def _remove(book: _Book, record: list) -> None:
    """Take ``record`` off its price level and out of ``live`` (swap-remove)."""
    live = book.live
    last = live.pop()
    if last is not record:
        position = record[4]
        live[position] = last
        last[4] = position
    levels = book.bids if record[1] else book.asks
    tick = record[2]
    level = levels[tick]
    if len(level) == 1:
        del levels[tick]
    else:
        level.remove(record)  # identity matches first: refs are unique


def _alias_table(weights: Sequence[float]) -> tuple[list[float], list[int]]:
    """Walker/Vose alias table: pick i = int(random()*n), keep it if random() < prob[i]."""
    n = len(weights)
    total = math.fsum(weights)
    scaled = [w * n / total for w in weights]
    prob = [1.0] * n
    alias = list(range(n))
    small = [i for i, w in enumerate(scaled) if w < 1.0]
    large = [i for i, w in enumerate(scaled) if w >= 1.0]
    while small and large:
        s = small.pop()
        g = large.pop()
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


class OrderFlow:
    """A seeded, reproducible day of ITCH 5.0 messages for ``symbols`` (locates 1..N).

    Iterate ``messages()`` (the whole day, ending with the 'C' end-of-messages event) or
    ``generate(n)`` (at most ``n`` messages, optionally only those before ``until``). Each
    call starts the day afresh from the seed.

    ``start_at`` is the exchange time the order flow starts (``"09:29:00"`` or ns); the
    opening-bell burst multiplies the arrival rate by ``burst_multiplier`` for the first
    ``burst_seconds`` of regular hours.
    """

    def __init__(
        self,
        symbols: Sequence[SymbolSpec],
        *,
        seed: int = DEFAULT_SEED,
        start_at: str | int = DEFAULT_START_AT,
        burst_multiplier: float = DEFAULT_BURST_MULTIPLIER,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        premarket_factor: float = DEFAULT_PREMARKET_FACTOR,
        postmarket_factor: float = DEFAULT_POSTMARKET_FACTOR,
        halts: int = DEFAULT_HALTS,
        halt_seconds: float = DEFAULT_HALT_SECONDS,
        broken_trade_rate: float = DEFAULT_BROKEN_TRADE_RATE,
    ) -> None:
        if not symbols:
            raise OptionError("symbols", len(symbols), "at least one symbol")
        if len(symbols) > 0xFFFF:
            raise OptionError("symbols", len(symbols), "at most 65535 (2-byte stock locate)")
        if len({spec.stock for spec in symbols}) != len(symbols):
            raise OptionError("symbols", [spec.stock for spec in symbols], "unique tickers")
        for name, value in (
            ("burst_multiplier", burst_multiplier),
            ("burst_seconds", burst_seconds),
            ("premarket_factor", premarket_factor),
            ("postmarket_factor", postmarket_factor),
            ("halt_seconds", halt_seconds),
        ):
            if not (value >= 0 and math.isfinite(value)):
                raise OptionError(name, value, "a finite number >= 0")
        if halts < 0:
            raise OptionError("halts", halts, "a count >= 0")
        if not 0 <= broken_trade_rate < 1:
            raise OptionError("broken_trade_rate", broken_trade_rate, "a probability in [0, 1)")
        self._symbols = tuple(symbols)
        self._seed = seed
        self._start_at = parse_time(start_at)
        self._burst_multiplier = float(burst_multiplier)
        self._burst_ns = round(burst_seconds * NS_PER_SECOND)
        self._premarket_factor = float(premarket_factor)
        self._postmarket_factor = float(postmarket_factor)
        self._halts = halts
        self._halt_ns = round(halt_seconds * NS_PER_SECOND)
        self._broken_trade_rate = broken_trade_rate

    @property
    def symbols(self) -> tuple[SymbolSpec, ...]:
        """The symbols, in stock-locate order (locate = index + 1)."""
        return self._symbols

    @property
    def start_at(self) -> int:
        """The exchange time (ns since midnight) the order flow starts."""
        return self._start_at

    @property
    def flow_start(self) -> int:
        """When order messages start: ``start_at``, but never before 04:00."""
        return max(self._start_at, START_OF_SYSTEM_HOURS)

    def generate(
        self, n_messages: int | None = None, *, until: int | None = None
    ) -> Iterator[Message]:
        """At most ``n_messages`` messages (all of the day when ``None``), stopping before
        the first message timestamped at or after ``until`` (ns) when that is given."""
        if n_messages is not None and n_messages < 0:
            raise OptionError("n_messages", n_messages, "a count >= 0 or None")
        stream: Iterator[Message] = self.messages()
        if until is not None:
            stream = _before(stream, until)
        if n_messages is not None:
            stream = islice(stream, n_messages)
        return stream

    def __iter__(self) -> Iterator[Message]:
        return self.messages()

    # -- the simulation ---------------------------------------------------------------------

    def _books(self) -> list[_Book]:
        books = []
        for locate, spec in enumerate(self._symbols, start=1):
            depth = max(4, min(40, round(6 + 8 * math.log10(1 + spec.rate))))
            # A random walk of n one-tick steps moves sqrt(n) ticks; match the daily
            # standard deviation in ticks with the day's expected event count.
            daily_ticks = spec.volatility * spec.price / TICK
            events = spec.rate * _REGULAR_SECONDS
            p_move = min(0.3, daily_ticks * daily_ticks / events) if events > 0 else 0.0
            books.append(_Book(locate, spec, depth, p_move))
        return books

    def _phases(self, flow_start: int) -> list[tuple[int, int, float]]:
        """(start, end, rate factor) of each phase of arrivals, from ``flow_start`` on."""
        burst_end = min(START_OF_MARKET_HOURS + self._burst_ns, END_OF_MARKET_HOURS)
        phases = [
            (START_OF_SYSTEM_HOURS, START_OF_MARKET_HOURS, self._premarket_factor),
            (START_OF_MARKET_HOURS, burst_end, self._burst_multiplier),
            (burst_end, END_OF_MARKET_HOURS, 1.0),
            (END_OF_MARKET_HOURS, END_OF_SYSTEM_HOURS, self._postmarket_factor),
        ]
        return [
            (max(start, flow_start), end, factor)
            for start, end, factor in phases
            if end > max(start, flow_start)
        ]

    def _schedule(self, rng: Random, books: list[_Book], flow_start: int) -> list[tuple]:
        """The heap of timed events after ``flow_start``: (time, order, kind, argument)."""
        entries: list[tuple] = []
        order = 0

        def add(time: int, kind: int, argument: object) -> None:
            nonlocal order
            if time >= flow_start:
                entries.append((time, order, kind, argument))
            order += 1

        for time in noii_times(OPENING_NOII_START, OPENING_NOII_FAST, START_OF_MARKET_HOURS):
            add(time, _NOII, "O")
        for code, time in SYSTEM_EVENTS:
            if time > flow_start:
                add(time, _SYSTEM, code.value)
            if time == START_OF_MARKET_HOURS:
                add(time, _CROSS, "O")
        for time in noii_times(CLOSING_NOII_START, CLOSING_NOII_FAST, END_OF_MARKET_HOURS):
            add(time, _NOII, "C")
        add(END_OF_MARKET_HOURS, _CROSS, "C")  # after 'M' (same time, later order)
        low, high = _HALT_WINDOW
        for token in range(self._halts):
            time = low + int(rng.random() * (high - low))
            book = books[int(rng.random() * len(books))]
            add(time, _HALT, (book, token))
            add(time + self._halt_ns, _RESUME, (book, token))
        heapq.heapify(entries)
        return entries

    def messages(self) -> Iterator[Message]:
        """Every message of the simulated day, in order."""
        rng = Random(self._seed)
        random = rng.random
        expovariate = rng.expovariate
        books = self._books()
        flow_start = self.flow_start
        state = _Counters()

        # -- the compressed preamble: directory, trading state, system events already past.
        yield SystemEvent(0, 0, START_OF_MESSAGES, "O")
        for book in books:
            yield _directory(book, START_OF_MESSAGES)
        for book in books:
            yield StockTradingAction(book.locate, 0, START_OF_MESSAGES, book.stock, "T", " ", "")
        for code, time in SYSTEM_EVENTS[1:]:
            if time <= flow_start:
                yield SystemEvent(0, 0, time, code.value)
        schedule = self._schedule(rng, books, flow_start)
        phases = self._phases(flow_start)
        if phases:
            for book in books:
                for _ in range(book.depth):
                    yield _seed_order(book, flow_start, random, state)

        # -- the day: Poisson arrivals merged with the scheduled events, in time order.
        n_books = len(books)
        prob, alias = _alias_table([book.spec.rate for book in books])
        alias_books = [books[i] for i in alias]
        total_rate_ns = math.fsum(book.spec.rate for book in books) / NS_PER_SECOND
        offsets, n_offsets = _OFFSETS, len(_OFFSETS)
        sizes, n_sizes = _SIZES, len(_SIZES)
        mpids, n_mpids = _MPIDS, len(_MPIDS)
        broken_rate = self._broken_trade_rate
        until_break = _countdown(expovariate, broken_rate)
        inf = math.inf
        next_ref = state.next_ref
        match = state.match
        last_printed = 0  # latest printable match number not yet broken

        phase_index = 0
        t = flow_start
        phase_end = t
        rate_ns = 0.0
        t_next: float = inf
        sched_next = schedule[0][0] if schedule else inf
        while True:
            if t_next >= phase_end:
                if sched_next < phase_end:
                    pass  # a scheduled event comes first; handled below
                elif phase_index < len(phases):
                    start, phase_end, factor = phases[phase_index]
                    phase_index += 1
                    t = start
                    rate_ns = total_rate_ns * factor
                    t_next = t + expovariate(rate_ns) if rate_ns > 0 else inf
                    continue
                else:
                    t_next = phase_end = inf
                    if sched_next == inf:
                        return
            if sched_next <= t_next:
                time, _, kind, argument = heapq.heappop(schedule)
                sched_next = schedule[0][0] if schedule else inf
                state.next_ref, state.match = next_ref, match
                yield from _scheduled(time, kind, argument, books, random, state)
                next_ref, match = state.next_ref, state.match
                continue

            t = int(t_next)
            t_next = t_next + expovariate(rate_ns)
            i = int(random() * n_books)
            book = books[i] if random() < prob[i] else alias_books[i]
            locate = book.locate
            stock = book.stock
            live = book.live
            halted = book.halted

            if not halted and random() < book.p_move:
                # One-tick move of the center; the crossed level is swept first.
                center = book.center
                if center <= _MIN_CENTER or random() < 0.5:
                    swept = book.asks.pop(center + 1, None)
                    book.center = center + 1
                else:
                    swept = book.bids.pop(center, None)
                    book.center = center - 1
                if swept:
                    for record in swept:
                        last = live.pop()
                        if last is not record:
                            position = record[4]
                            live[position] = last
                            last[4] = position
                        match += 1
                        yield OrderExecuted(locate, 0, t, record[0], record[3], match)
                    last_printed = match

            n = len(live)
            if n < 2 or random() < (_ADD_BELOW_DEPTH if n < book.depth else _ADD_AT_DEPTH):
                # Add, at a geometric distance from the touch, never crossing it.
                shares = sizes[int(random() * n_sizes)]
                if random() < 0.5:
                    tick = book.center - offsets[int(random() * n_offsets)]
                    levels = book.bids
                    side = "B"
                    record = [next_ref, True, tick, shares, n]
                else:
                    tick = book.center + 1 + offsets[int(random() * n_offsets)]
                    levels = book.asks
                    side = "S"
                    record = [next_ref, False, tick, shares, n]
                live.append(record)
                level = levels.get(tick)
                if level is None:
                    levels[tick] = [record]
                else:
                    level.append(record)
                if random() < _MPID_SHARE:
                    mpid = mpids[int(random() * n_mpids)]
                    yield AddOrderWithMpid(
                        locate, 0, t, next_ref, side, shares, stock, tick * TICK, mpid
                    )
                else:
                    yield AddOrder(locate, 0, t, next_ref, side, shares, stock, tick * TICK)
                next_ref += 1
                continue

            u = random()
            if halted and u >= _CANCEL_CUT:
                u = random() * _DELETE_CUT  # no trading while halted: a delete instead
            if u < _DELETE_CUT:
                record = live[int(random() * n)]
                _remove(book, record)
                yield OrderDelete(locate, 0, t, record[0])
            elif u < _REPLACE_CUT:
                # Cancel-replace: new ref, same side, a new price and size; takes the old
                # order's slot in ``live``.
                record = live[int(random() * n)]
                is_buy = record[1]
                levels = book.bids if is_buy else book.asks
                level = levels[record[2]]
                if len(level) == 1:
                    del levels[record[2]]
                else:
                    level.remove(record)
                offset = offsets[int(random() * n_offsets)]
                tick = book.center - offset if is_buy else book.center + 1 + offset
                shares = sizes[int(random() * n_sizes)]
                position = record[4]
                replacement = [next_ref, is_buy, tick, shares, position]
                live[position] = replacement
                level = levels.get(tick)
                if level is None:
                    levels[tick] = [replacement]
                else:
                    level.append(replacement)
                yield OrderReplace(locate, 0, t, record[0], next_ref, shares, tick * TICK)
                next_ref += 1
            elif u < _CANCEL_CUT:
                record = live[int(random() * n)]
                remaining = record[3]
                if remaining < 2:
                    _remove(book, record)
                    yield OrderDelete(locate, 0, t, record[0])
                    continue
                if remaining > 100:
                    cancelled = 100 * (1 + int(random() * ((remaining - 1) // 100)))
                else:
                    cancelled = 1 + int(random() * (remaining - 1))
                record[3] = remaining - cancelled
                yield OrderCancel(locate, 0, t, record[0], cancelled)
            elif u < _EXECUTE_CUT:
                # An aggressive order takes the first order at the best opposite level.
                sell = random() < 0.5
                if (book.bids if sell else book.asks) == {}:
                    sell = not sell  # n >= 2, so the other side has orders
                if sell:
                    bids = book.bids
                    level = bids.get(book.center)
                    if level is None:
                        level = bids[max(bids)]
                else:
                    asks = book.asks
                    level = asks.get(book.center + 1)
                    if level is None:
                        level = asks[min(asks)]
                record = level[0]
                remaining = record[3]
                if remaining == 1 or random() < _FULL_FILL_SHARE:
                    executed = remaining
                    _remove(book, record)
                else:
                    executed = sizes[int(random() * n_sizes)]
                    if executed >= remaining:
                        executed = remaining // 2
                    record[3] = remaining - executed
                match += 1
                if random() < _WITH_PRICE_SHARE:
                    # Executed a tick better for the resting order than it displayed
                    # (but never below $1).
                    price = max(record[2] + (-1 if record[1] else 1), _MIN_TICK) * TICK
                    yield OrderExecutedWithPrice(
                        locate, 0, t, record[0], executed, match, "Y", price
                    )
                else:
                    yield OrderExecuted(locate, 0, t, record[0], executed, match)
                last_printed = match
            else:
                # A hidden (non-displayed) order matched at the midpoint of the touch.
                match += 1
                side = "B" if random() < 0.5 else "S"
                shares = sizes[int(random() * n_sizes)]
                price = book.center * TICK + TICK // 2
                yield NonCrossTrade(locate, 0, t, 0, side, shares, stock, price, match)
                last_printed = match

            until_break -= 1
            if until_break == 0:
                until_break = _countdown(expovariate, broken_rate)
                if last_printed:
                    yield BrokenTrade(locate, 0, t, last_printed)
                    last_printed = 0  # a match is broken at most once


class _Counters:
    """Order references and match numbers, shared by the hot loop and the scheduled events."""

    __slots__ = ("match", "next_ref")

    def __init__(self) -> None:
        self.next_ref = 1
        self.match = 0


def _countdown(expovariate: Callable[[float], float], rate: float) -> int:
    """Events until the next broken trade; -1 (never reached) when ``rate`` is 0."""
    if rate <= 0:
        return -1
    return 1 + int(expovariate(rate))


def _before(stream: Iterator[Message], until: int) -> Iterator[Message]:
    for message in stream:
        if message.timestamp >= until:
            return
        yield message


def _directory(book: _Book, time: int) -> StockDirectory:
    spec = book.spec
    # Busier names list on the Global Select market and sit in LULD tier 1.
    category = "Q" if spec.rate >= 5 else ("G" if spec.rate >= 0.5 else "S")
    tier = "1" if spec.rate >= 5 else "2"
    return StockDirectory(
        book.locate,
        0,
        time,
        book.stock,
        category,
        "N",  # financial status: normal
        spec.round_lot_size,
        "N",  # round lots only
        "C",  # issue classification: common stock
        "Z",  # issue sub-type: not applicable
        "P",  # authenticity: live/production
        "N",  # short sale threshold
        "N",  # IPO flag
        tier,
        "N",  # ETP flag
        0,
        "N",  # inverse
    )


def _seed_order(book: _Book, time: int, random: Callable[[], float], state: _Counters) -> AddOrder:
    """A resting order placed when the flow starts, so the book is not empty."""
    shares = _SIZES[int(random() * len(_SIZES))]
    offset = _OFFSETS[int(random() * len(_OFFSETS))]
    is_buy = random() < 0.5
    tick = book.center - offset if is_buy else book.center + 1 + offset
    ref = state.next_ref
    state.next_ref = ref + 1
    record = [ref, is_buy, tick, shares, len(book.live)]
    book.live.append(record)
    levels = book.bids if is_buy else book.asks
    levels.setdefault(tick, []).append(record)
    side = "B" if is_buy else "S"
    return AddOrder(book.locate, 0, time, ref, side, shares, book.stock, tick * TICK)


def _scheduled(
    time: int,
    kind: int,
    argument: Any,
    books: list[_Book],
    random: Callable[[], float],
    state: _Counters,
) -> list[Message]:
    """The messages of one scheduled event, all stamped ``time``."""
    if kind == _SYSTEM:
        return [SystemEvent(0, 0, time, argument)]
    if kind == _NOII:
        return [_noii(book, time, argument, random) for book in books if not book.halted]
    if kind == _CROSS:
        out: list[Message] = []
        for book in books:
            if not book.halted:
                out.extend(_cross(book, time, argument, random, state))
        return out
    book, token = argument
    if kind == _HALT:
        if book.halted:
            return []  # already paused by an earlier halt; this one never happens
        book.halted = True
        book.halt_token = token
        return [StockTradingAction(book.locate, 0, time, book.stock, "H", " ", "LUDP")]
    if not (book.halted and book.halt_token == token):
        return []
    book.halted = False
    resume = StockTradingAction(book.locate, 0, time, book.stock, "T", " ", "")
    return [*_cross(book, time, "H", random, state), resume]


def _noii(
    book: _Book, time: int, cross_type: str, random: Callable[[], float]
) -> NetOrderImbalanceIndicator:
    """The book's imbalance ahead of a cross: paired and unpaired interest, indicative prices."""
    paired = 100 * (1 + int(random() * 40 * book.depth))
    imbalance = 100 * int(random() * 10 * book.depth)
    if imbalance == 0:
        direction = "N"
        reference = near = far = book.center * TICK
    elif random() < 0.5:
        direction = "B"  # more buyers: indicated at the ask and above
        reference = near = (book.center + 1) * TICK
        far = near + TICK
    else:
        direction = "S"
        reference = near = book.center * TICK
        far = near - TICK
    return NetOrderImbalanceIndicator(
        book.locate,
        0,
        time,
        paired,
        imbalance,
        direction,
        book.stock,
        far,
        near,
        reference,
        cross_type,
        "L",  # price variation: less than 1 %
    )


def _cross(
    book: _Book, time: int, cross_type: str, random: Callable[[], float], state: _Counters
) -> list[Message]:
    """A cross: the first order at the best level of the imbalance side executes at the
    cross price ('C', printable 'N': the cross print reports the volume), then the bulk
    print ('Q') of everything matched, on-open/on-close interest included."""
    out: list[Message] = []
    sell_side = random() < 0.5  # the imbalance is on the sell side: sellers meet the bids
    levels = book.bids if sell_side else book.asks
    executed = 0
    if levels:
        tick = max(levels) if sell_side else min(levels)
        price = tick * TICK
        record = levels[tick][0]
        executed = record[3]
        _remove(book, record)
        state.match += 1
        out.append(
            OrderExecutedWithPrice(
                book.locate, 0, time, record[0], executed, state.match, "N", price
            )
        )
    else:
        price = book.center * TICK
    paired = 100 * (1 + int(random() * 40 * book.depth))
    state.match += 1
    out.append(
        CrossTrade(
            book.locate, 0, time, paired + executed, book.stock, price, state.match, cross_type
        )
    )
    return out
