"""The bus: publish keyed records, subscribe from an offset or the tail.

``make_bus(settings)`` picks the implementation: ``KafkaBus`` when
``settings.kafka_bootstrap`` is set, else the in-process ``MemoryBus``. ``KafkaBus`` is
imported on first use, so importing this package does not load aiokafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tickerplant.bus import errors
from tickerplant.bus.base import (
    Bus,
    Record,
    StartAt,
    Subscription,
    TopicPartition,
    partition_for,
)
from tickerplant.bus.errors import (
    BusError,
    BusNotRunningError,
    BusUnavailableError,
    CommitError,
    NoGroupError,
    OffsetOutOfRangeError,
    PartitionNotAssignedError,
    PublishError,
    SubscriptionClosedError,
    UnknownTopicError,
)
from tickerplant.bus.memory import MemoryBus

if TYPE_CHECKING:
    from tickerplant.bus.kafka import KafkaBus
    from tickerplant.settings import Settings

__all__ = [
    "Bus",
    "BusError",
    "BusNotRunningError",
    "BusUnavailableError",
    "CommitError",
    "KafkaBus",
    "MemoryBus",
    "NoGroupError",
    "OffsetOutOfRangeError",
    "PartitionNotAssignedError",
    "PublishError",
    "Record",
    "StartAt",
    "Subscription",
    "SubscriptionClosedError",
    "TopicPartition",
    "UnknownTopicError",
    "errors",
    "make_bus",
    "partition_for",
]


def __getattr__(name: str) -> Any:
    # `from tickerplant.bus import KafkaBus` loads aiokafka only then.
    if name == "KafkaBus":
        from tickerplant.bus.kafka import KafkaBus

        return KafkaBus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_bus(settings: Settings) -> Bus:
    """The bus the settings ask for, not yet started: Kafka when ``kafka_bootstrap`` is set."""
    k = settings.kafka
    if settings.kafka_bootstrap is None:
        return MemoryBus(partitions=k.partitions, retention=settings.memory_bus_retention)
    from tickerplant.bus.kafka import KafkaBus

    return KafkaBus(
        settings.kafka_bootstrap,
        partitions=k.partitions,
        connect_attempts=k.connect_attempts,
        connect_backoff_s=k.connect_backoff_s,
        connect_backoff_max_s=k.connect_backoff_max_s,
        request_timeout_s=k.request_timeout_s,
        replication_factor=k.replication_factor,
    )
