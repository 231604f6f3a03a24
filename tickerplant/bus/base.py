"""The bus interface: publish keyed records, subscribe to topics from an offset or the tail.

Two implementations pass the same contract suite (``tests/integration/bus``):
``MemoryBus`` (one process, zero set-up) and ``KafkaBus`` (aiokafka, production).

Records are keyed (by symbol or account). The key picks the partition with
``partition_for`` (``zlib.crc32``, stable across processes and runs, never ``hash()``),
so every record of one key lands on one partition and keeps its publish order.
Offsets are per partition, start at 0 and grow by one per record, as in Kafka.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

StartAt = Literal["earliest", "latest", "committed"]
"""Where a subscription starts on each partition when no explicit offset is given.

``earliest``: the oldest retained record. ``latest``: only records published after the
subscription is ready. ``committed``: the group's committed offset, else ``earliest``.
"""


@dataclass(frozen=True, slots=True)
class TopicPartition:
    topic: str
    partition: int


class Record(NamedTuple):
    """One record as delivered to a subscriber (a named tuple: cheap to build and read)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp_ms: int


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a key is routed to: stable across processes (crc32, not ``hash()``)."""
    return zlib.crc32(key) % partitions


@runtime_checkable
class Subscription(Protocol):
    """A consumer over one or more topics (all their partitions)."""

    async def next_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first.

        Returns ``[]`` on timeout. Records of one partition come in offset order.
        """
        ...

    def __aiter__(self) -> AsyncIterator[Record]:
        """Records one at a time, waiting as long as it takes; ends when the subscription
        is closed. Only records actually yielded count as delivered (``position``)."""
        ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """The next record delivered from ``tp`` is the one at ``offset``.

        An offset past the partition's end or below its oldest retained record makes the
        next ``next_batch`` raise ``OffsetOutOfRangeError`` (never a silent rewind).
        """
        ...

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record this subscription will deliver from ``tp``.

        Records fetched but not yet handed out do not count.
        """
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Record the group's progress: the offset of the *next* record to read per partition.

        Without ``offsets``, commits the current positions (everything delivered so far).
        Requires the subscription to have a ``group``.
        """
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Bus(Protocol):
    """Publish keyed records; open subscriptions. Use as an async context manager."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` with ``partitions`` partitions; no-op when it already exists.

        ``None`` means the bus's default (its ``partitions=`` argument, which ``make_bus``
        takes from ``settings.kafka.partitions``). An existing topic keeps its partition
        count even when ``partitions`` differs.
        """
        ...

    async def partitions(self, topic: str) -> int:
        """The number of partitions of ``topic``."""
        ...

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Publish one record; durable (acknowledged) when this returns."""
        ...

    async def publish_many(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Publish ``(key, value)`` pairs, keeping their order per key; returns how many.

        All are acknowledged when this returns.
        """
        ...

    async def subscribe(
        self,
        topics: Iterable[str],
        *,
        group: str | None = None,
        start: StartAt = "latest",
    ) -> Subscription:
        """A subscription to every partition of ``topics``, ready when this returns."""
        ...

    async def __aenter__(self) -> Bus: ...

    async def __aexit__(self, *exc: object) -> None: ...
