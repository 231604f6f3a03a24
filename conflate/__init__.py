"""Latest-value cache per (channel, symbol) and per-tier conflation of market data.

Pure: events and times in, updates out. ``Conflator`` (one per tier) turns normalized
events into at most one update per key per interval; ``LatestValueCache`` is the snapshot a
new subscriber gets; ``TierTable`` names the tiers (``realtime``, ``200ms``, ``1s``).
"""

from conflate.cache import LatestValueCache
from conflate.conflator import Conflator, ConflatorStats, UpdateBuilder
from conflate.errors import ConflateError, InvalidTierError, NotMergeableError, UnknownTierError
from conflate.policy import Tier, TierTable, default_tier_name
from conflate.updates import (
    BarUpdate,
    Channel,
    Key,
    QuoteUpdate,
    StatusUpdate,
    TradeUpdate,
    Update,
)

__all__ = [
    "BarUpdate",
    "Channel",
    "ConflateError",
    "Conflator",
    "ConflatorStats",
    "InvalidTierError",
    "Key",
    "LatestValueCache",
    "NotMergeableError",
    "QuoteUpdate",
    "StatusUpdate",
    "Tier",
    "TierTable",
    "TradeUpdate",
    "UnknownTierError",
    "Update",
    "UpdateBuilder",
    "default_tier_name",
]
