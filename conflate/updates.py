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

from dataclasses import dataclass
from enum import StrEnum

from conflate.errors import NotMergeableError
from normalize.proto import marketdata_pb2 as pb


class Channel(StrEnum):
    """A kind of update; the values are the subscribe message's field names."""

    TRADES = "trades"
    QUOTES = "quotes"
    BARS = "bars"
    STATUSES = "statuses"


Key = tuple[str, str] | tuple[str, str, int]
"""The conflation key: ``(channel, symbol)``, or ``(channel, symbol, start_ts_ns)`` for bars."""


@dataclass(frozen=True, slots=True)
class TradeUpdate:
    """The last trade of an interval, the interval's volume and count, and running totals."""

    trade: pb.Trade
    volume: int
    count: int
    total_volume: int
    total_count: int

    channel = Channel.TRADES

    @property
    def symbol(self) -> str:
        return self.trade.symbol

    @property
    def seq(self) -> int:
        return self.trade.seq

    @property
    def publish_ts_ns(self) -> int:
        return self.trade.publish_ts_ns

    @property
    def key(self) -> Key:
        return (Channel.TRADES, self.trade.symbol)

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


@dataclass(frozen=True, slots=True)
class QuoteUpdate:
    """The best bid and offer."""

    quote: pb.Quote

    channel = Channel.QUOTES

    @property
    def symbol(self) -> str:
        return self.quote.symbol

    @property
    def seq(self) -> int:
        return self.quote.seq

    @property
    def publish_ts_ns(self) -> int:
        return self.quote.publish_ts_ns

    @property
    def key(self) -> Key:
        return (Channel.QUOTES, self.quote.symbol)

    def merge(self, newer: Update) -> QuoteUpdate:
        if not isinstance(newer, QuoteUpdate) or newer.key != self.key:
            raise NotMergeableError(self, newer)
        return newer


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """One OHLCV bar (possibly revised)."""

    bar: pb.Bar

    channel = Channel.BARS

    @property
    def symbol(self) -> str:
        return self.bar.symbol

    @property
    def seq(self) -> int:
        return self.bar.seq

    @property
    def publish_ts_ns(self) -> int:
        return self.bar.publish_ts_ns

    @property
    def key(self) -> Key:
        return (Channel.BARS, self.bar.symbol, self.bar.start_ts_ns)

    def merge(self, newer: Update) -> BarUpdate:
        if not isinstance(newer, BarUpdate) or newer.key != self.key:
            raise NotMergeableError(self, newer)
        return newer


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A trading status or system event; ``symbol`` is empty for market-wide events."""

    status: pb.Status

    channel = Channel.STATUSES
    key = None

    @property
    def symbol(self) -> str:
        return self.status.symbol

    @property
    def seq(self) -> int:
        return self.status.seq

    @property
    def publish_ts_ns(self) -> int:
        return self.status.publish_ts_ns

    def merge(self, newer: Update) -> StatusUpdate:
        raise NotMergeableError(self, newer)


Update = TradeUpdate | QuoteUpdate | BarUpdate | StatusUpdate
