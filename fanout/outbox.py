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


class ConflatingOutbox:
    def __init__(
        self, *, soft_limit: int, hard_limit: int, encode: Callable[[Update], str]
    ) -> None:
        if not 1 <= soft_limit <= hard_limit:
            raise ValueError(f"need 1 <= soft_limit <= hard_limit, got {soft_limit}, {hard_limit}")
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self._encode = encode
        # The waiting entries as two parallel queues, the update (``None`` for a control
        # message) and its fragment: queuing allocates nothing per entry, which matters at
        # one push per client per update (a small object per entry kept the garbage
        # collector busy). Entries are numbered from 0 in push order; ``_head`` is the
        # number of the first waiting one.
        # ``waiting`` may be read (its truth: anything queued?) but only the outbox changes
        # it; it stays the same object for the outbox's life.
        self.waiting: deque[Update | None] = deque()
        self._fragments: deque[str] = deque()
        self._head = 0
        # key -> the number of its newest waiting entry. Only merging (at or above the soft
        # limit) reads it, so it is built when the queue first reaches the soft limit and
        # dropped when the queue empties: a client that keeps up never pays for it. While
        # ``_indexed``, every key with a waiting update has its newest entry here.
        self._latest: dict[object, int] = {}
        self._indexed = False
        self.behind_since_ns: int | None = None
        self.overflowed = False
        self.stats = OutboxStats()

    def __len__(self) -> int:
        return len(self.waiting)

    def push(self, update: Update, fragment: str, now_ns: int) -> bool:
        """Queue ``update`` (encoded as ``fragment``); ``False`` once the queue overflowed."""
        if self.overflowed:
            return False
        self.stats.pushed += 1
        updates = self.waiting
        waiting = len(updates)
        if waiting < self.soft_limit and not self._indexed:
            updates.append(update)
            self._fragments.append(fragment)
            return True  # below the soft limit <= the hard limit: cannot overflow
        latest = self._index()
        key = update.key
        if waiting >= self.soft_limit:
            if self.behind_since_ns is None:
                self.behind_since_ns = now_ns
            if key is not None:
                number = latest.get(key)
                if number is not None:
                    i = number - self._head
                    merged = updates[i].merge(update)  # type: ignore[union-attr]
                    updates[i] = merged
                    self._fragments[i] = fragment if merged is update else self._encode(merged)
                    self.stats.conflated += 1
                    return True
        if key is not None:
            latest[key] = self._head + waiting
        updates.append(update)
        self._fragments.append(fragment)
        return self._check_overflow()

    def _index(self) -> dict[object, int]:
        if not self._indexed:
            latest = self._latest
            # In order, so the newest entry of a key wins.
            for number, update in enumerate(self.waiting, self._head):
                if update is not None and update.key is not None:
                    latest[update.key] = number
            self._indexed = True
        return self._latest

    def push_control(self, fragment: str) -> bool:
        """Queue a control message (ack, error); never merged."""
        if self.overflowed:
            return False
        self.waiting.append(None)
        self._fragments.append(fragment)
        return self._check_overflow()

    def _check_overflow(self) -> bool:
        if len(self.waiting) > self.hard_limit:
            self.overflowed = True
        return not self.overflowed

    def take(self, max_items: int) -> Batch:
        """Up to ``max_items`` entries in order, removed from the queue."""
        updates = self.waiting
        count = min(len(updates), max_items)
        pop_fragment = self._fragments.popleft
        fragments = [pop_fragment() for _ in range(count)]
        pop_update = updates.popleft
        data = 0
        oldest = 0
        head = self._head
        latest = self._latest if self._indexed else None
        for number in range(head, head + count):
            update = pop_update()
            if update is not None:
                data += 1
                ts = update.publish_ts_ns
                if ts and (oldest == 0 or ts < oldest):
                    oldest = ts
                if latest is not None:
                    key = update.key
                    if key is not None and latest.get(key) == number:
                        del latest[key]
        self._head = head + count
        if not updates and self._indexed:
            self._latest.clear()
            self._indexed = False
        self.stats.sent += data
        return Batch(fragments, data, oldest)

    def mark_sent(self) -> None:
        """A frame went out: the client is caught up if the queue is below the soft limit."""
        if len(self.waiting) < self.soft_limit:
            self.behind_since_ns = None

    def behind_ns(self, now_ns: int) -> int:
        """How long the client has been behind (0 when it is not)."""
        return 0 if self.behind_since_ns is None else now_ns - self.behind_since_ns

    def discard(self, keep: Callable[[Update], bool]) -> int:
        """Remove waiting updates for which ``keep`` is false (on unsubscribe); how many."""
        kept = [
            (update, fragment)
            for update, fragment in zip(self.waiting, self._fragments, strict=True)
            if update is None or keep(update)
        ]
        removed = len(self.waiting) - len(kept)
        self.waiting.clear()
        self._fragments.clear()
        for update, fragment in kept:
            self.waiting.append(update)
            self._fragments.append(fragment)
        # Entries moved: renumber from the head, and rebuild the index when next needed.
        self._latest.clear()
        self._indexed = False
        self.stats.discarded += removed
        return removed
