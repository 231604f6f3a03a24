"""A client's bounded outgoing queue that conflates by key when full. Pure: times are args.

Below ``soft_limit`` entries the queue is a FIFO. At or above it, the client is *behind*:
an update whose key already waits is merged into the waiting entry (quotes and bars:
replaced by the newer; trades: newer trade, volumes and counts summed), so only the newest
value per (channel, symbol) waits. New keys and statuses are still appended (statuses are
never dropped or merged). Past ``hard_limit`` entries the queue has ``overflowed`` and the
client must be disconnected; the queue never holds more than ``hard_limit + 1`` entries.

``behind_since_ns`` is when the client fell behind; it is cleared only by ``mark_sent`` once
a frame went out and the queue is below ``soft_limit`` again, so a client that keeps the
queue full across sends stays behind and the server can evict it after a grace period.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from conflate import Update


@dataclass
class OutboxStats:
    pushed: int = 0
    conflated: int = 0  # updates merged into a waiting one
    discarded: int = 0  # removed on unsubscribe
    sent: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """Fragments to send as one frame; ``oldest_publish_ts_ns`` is 0 without data."""

    fragments: list[str]
    data_count: int
    oldest_publish_ts_ns: int


class _Entry:
    __slots__ = ("fragment", "update")

    def __init__(self, update: Update | None, fragment: str) -> None:
        self.update = update
        self.fragment = fragment


class ConflatingOutbox:
    def __init__(
        self, *, soft_limit: int, hard_limit: int, encode: Callable[[Update], str]
    ) -> None:
        if not 1 <= soft_limit <= hard_limit:
            raise ValueError(f"need 1 <= soft_limit <= hard_limit, got {soft_limit}, {hard_limit}")
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self._encode = encode
        self._queue: deque[_Entry] = deque()
        self._latest: dict[object, _Entry] = {}  # key -> its newest waiting entry
        self.behind_since_ns: int | None = None
        self.overflowed = False
        self.stats = OutboxStats()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, update: Update, fragment: str, now_ns: int) -> bool:
        """Queue ``update`` (encoded as ``fragment``); ``False`` once the queue overflowed."""
        if self.overflowed:
            return False
        self.stats.pushed += 1
        key = update.key
        if len(self._queue) >= self.soft_limit:
            if self.behind_since_ns is None:
                self.behind_since_ns = now_ns
            if key is not None:
                waiting = self._latest.get(key)
                if waiting is not None:
                    merged = waiting.update.merge(update)  # type: ignore[union-attr]
                    waiting.update = merged
                    waiting.fragment = fragment if merged is update else self._encode(merged)
                    self.stats.conflated += 1
                    return True
        entry = _Entry(update, fragment)
        self._queue.append(entry)
        if key is not None:
            self._latest[key] = entry
        return self._check_overflow()

    def push_control(self, fragment: str) -> bool:
        """Queue a control message (ack, error); never merged."""
        if self.overflowed:
            return False
        self._queue.append(_Entry(None, fragment))
        return self._check_overflow()

    def _check_overflow(self) -> bool:
        if len(self._queue) > self.hard_limit:
            self.overflowed = True
        return not self.overflowed

    def take(self, max_items: int) -> Batch:
        """Up to ``max_items`` entries in order, removed from the queue."""
        fragments: list[str] = []
        data = 0
        oldest = 0
        queue = self._queue
        latest = self._latest
        while queue and len(fragments) < max_items:
            entry = queue.popleft()
            fragments.append(entry.fragment)
            update = entry.update
            if update is not None:
                data += 1
                ts = update.publish_ts_ns
                if ts and (oldest == 0 or ts < oldest):
                    oldest = ts
                key = update.key
                if key is not None and latest.get(key) is entry:
                    del latest[key]
        self.stats.sent += data
        return Batch(fragments, data, oldest)

    def mark_sent(self) -> None:
        """A frame went out: the client is caught up if the queue is below the soft limit."""
        if len(self._queue) < self.soft_limit:
            self.behind_since_ns = None

    def behind_ns(self, now_ns: int) -> int:
        """How long the client has been behind (0 when it is not)."""
        return 0 if self.behind_since_ns is None else now_ns - self.behind_since_ns

    def discard(self, keep: Callable[[Update], bool]) -> int:
        """Remove waiting updates for which ``keep`` is false (on unsubscribe); how many."""
        kept: deque[_Entry] = deque()
        removed = 0
        for entry in self._queue:
            if entry.update is None or keep(entry.update):
                kept.append(entry)
            else:
                removed += 1
                key = entry.update.key
                if key is not None and self._latest.get(key) is entry:
                    del self._latest[key]
        self._queue = kept
        self.stats.discarded += removed
        return removed
