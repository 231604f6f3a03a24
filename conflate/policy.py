"""Subscriber tiers: how often a subscriber gets conflated updates. Pure.

``realtime`` (interval 0) is unconflated: every event goes out as it arrives. Other tiers
send at most one update per (channel, symbol) per interval, always the latest. The default
tier is named after its interval (``200ms`` for ``TP_CONFLATE__INTERVAL_MS=200``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from conflate.errors import InvalidTierError, UnknownTierError

_TIER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    interval_ms: int

    @property
    def realtime(self) -> bool:
        return self.interval_ms == 0

    @property
    def interval_ns(self) -> int:
        return self.interval_ms * 1_000_000


def default_tier_name(interval_ms: int) -> str:
    """The name of the default tier: ``200ms``, ``1s`` for whole seconds."""
    if interval_ms % 1000 == 0:
        return f"{interval_ms // 1000}s"
    return f"{interval_ms}ms"


@dataclass(frozen=True, slots=True)
class TierTable:
    """The configured tiers and which one a subscriber gets by default."""

    tiers: Mapping[str, Tier]
    default: str

    @classmethod
    def from_settings(cls, interval_ms: int, extra: Mapping[str, int]) -> TierTable:
        """The default tier of ``interval_ms`` plus ``extra`` (name -> interval ms)."""
        tiers: dict[str, Tier] = {}
        default = default_tier_name(interval_ms)
        for name, interval in {default: interval_ms, **extra}.items():
            if not _TIER_NAME.fullmatch(name):
                raise InvalidTierError(name, interval, "use 1 to 32 of letters, digits, _ . -")
            if interval < 0:
                raise InvalidTierError(name, interval, "the interval must be >= 0")
            tiers[name] = Tier(name, interval)
        if default in extra and extra[default] != interval_ms:
            raise InvalidTierError(default, extra[default], "clashes with the default tier")
        return cls(tiers, default)

    def get(self, name: str | None) -> Tier:
        """The tier named ``name``; the default tier for ``None``."""
        if name is None:
            return self.tiers[self.default]
        try:
            return self.tiers[name]
        except KeyError:
            raise UnknownTierError(name, tuple(self.tiers)) from None
