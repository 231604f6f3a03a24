"""Errors raised by bus implementations."""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class BusError(TickerplantError):
    """Root of bus errors."""


class BusUnavailableError(BusError):
    """The broker could not be reached within the retry budget."""

    def __init__(self, bootstrap: str, attempts: int, elapsed_s: float, cause: str) -> None:
        self.bootstrap = bootstrap
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        self.cause = cause
        super().__init__(
            f"Kafka broker at {bootstrap} is unavailable after {attempts} attempts "
            f"over {elapsed_s:.1f}s: {cause}. Is the broker running? "
            "(unset TP_KAFKA_BOOTSTRAP to use the in-memory bus)"
        )


class UnknownTopicError(BusError):
    """A topic was used before it was created."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"unknown topic {topic!r}: create it first with create_topic()")


class NoGroupError(BusError):
    """``commit`` on a subscription that has no consumer group."""

    def __init__(self) -> None:
        super().__init__("commit() needs a subscription opened with group=...")


class BusNotRunningError(BusError):
    """The bus was used before ``start()`` or after ``close()``."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(
            f"the bus is {state}: use it between start() and close() (or inside `async with bus`)"
        )


class SubscriptionClosedError(BusError):
    """A subscription was used after ``close()`` (its own or its bus's)."""

    def __init__(self) -> None:
        super().__init__("the subscription is closed: open a new one with bus.subscribe()")


class PartitionNotAssignedError(BusError):
    """``seek``, ``position`` or ``commit`` named a partition the subscription does not read."""

    def __init__(self, topic: str, partition: int, assigned: int) -> None:
        self.topic = topic
        self.partition = partition
        self.assigned = assigned
        super().__init__(
            f"partition {partition} of topic {topic!r} is not in this subscription: "
            f"it reads partitions 0..{assigned - 1} of {topic!r}"
            if assigned
            else f"topic {topic!r} is not in this subscription"
        )


class OffsetOutOfRangeError(BusError):
    """The position on a partition is outside the retained records ``[start, end]``.

    Raised by ``next_batch`` after a ``seek`` past the end or below the oldest retained
    record; the subscription never silently rewinds.
    """

    def __init__(self, topic: str, partition: int, offset: int, detail: str) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(
            f"offset {offset} is out of range on {topic!r} partition {partition} ({detail}): "
            "seek to an offset between the oldest retained record and the end"
        )


class PublishError(BusError):
    """Records were not acknowledged; some may have been written (at-least-once)."""

    def __init__(self, topic: str, failed: int, total: int, cause: str) -> None:
        self.topic = topic
        self.failed = failed
        self.total = total
        self.cause = cause
        super().__init__(f"{failed} of {total} records to {topic!r} were not acknowledged: {cause}")


class CommitError(BusError):
    """The group's offsets could not be committed."""

    def __init__(self, group: str, cause: str) -> None:
        self.group = group
        self.cause = cause
        super().__init__(f"committing offsets for group {group!r} failed: {cause}")
