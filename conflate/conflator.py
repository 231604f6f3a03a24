"""One tier's conflation: events in, at most one update per key per interval out. Pure.

Each tier has its own ``Conflator``, shared by every subscriber of that tier. Times are
arguments; the caller owns the clock and calls ``tick`` when ``due``.

The tier's cache holds what the tier has *emitted* (state as of the last tick), not the
raw latest event. A subscriber's snapshot is taken from it, and the next tick emits exactly
what changed after it: so between a snapshot and the first live update of a symbol there is
neither a gap nor a duplicate, as long as the snapshot and the subscription are recorded
without yielding to a tick in between (the fanout does both synchronously).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
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
        self._status_ids = itertools.count()
        self._totals: dict[str, tuple[int, int]] = {}  # symbol -> (volume, trade count)
        self._last_tick_ns: int | None = None

    # -- input ------------------------------------------------------------------------------

    def add(self, event: pb.Event) -> list[Update]:
        update = self._update_of(event)
        if update is None:
            return []
        self.stats.events_in[update.channel] += 1
        if self.tier.realtime:
            self.cache.put(update)
            self.stats.updates_out[update.channel] += 1
            return [update]
        key = update.key if update.key is not None else ("s", next(self._status_ids))
        pending = self._pending.get(key)
        self._pending[key] = update if pending is None else pending.merge(update)
        return []

    def add_batch(self, events: Iterable[pb.Event]) -> list[Update]:
        out: list[Update] = []
        for event in events:
            out.extend(self.add(event))
        return out

    def _update_of(self, event: pb.Event) -> Update | None:
        kind = event.WhichOneof("payload")
        if kind == "quote":
            return QuoteUpdate(event.quote)
        if kind == "trade":
            trade = event.trade
            volume, count = self._totals.get(trade.symbol, (0, 0))
            volume += trade.size
            count += 1
            self._totals[trade.symbol] = (volume, count)
            return TradeUpdate(trade, trade.size, 1, volume, count)
        if kind == "status":
            return StatusUpdate(event.status)
        if kind == "bar":
            return BarUpdate(event.bar)
        return None

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
