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
