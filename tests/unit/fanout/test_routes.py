"""Pull routing's slots (``fanout.server._Routes``): bounded, reused, each getter exact."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from conflate import Channel
from fanout.server import _Routes
from fanout.session import StreamSession
from tickerplant.identity import Role, User, UserId


class _Subscriber:
    """What ``_Routes`` reads of a client: its session (hashable by identity)."""

    def __init__(self) -> None:
        self.session = StreamSession(max_symbols=1000)
        self.session.authenticated(
            User(UserId(1), "u", Role.TRADER, datetime(2024, 1, 1, tzinfo=UTC))
        )

    def subscribe(self, routes: _Routes, **symbols: list[str]) -> None:
        request = {Channel(name): tuple(names) for name, names in symbols.items()}
        routes.subscribed(self, self.session.subscribe(request))

    def unsubscribe(self, routes: _Routes, **symbols: list[str]) -> None:
        request = {Channel(name): tuple(names) for name, names in symbols.items()}
        routes.unsubscribed(self, self.session.unsubscribe(request))


def _table(routes: _Routes) -> list[str | None]:
    """A full tick: each slot holds the name of its key."""
    table: list[str | None] = [None] * routes.slot_count
    for (channel, symbol), slot in routes.slots.items():
        table[slot] = f"{channel.value}:{symbol}"
    return table


def _expected(subscriber: _Subscriber) -> list[str]:
    session = subscriber.session
    return [
        f"{channel.value}:{symbol}"
        for channel in (Channel.TRADES, Channel.QUOTES)
        if channel not in session.wildcard
        for symbol in sorted(session.symbols[channel])
    ]


def test_each_getter_reads_exactly_its_clients_named_trade_and_quote_keys():
    """One key (a 1-element sequence, not a bare value), several keys, a wildcard channel
    (not pulled), bars (never pulled): each getter returns its keys in sorted order."""
    routes = _Routes()
    one, many, wild = _Subscriber(), _Subscriber(), _Subscriber()
    one.subscribe(routes, quotes=["MSFT"])
    many.subscribe(routes, trades=["MSFT", "AAPL"], quotes=["MSFT"], bars=["AAPL"])
    wild.subscribe(routes, trades=["*"], quotes=["IBM"])
    table = _table(routes)
    assert list(routes.getters[one](table)) == ["quotes:MSFT"]
    assert list(routes.getters[many](table)) == ["trades:AAPL", "trades:MSFT", "quotes:MSFT"]
    assert list(routes.getters[wild](table)) == ["quotes:IBM"]
    assert sorted(routes.slots.values()) == list(range(4))  # 3 distinct keys + IBM quotes
    wild.unsubscribe(routes, quotes=["IBM"])
    assert wild not in routes.getters
    assert (Channel.QUOTES, "IBM") not in routes.slots


def test_slots_are_freed_and_reused_so_churn_never_grows_the_table():
    """3,000 random subscribes and unsubscribes by 20 clients over 400 symbols: the number
    of slots never exceeds the most keys named at once, every named key has a distinct
    slot, no unnamed key keeps one, and every getter stays exact."""
    rng = random.Random(7)
    routes = _Routes()
    clients = [_Subscriber() for _ in range(20)]
    symbols = [f"S{i:03d}" for i in range(400)]
    most_named = 0
    for _ in range(3000):
        client = rng.choice(clients)
        names = rng.sample(symbols, rng.randint(1, 5))
        channel = rng.choice(["trades", "quotes"])
        if rng.random() < 0.5:
            client.subscribe(routes, **{channel: names})
        else:
            client.unsubscribe(routes, **{channel: names})
        named = {
            (channel, symbol)
            for c in clients
            for channel in (Channel.TRADES, Channel.QUOTES)
            for symbol in c.session.symbols[channel]
        }
        most_named = max(most_named, len(named))
        assert set(routes.slots) == named
        assert len(set(routes.slots.values())) == len(named)
        assert routes.slot_count <= most_named
    table = _table(routes)
    for client in clients:
        getter = routes.getters.get(client)
        assert (list(getter(table)) if getter else []) == _expected(client)
