"""One connection's state: authentication, its subscription set, its message rate. Pure.

``StreamSession`` answers *who may receive what*; the server turns its answers into index
updates, snapshots and acknowledgements. It reports, for each subscribe, the (channel,
symbol) pairs the client *starts* receiving (``SubscriptionChange``), so the server sends a
snapshot of exactly those and nothing twice: adding ``AAPL`` while ``"*"`` is active on a
channel starts nothing new; adding ``"*"`` starts every symbol not already named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from conflate import Channel
from fanout.errors import AlreadyAuthenticatedError, NotAuthenticatedError, SymbolLimitExceededError
from fanout.protocol import WILDCARD
from tickerplant.identity import User


class SessionState(Enum):
    AWAITING_AUTH = "awaiting auth"
    AUTHENTICATED = "authenticated"


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """What a subscribe or unsubscribe changed.

    ``symbols``: explicit symbols added (or removed) per channel. ``wildcard``: channels
    whose ``"*"`` was added (or removed).
    """

    symbols: Mapping[Channel, frozenset[str]] = field(default_factory=dict)
    wildcard: frozenset[Channel] = frozenset()


class StreamSession:
    """Auth state and subscriptions of one client; ``max_symbols`` caps the pairs held.

    Every ``"*"`` counts as one pair.
    """

    def __init__(self, *, max_symbols: int) -> None:
        self.max_symbols = max_symbols
        self.state = SessionState.AWAITING_AUTH
        self.user: User | None = None
        self.symbols: dict[Channel, set[str]] = {channel: set() for channel in Channel}
        self.wildcard: set[Channel] = set()

    # -- auth -------------------------------------------------------------------------------

    def check_can_authenticate(self) -> None:
        if self.state is SessionState.AUTHENTICATED:
            raise AlreadyAuthenticatedError()

    def authenticated(self, user: User) -> None:
        self.check_can_authenticate()
        self.state = SessionState.AUTHENTICATED
        self.user = user

    @property
    def is_authenticated(self) -> bool:
        return self.state is SessionState.AUTHENTICATED

    def _check_authenticated(self) -> None:
        if self.state is not SessionState.AUTHENTICATED:
            raise NotAuthenticatedError()

    # -- subscriptions ----------------------------------------------------------------------

    @property
    def pair_count(self) -> int:
        return sum(len(symbols) for symbols in self.symbols.values()) + len(self.wildcard)

    def subscribe(self, request: Mapping[Channel, tuple[str, ...]]) -> SubscriptionChange:
        """Add symbols (additive); all or nothing when the limit would be exceeded."""
        self._check_authenticated()
        added: dict[Channel, frozenset[str]] = {}
        wildcard: set[Channel] = set()
        for channel, names in request.items():
            if WILDCARD in names and channel not in self.wildcard:
                wildcard.add(channel)
            new = frozenset(name for name in names if name != WILDCARD) - self.symbols[channel]
            if new:
                added[channel] = new
        after = self.pair_count + len(wildcard) + sum(len(new) for new in added.values())
        if after > self.max_symbols:
            raise SymbolLimitExceededError(
                f"{after} subscriptions requested, at most {self.max_symbols} per connection"
            )
        for channel, new in added.items():
            self.symbols[channel] |= new
        self.wildcard |= wildcard
        return SubscriptionChange(added, frozenset(wildcard))

    def unsubscribe(self, request: Mapping[Channel, tuple[str, ...]]) -> SubscriptionChange:
        """Remove symbols; names not subscribed are ignored."""
        self._check_authenticated()
        removed: dict[Channel, frozenset[str]] = {}
        wildcard: set[Channel] = set()
        for channel, names in request.items():
            if WILDCARD in names and channel in self.wildcard:
                wildcard.add(channel)
            gone = frozenset(names) & self.symbols[channel]
            if gone:
                removed[channel] = gone
                self.symbols[channel] -= gone
        self.wildcard -= wildcard
        return SubscriptionChange(removed, frozenset(wildcard))

    def receives(self, channel: Channel, symbol: str) -> bool:
        """Whether updates of ``symbol`` on ``channel`` go to this client."""
        return channel in self.wildcard or symbol in self.symbols[channel]

    def current(self) -> dict[Channel, list[str]]:
        """The subscription set per channel, ``"*"`` first, then symbols sorted."""
        current: dict[Channel, list[str]] = {}
        for channel in Channel:
            names = sorted(self.symbols[channel])
            current[channel] = [WILDCARD, *names] if channel in self.wildcard else names
        return current


class TokenBucket:
    """A rate limit: ``rate`` tokens per second, at most ``burst`` saved up. Times are args."""

    __slots__ = ("_level", "_updated_s", "burst", "rate")

    def __init__(self, *, rate: float, burst: int, now_s: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = float(burst)
        self._updated_s = now_s

    def take(self, now_s: float) -> bool:
        """Spend one token if there is one; ``False`` means rate limited."""
        elapsed = max(0.0, now_s - self._updated_s)
        self._updated_s = now_s
        self._level = min(float(self.burst), self._level + elapsed * self.rate)
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False
