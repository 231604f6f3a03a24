"""What subscribers receive: one update per (channel, symbol) key, mergeable when conflated.

Pure values over the normalized Protobuf events (``normalize.proto.marketdata_pb2``); no I/O.

- ``QuoteUpdate``: the BBO. Merging keeps the newer (only the latest quote matters).
- ``TradeUpdate``: the last trade of an interval plus that interval's volume and trade
  count, and the symbol's running totals. Merging keeps the newer trade and *sums* the
  interval volume and count, so conflation never loses volume: for consecutive updates of
  one symbol ``total_count == previous.total_count + count`` (likewise volume), which is
  what lets a client check that it saw neither a gap nor a duplicate.
- ``BarUpdate``: a bar, keyed by (symbol, start): a bar that closes during an interval is
  still delivered even when the next one has started; a revised bar replaces its key.
- ``StatusUpdate``: never merged; every status is delivered, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from conflate.errors import NotMergeableError
from normalize.proto import marketdata_pb2 as pb


class Channel(StrEnum):
    """A kind of update; the values are the subscribe message's field names."""

    TRADES = "trades"
    QUOTES = "quotes"
    BARS = "bars"
    STATUSES = "statuses"

    # ``Enum.__hash__`` is Python code (``hash(self._name_)``) and runs on every dict lookup
    # of a key tuple; ``str``'s is C and cached in the object. It also makes a member hash
    # like the string it compares equal to (``Channel.QUOTES == "quotes"``).
    __hash__ = str.__hash__


Key = tuple[str, str] | tuple[str, str, int]
"""The conflation key: ``(channel, symbol)``, or ``(channel, symbol, start_ts_ns)`` for bars."""

# ``symbol``, ``publish_ts_ns`` and ``key`` are read from the Protobuf message once, when an
# update is built, and stored (``_set``: the classes are frozen): every outbox push and take
# of every client reads them, and a property would re-read the message and build a new key
# tuple each time. They take no part in ``==`` or ``repr`` (they follow from the message),
# so the message must not be mutated after the update is built; nothing does, updates are
# built from freshly decoded events.
_set = object.__setattr__


# Trades and quotes are built once per event (100,000 a second and more), so these two are
# not ``frozen``: a frozen dataclass sets every field through ``object.__setattr__``, which
# doubled the cost of building one. They are immutable by convention: nothing assigns to
# an update after ``__init__`` (they are shared by every tier and every client's queue).
@dataclass(slots=True, init=False)
class TradeUpdate:
    """The last trade of an interval, the interval's volume and count, and running totals."""

    trade: pb.Trade
    volume: int
    count: int
    total_volume: int
    total_count: int
    symbol: str = field(repr=False, compare=False)
    publish_ts_ns: int = field(repr=False, compare=False)
    key: Key = field(repr=False, compare=False)

    channel = Channel.TRADES

    def __init__(
        self, trade: pb.Trade, volume: int, count: int, total_volume: int, total_count: int
    ) -> None:
        self.trade = trade
        self.volume = volume
        self.count = count
        self.total_volume = total_volume
        self.total_count = total_count
        symbol = trade.symbol
        self.symbol = symbol
        self.publish_ts_ns = trade.publish_ts_ns
        self.key = (Channel.TRADES, symbol)

    @property
    def seq(self) -> int:
        return self.trade.seq

    def merge(self, newer: Update) -> TradeUpdate:
        """One update standing for ``self`` followed by ``newer``: volumes and counts add."""
        if not isinstance(newer, TradeUpdate) or newer.key != self.key:
            raise NotMergeableError(self, newer)
        return TradeUpdate(
            newer.trade,
            self.volume + newer.volume,
            self.count + newer.count,
            newer.total_volume,
            newer.total_count,
        )


@dataclass(slots=True, init=False)
class QuoteUpdate:
    """The best bid and offer."""

    quote: pb.Quote
    symbol: str = field(repr=False, compare=False)
    publish_ts_ns: int = field(repr=False, compare=False)
    key: Key = field(repr=False, compare=False)

    channel = Channel.QUOTES

    def __init__(self, quote: pb.Quote) -> None:
        self.quote = quote
        symbol = quote.symbol
        self.symbol = symbol
        self.publish_ts_ns = quote.publish_ts_ns
        self.key = (Channel.QUOTES, symbol)

    @property
    def seq(self) -> int:
        return self.quote.seq

    def merge(self, newer: Update) -> QuoteUpdate:
        if not isinstance(newer, QuoteUpdate) or newer.key != self.key:
            raise NotMergeableError(self, newer)
        return newer


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """One OHLCV bar (possibly revised)."""

    bar: pb.Bar
    symbol: str = field(init=False, repr=False, compare=False)
    publish_ts_ns: int = field(init=False, repr=False, compare=False)
    key: Key = field(init=False, repr=False, compare=False)

    channel = Channel.BARS

    def __post_init__(self) -> None:
        bar = self.bar
        symbol = bar.symbol
        _set(self, "symbol", symbol)
        _set(self, "publish_ts_ns", bar.publish_ts_ns)
        _set(self, "key", (Channel.BARS, symbol, bar.start_ts_ns))

    @property
    def seq(self) -> int:
        return self.bar.seq

    def merge(self, newer: Update) -> BarUpdate:
        if not isinstance(newer, BarUpdate) or newer.key != self.key:
            raise NotMergeableError(self, newer)
        return newer


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A trading status or system event; ``symbol`` is empty for market-wide events."""

    status: pb.Status
    symbol: str = field(init=False, repr=False, compare=False)
    publish_ts_ns: int = field(init=False, repr=False, compare=False)

    channel = Channel.STATUSES
    key = None

    def __post_init__(self) -> None:
        status = self.status
        _set(self, "symbol", status.symbol)
        _set(self, "publish_ts_ns", status.publish_ts_ns)

    @property
    def seq(self) -> int:
        return self.status.seq

    def merge(self, newer: Update) -> StatusUpdate:
        raise NotMergeableError(self, newer)


Update = TradeUpdate | QuoteUpdate | BarUpdate | StatusUpdate
