"""The conflate error hierarchy: one root, specific subclasses that carry their facts."""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class ConflateError(TickerplantError):
    """Root of every error raised by the ``conflate`` package."""


class UnknownTierError(ConflateError):
    """A subscriber asked for a tier that is not configured."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown tier {name!r}: expected one of {', '.join(known)}")


class InvalidTierError(ConflateError):
    """A tier definition that cannot be used (bad name or negative interval)."""

    def __init__(self, name: str, interval_ms: int, reason: str) -> None:
        self.name = name
        self.interval_ms = interval_ms
        self.reason = reason
        super().__init__(f"tier {name!r} with interval {interval_ms} ms is invalid: {reason}")


class NotMergeableError(ConflateError):
    """Two updates that must not be conflated into one (status, or different keys)."""

    def __init__(self, older: object, newer: object) -> None:
        self.older = older
        self.newer = newer
        super().__init__(
            f"cannot conflate {type(older).__name__} with {type(newer).__name__}: "
            "only trades, quotes and bars of the same key merge"
        )
