"""The in-process bus: Kafka's model (topics, partitions, offsets, group offsets) in memory.

The embedded default: one process, zero set-up. It passes the same contract suite as
``KafkaBus`` (``tests/integration/bus``), so a component tested on it behaves the same on
Kafka: the same key lands on the same partition number (``partition_for``), offsets per
partition start at 0, ``latest`` skips what was published before ``subscribe`` returned,
and group offsets survive the subscription that committed them (they live in the bus).

Delivery: every subscription sees every record of its partitions (no broker-side fan-out
limits); a record is retained until the partition holds more than ``retention`` records.
Everything runs on the event loop that uses the bus; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping

from tickerplant.bus.base import Record, StartAt, TopicPartition, partition_for
from tickerplant.bus.errors import (
    BusNotRunningError,
    NoGroupError,
    OffsetOutOfRangeError,
    PartitionNotAssignedError,
    SubscriptionClosedError,
    UnknownTopicError,
)
from tickerplant.settings import KafkaSettings

__all__ = ["MemoryBus", "MemorySubscription"]

# publish_many yields to the event loop (and wakes subscribers) every this many records,
# so a large batch neither starves other tasks nor delays consumers until its end.
_YIELD_EVERY = 8192


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_bytes(key: bytes, value: bytes) -> None:
    if not isinstance(key, bytes) or not isinstance(value, bytes):
        raise TypeError(
            f"key and value must be bytes, got {type(key).__name__} and {type(value).__name__}"
        )


class _PartitionLog:
    """One partition: records at offsets ``start .. end - 1``.

    Trimming for ``retention`` is logical at once (``start`` moves) and physical in chunks,
    so appends stay O(1) amortised and reads are list slices.
    """

    __slots__ = ("_base", "_records", "_retention", "partition", "topic")

    def __init__(self, topic: str, partition: int, retention: int | None) -> None:
        self.topic = topic
        self.partition = partition
        self._retention = retention
        # Plain (key, value, timestamp_ms) tuples: exact tuples of bytes and ints are untracked
        # by the garbage collector, so a long log adds nothing to its scans. Records are
        # built on read.
        self._records: list[tuple[bytes, bytes, int]] = []
        self._base = 0  # offset of self._records[0]

    @property
    def end(self) -> int:
        """The offset the next appended record gets (Kafka's log end offset)."""
        return self._base + len(self._records)

    @property
    def start(self) -> int:
        """The oldest retained offset."""
        if self._retention is None:
            return self._base
        return max(self._base, self.end - self._retention)

    def append(self, key: bytes, value: bytes, timestamp_ms: int) -> None:
        self._records.append((key, value, timestamp_ms))
        if self._retention is not None:
            excess = len(self._records) - self._retention
            # Physical trim only once the dead prefix is as long as the live part.
            if excess >= max(self._retention, 1024):
                del self._records[:excess]
                self._base += excess

    def read(self, offset: int, limit: int) -> list[Record]:
        i = offset - self._base
        topic, partition = self.topic, self.partition
        return [
            Record(topic, partition, at, key, value, ts)
            for at, (key, value, ts) in enumerate(self._records[i : i + limit], start=offset)
        ]


class MemoryBus:
    """In-process implementation of ``Bus``.

    ``partitions`` is what ``create_topic`` uses when given no count. ``retention`` caps the
    records kept per partition (``None``: keep everything); a subscription whose position
    falls below the oldest kept record gets ``OffsetOutOfRangeError``.
    """

    def __init__(
        self,
        *,
        partitions: int = KafkaSettings.model_fields["partitions"].default,
        retention: int | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if retention is not None and retention < 1:
            raise ValueError(f"retention must be >= 1 or None, got {retention}")
        self._default_partitions = partitions
        self._retention = retention
        self._topics: dict[str, list[_PartitionLog]] = {}
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._subscriptions: set[MemorySubscription] = set()
        self._state = "not started"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state == "closed":
            raise BusNotRunningError("closed")
        self._state = "running"

    async def close(self) -> None:
        self._state = "closed"
        for sub in list(self._subscriptions):
            await sub.close()

    async def __aenter__(self) -> MemoryBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_running(self) -> None:
        if self._state != "running":
            raise BusNotRunningError(self._state)

    # -- topics ------------------------------------------------------------------------------

    async def create_topic(self, topic: str, partitions: int | None = None) -> None:
        self._check_running()
        count = self._default_partitions if partitions is None else partitions
        if count < 1:
            raise ValueError(f"partitions must be >= 1, got {count}")
        if topic not in self._topics:
            self._topics[topic] = [_PartitionLog(topic, p, self._retention) for p in range(count)]

    async def partitions(self, topic: str) -> int:
        self._check_running()
        return len(self._logs(topic))

    def _logs(self, topic: str) -> list[_PartitionLog]:
        try:
            return self._topics[topic]
        except KeyError:
            raise UnknownTopicError(topic) from None

    def _log(self, tp: TopicPartition) -> _PartitionLog:
        return self._topics[tp.topic][tp.partition]

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        self._check_running()
        logs = self._logs(topic)
        _check_bytes(key, value)
        logs[partition_for(key, len(logs))].append(key, value, _now_ms())
        self._wake(topic)

    async def publish_many(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        self._check_running()
        logs = self._logs(topic)
        n = len(logs)
        count = 0
        for key, value in records:
            _check_bytes(key, value)
            logs[partition_for(key, n)].append(key, value, _now_ms())
            count += 1
            if count % _YIELD_EVERY == 0:
                self._wake(topic)
                await asyncio.sleep(0)
                self._check_running()
        self._wake(topic)
        return count

    def _wake(self, topic: str) -> None:
        for sub in self._subscriptions:
            if topic in sub.topics:
                sub._wakeup.set()

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Iterable[str],
        *,
        group: str | None = None,
        start: StartAt = "latest",
    ) -> MemorySubscription:
        self._check_running()
        if start not in ("earliest", "latest", "committed"):
            raise ValueError(f"start must be 'earliest', 'latest' or 'committed', got {start!r}")
        if isinstance(topics, str):
            raise TypeError(f"topics must be a list of names, e.g. [{topics!r}], not a str")
        names = list(dict.fromkeys(topics))
        positions: dict[TopicPartition, int] = {}
        for topic in names:
            for log in self._logs(topic):
                tp = TopicPartition(topic, log.partition)
                if start == "latest":
                    positions[tp] = log.end
                elif start == "committed" and group is not None and (group, tp) in self._committed:
                    # Clamp like Kafka's consumer would after retention removed the records.
                    positions[tp] = min(max(self._committed[(group, tp)], log.start), log.end)
                else:
                    positions[tp] = log.start
        sub = MemorySubscription(self, positions, group)
        self._subscriptions.add(sub)
        return sub

    def _commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._committed[(group, tp)] = offset

    def _forget(self, sub: MemorySubscription) -> None:
        self._subscriptions.discard(sub)


class MemorySubscription:
    """A reader over every partition of some topics of a ``MemoryBus``.

    ``next_batch`` takes records round-robin across partitions in chunks, starting from a
    different partition each call, so one busy partition cannot starve the others.
    """

    def __init__(
        self, bus: MemoryBus, positions: dict[TopicPartition, int], group: str | None
    ) -> None:
        self._bus = bus
        self._positions = positions
        self._tps = list(positions)
        self.topics = frozenset(tp.topic for tp in self._tps)
        self.group = group
        self._cursor = 0
        self._closed = False
        # Set by the bus on every publish to one of our topics, and by close(). Cleared
        # before each scan for records: a publish between the scan and the wait sets it
        # again, so a wake-up is never lost (everything runs on one event loop).
        self._wakeup = asyncio.Event()

    def _check_open(self) -> None:
        if self._closed:
            raise SubscriptionClosedError()

    def _check_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._positions:
            assigned = sum(1 for t in self._tps if t.topic == tp.topic)
            raise PartitionNotAssignedError(tp.topic, tp.partition, assigned)

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        n = len(self._tps)
        if n == 0:
            return out
        first = self._cursor
        self._cursor = (first + 1) % n
        chunk = max(1, max_records // n)
        progress = True
        while progress and len(out) < max_records:
            progress = False
            for i in range(n):
                tp = self._tps[(first + i) % n]
                log = self._bus._log(tp)
                pos = self._positions[tp]
                if pos > log.end:
                    raise OffsetOutOfRangeError(tp.topic, tp.partition, pos, f"end is {log.end}")
                if pos < log.start:
                    raise OffsetOutOfRangeError(
                        tp.topic, tp.partition, pos, f"oldest retained is {log.start}"
                    )
                got = log.read(pos, min(chunk, max_records - len(out)))
                if got:
                    out.extend(got)
                    self._positions[tp] = pos + len(got)
                    progress = True
                    if len(out) >= max_records:
                        break
        return out

    async def next_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
        self._check_open()
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._wakeup.clear()
            batch = self._take(max_records)
            if batch or self._closed:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return []

    async def __aiter__(self) -> AsyncIterator[Record]:
        # One record per take: the position only moves past records actually yielded, so
        # breaking out of the loop and committing loses nothing.
        while not self._closed:
            for record in await self.next_batch(max_records=1):
                yield record

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_open()
        self._check_assigned(tp)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self._positions[tp] = offset
        self._wakeup.set()

    def position(self, tp: TopicPartition) -> int:
        self._check_assigned(tp)
        return self._positions[tp]

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if self.group is None:
            raise NoGroupError()
        if offsets is None:
            offsets = dict(self._positions)
        for tp, offset in offsets.items():
            self._check_assigned(tp)
            if offset < 0:
                raise ValueError(f"offset must be >= 0, got {offset} for {tp}")
        self._bus._commit(self.group, offsets)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        self._bus._forget(self)
