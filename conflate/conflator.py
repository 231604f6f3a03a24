"""One tier's conflation: events in, at most one update per key per interval out. Pure.

Each tier has its own ``Conflator``, shared by every subscriber of that tier. Times are
arguments; the caller owns the clock and calls ``tick`` when ``due``.

The tier's cache holds what the tier has *emitted* (state as of the last tick), not the
raw latest event. A subscriber's snapshot is taken from it, and the next tick emits exactly
what changed after it: so between a snapshot and the first live update of a symbol there is
neither a gap nor a duplicate, as long as the snapshot and the subscription are recorded
without yielding to a tick in between (the fanout does both synchronously).

Several tiers fed the same events can share the work of building updates: one
``UpdateBuilder`` turns each event into an update once, and every tier's ``add_updates``
takes the same objects (updates are immutable values).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from conflate.cache import LatestValueCache
from conflate.policy import Tier
from conflate.updates import (
    BarUpdate,
    Channel,
    QuoteUpdate,
    StatusUpdate,
    TradeUpdate,
    Update,
)
from normalize.proto import marketdata_pb2 as pb


@dataclass
class ConflatorStats:
    """Events in and updates out, per channel: their ratio is the conflation ratio."""

    events_in: dict[Channel, int] = field(default_factory=lambda: dict.fromkeys(Channel, 0))
    updates_out: dict[Channel, int] = field(default_factory=lambda: dict.fromkeys(Channel, 0))
    ticks: int = 0

    @property
    def ratio(self) -> float:
        """Events in per update out (1.0 when nothing went out yet)."""
        out = sum(self.updates_out.values())
        return sum(self.events_in.values()) / out if out else 1.0


class UpdateBuilder:
    """Turns normalized events into updates; keeps each symbol's running trade totals.

    The totals count every trade this builder has seen, so one builder serves any number of
    tiers that are fed the same events from the same start.
    """

    __slots__ = ("_totals",)

    def __init__(self) -> None:
        self._totals: dict[str, tuple[int, int]] = {}  # symbol -> (volume, trade count)

    def build(self, event: pb.Event) -> Update | None:
        """The update of ``event``; ``None`` for an event with no payload."""
        kind = event.WhichOneof("payload")
        if kind == "quote":
            return QuoteUpdate(event.quote)
        if kind == "trade":
            trade = event.trade
            symbol = trade.symbol
            size = trade.size
            volume, count = self._totals.get(symbol, (0, 0))
            volume += size
            count += 1
            self._totals[symbol] = (volume, count)
            return TradeUpdate(trade, size, 1, volume, count)
        if kind == "status":
            return StatusUpdate(event.status)
        if kind == "bar":
            return BarUpdate(event.bar)
        return None

    def build_batch(self, events: Iterable[pb.Event]) -> list[Update]:
        build = self.build
        return [update for update in map(build, events) if update is not None]

    def build_conflated(self, batches: Iterable[Iterable[pb.Event]]) -> ConflatedBatch:
        """``batches`` (say, one bus read) reduced to one update per key, as tiers would.

        Feeding an interval tier ``updates`` leaves it exactly as feeding it every update of
        ``build_batch`` would: it keeps one entry per key anyway, in the order keys first
        changed, the newest quote or bar, trades summed (volume and count). Feeding an
        unconflated tier that nobody listens to ``latest`` leaves its cache as every update
        would (the newest of each key, a trade as the single last trade). Statuses are all
        kept, in order. Only one update object per key is built, not one per event: the
        fanout's input path while its realtime tier has no subscriber.
        """
        totals = self._totals
        entries: dict[tuple[str, object], object] = {}
        quotes = trades = statuses = bars = 0
        for events in batches:
            for event in events:
                kind = event.WhichOneof("payload")
                if kind == "quote":
                    quotes += 1
                    q = event.quote
                    entries["q", q.symbol] = q  # an existing key keeps its place
                elif kind == "trade":
                    trades += 1
                    t = event.trade
                    symbol = t.symbol
                    size = t.size
                    volume, count = totals.get(symbol, (0, 0))
                    volume += size
                    count += 1
                    totals[symbol] = (volume, count)
                    acc = entries.get(("t", symbol))
                    if acc is None:
                        entries["t", symbol] = [t, size, 1, size, volume, count]
                    else:  # newest trade, interval sums, its own size, running totals
                        acc[0] = t
                        acc[1] += size
                        acc[2] += 1
                        acc[3:] = size, volume, count
                elif kind == "status":
                    entries["s", statuses] = StatusUpdate(event.status)
                    statuses += 1
                elif kind == "bar":
                    bars += 1
                    update = BarUpdate(event.bar)
                    entries["b", update.key] = update
        updates: list[Update] = []
        latest: list[Update] = []
        for (tag, _), value in entries.items():
            if tag == "q":
                update = QuoteUpdate(value)
            elif tag == "t":
                trade, volume, count, size, total_volume, total_count = value
                update = TradeUpdate(trade, size, 1, total_volume, total_count)
                if count > 1:
                    latest.append(update)
                    updates.append(TradeUpdate(trade, volume, count, total_volume, total_count))
                    continue
            else:
                update = value
            updates.append(update)
            latest.append(update)
        events_in = {
            Channel.TRADES: trades,
            Channel.QUOTES: quotes,
            Channel.BARS: bars,
            Channel.STATUSES: statuses,
        }
        return ConflatedBatch(updates, latest, events_in)


@dataclass(slots=True)
class ConflatedBatch:
    """What ``UpdateBuilder.build_conflated`` makes of some events."""

    updates: list[Update]  # for interval tiers: one per key, trades summed; every status
    latest: list[Update]  # for an unconflated tier's cache: the newest single update per key
    events_in: dict[Channel, int]  # the events they stand for, per channel


class Conflator:
    """Conflates events for one tier.

    ``add`` takes one event: a realtime tier returns its update at once; an interval tier
    returns ``[]`` and remembers the change. ``tick`` returns the changes since the last
    tick in the order their keys first changed (statuses: every one, in arrival order).
    """

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.cache = LatestValueCache()
        self.stats = ConflatorStats()
        # Pending changes keyed by conflation key; statuses get unique keys so none merges.
        self._pending: dict[object, Update] = {}
        # Trade keys with more than one trade pending: [volume, count, newest update].
        self._trade_sums: dict[object, list] = {}
        self._status_ids = itertools.count()
        self._builder = UpdateBuilder()
        self._last_tick_ns: int | None = None

    # -- input ------------------------------------------------------------------------------

    def add(self, event: pb.Event) -> list[Update]:
        update = self._builder.build(event)
        if update is None:
            return []
        return self.add_updates([update])

    def add_batch(self, events: Iterable[pb.Event]) -> list[Update]:
        return self.add_updates(self._builder.build_batch(events))

    def add_updates(
        self,
        updates: Iterable[Update],
        *,
        emit: bool = True,
        events_in: Mapping[Channel, int] | None = None,
    ) -> list[Update]:
        """Take updates built elsewhere (``UpdateBuilder``, shared by tiers).

        A realtime tier returns them (its cache holds them at once); ``emit=False`` only
        updates the cache, for a tier nobody listens to, and returns ``[]``. An interval
        tier always returns ``[]`` and remembers the changes for ``tick``. ``events_in``:
        the events ``updates`` stand for, per channel, when they were conflated already
        (``UpdateBuilder.build_conflated``); by default one event per update.
        """
        counts = self.stats.events_in
        if events_in is not None:
            for channel, n in events_in.items():
                counts[channel] += n
                if self.tier.realtime:  # unconflated: every event counts as sent on
                    self.stats.updates_out[channel] += n
        if self.tier.realtime:
            put = self.cache.put
            updates_out = self.stats.updates_out
            out: list[Update] = []
            for update in updates:
                if events_in is None:
                    channel = update.channel
                    counts[channel] += 1
                    updates_out[channel] += 1
                put(update)
                if emit:
                    out.append(update)
            return out
        pending = self._pending
        sums = self._trade_sums
        for update in updates:
            if events_in is None:
                counts[update.channel] += 1
            key = update.key
            if key is None:
                key = ("s", next(self._status_ids))
            waiting = pending.get(key)
            # Quotes and bars merge into the newer one, so they just replace (keeping the
            # key's place). Trades add up: their sums are kept here and the merged update
            # is built once, at the tick, not once per trade (``TradeUpdate.merge`` folded).
            if waiting is None or type(update) is not TradeUpdate:
                pending[key] = update
                continue
            acc = sums.get(key)
            if acc is None:
                sums[key] = [waiting.volume + update.volume, waiting.count + update.count, update]
            else:
                acc[0] += update.volume
                acc[1] += update.count
                acc[2] = update
        return []

    # -- output -----------------------------------------------------------------------------

    def due(self, now_ns: int) -> bool:
        """Whether an interval tier should tick at ``now_ns``."""
        if self.tier.realtime:
            return False
        return self._last_tick_ns is None or now_ns - self._last_tick_ns >= self.tier.interval_ns

    def next_due_ns(self, now_ns: int) -> int:
        """When the next tick is due (``now_ns`` if already due)."""
        if self._last_tick_ns is None:
            return now_ns
        return max(now_ns, self._last_tick_ns + self.tier.interval_ns)

    def tick(self, now_ns: int) -> list[Update]:
        """The changes since the last tick; they become the tier's cached state."""
        self._last_tick_ns = now_ns
        self.stats.ticks += 1
        if not self._pending:
            return []
        if self._trade_sums:
            pending = self._pending
            for key, (volume, count, newest) in self._trade_sums.items():
                pending[key] = TradeUpdate(
                    newest.trade, volume, count, newest.total_volume, newest.total_count
                )
            self._trade_sums.clear()
        updates = list(self._pending.values())
        self._pending.clear()
        for update in updates:
            self.cache.put(update)
            self.stats.updates_out[update.channel] += 1
        return updates

    @property
    def pending(self) -> int:
        """Changes waiting for the next tick."""
        return len(self._pending)
