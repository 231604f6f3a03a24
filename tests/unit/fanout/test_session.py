"""One connection's state machine: auth, additive subscriptions, limits, rate limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conflate import Channel
from fanout.errors import (
    AlreadyAuthenticatedError,
    NotAuthenticatedError,
    SymbolLimitExceededError,
)
from fanout.session import StreamSession, TokenBucket
from tickerplant.identity import Role, User, UserId

ANN = User(UserId(1), "ann", Role.TRADER, datetime(2024, 1, 1, tzinfo=UTC))


def req(**channels: tuple[str, ...]) -> dict[Channel, tuple[str, ...]]:
    return {channel: channels.get(channel.value, ()) for channel in Channel}


def authed(max_symbols: int = 10) -> StreamSession:
    session = StreamSession(max_symbols=max_symbols)
    session.authenticated(ANN)
    return session


def test_subscribing_before_auth_is_401_and_a_second_auth_is_403():
    """Subscribe/unsubscribe need auth (401); authenticating twice is 403."""
    session = StreamSession(max_symbols=10)
    with pytest.raises(NotAuthenticatedError) as caught:
        session.subscribe(req(trades=("AAPL",)))
    assert (caught.value.code, caught.value.msg) == (401, "not authenticated")
    with pytest.raises(NotAuthenticatedError):
        session.unsubscribe(req(trades=("AAPL",)))
    session.authenticated(ANN)
    assert session.is_authenticated and session.user == ANN
    with pytest.raises(AlreadyAuthenticatedError) as again:
        session.check_can_authenticate()
    assert (again.value.code, again.value.msg) == (403, "already authenticated")


def test_subscriptions_are_additive_and_report_only_what_starts():
    """AAPL then AAPL+MSFT: the second change adds only MSFT; current lists both."""
    session = authed()
    first = session.subscribe(req(quotes=("AAPL",)))
    assert first.symbols == {Channel.QUOTES: frozenset({"AAPL"})} and first.wildcard == frozenset()
    second = session.subscribe(req(quotes=("AAPL", "MSFT"), trades=("*",)))
    assert second.symbols == {Channel.QUOTES: frozenset({"MSFT"})}
    assert second.wildcard == frozenset({Channel.TRADES})
    assert session.current() == {
        Channel.TRADES: ["*"],
        Channel.QUOTES: ["AAPL", "MSFT"],
        Channel.BARS: [],
        Channel.STATUSES: [],
    }
    assert session.receives(Channel.TRADES, "ANY") and not session.receives(Channel.BARS, "AAPL")
    assert session.pair_count == 3


def test_unsubscribe_removes_only_what_was_subscribed():
    """Unsubscribing MSFT (never subscribed) changes nothing; '*' and AAPL go."""
    session = authed()
    session.subscribe(req(quotes=("AAPL", "*")))
    assert session.unsubscribe(req(quotes=("MSFT",))).symbols == {}
    change = session.unsubscribe(req(quotes=("AAPL", "*")))
    assert change.symbols == {Channel.QUOTES: frozenset({"AAPL"})}
    assert change.wildcard == frozenset({Channel.QUOTES})
    assert session.current()[Channel.QUOTES] == [] and session.pair_count == 0


def test_the_symbol_limit_is_all_or_nothing_with_405():
    """Limit 3 with 2 held: asking for 2 more is refused whole, nothing is added."""
    session = authed(max_symbols=3)
    session.subscribe(req(trades=("A", "B")))
    with pytest.raises(SymbolLimitExceededError) as caught:
        session.subscribe(req(quotes=("C", "*")))
    assert (caught.value.code, caught.value.msg) == (
        405,
        "symbol limit exceeded: 4 subscriptions requested, at most 3 per connection",
    )
    assert session.pair_count == 2
    session.subscribe(req(trades=("A",), quotes=("C",)))
    assert session.pair_count == 3


def test_the_token_bucket_allows_the_burst_then_the_rate():
    """Burst 3 at 2/s: three at once, the fourth refused, one more after half a second."""
    bucket = TokenBucket(rate=2.0, burst=3, now_s=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.25) is False
    assert bucket.take(100.5) is True
    assert [bucket.take(110.0) for _ in range(4)] == [True, True, True, False]
