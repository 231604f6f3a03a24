"""Subscribe, snapshot, live updates over real sockets: no gap, no duplicate, exact conflation."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

import fanout.server
from conflate import Channel
from fanout.protocol import Unsubscribe
from tests.integration.fanout.conftest import PRO, open_client, recv_json, send, stream_token
from tests.unit.conflate.builders import quote, record, status, trade
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

pytestmark = pytest.mark.timeout(60)


async def messages_until(ws, done, timeout: float = 10.0) -> list[dict]:
    """Data messages (T in t/q/b/s) read until ``done(messages)`` holds."""
    out: list[dict] = []
    async with asyncio.timeout(timeout):
        while not done(out):
            out += [m for m in await recv_json(ws, timeout) if m["T"] in ("t", "q", "b", "s")]
    return out


async def test_fifty_quote_changes_in_one_interval_reach_a_subscriber_as_one_quote_the_last(
    start_server, memory_bus
):
    """Default tier: exactly one AAPL quote, seq 50; realtime tier: all 50 in order."""
    server = await start_server(interval_ms=200)
    async with asyncio.timeout(20):
        conflated = await open_client(server, token=stream_token())
        realtime = await open_client(server, token=stream_token(PRO), query="?tier=realtime")
        for ws in (conflated, realtime):
            await send(ws, action="subscribe", quotes=["AAPL"])
            assert (await recv_json(ws))[0]["T"] == "subscription"
        await memory_bus.publish_many(
            MD_QUOTES,
            [record("AAPL", quote("AAPL", seq, bid=990_000 + seq)) for seq in range(1, 51)],
        )
        got = await messages_until(conflated, lambda m: len(m) >= 1)
        assert [(m["i"], m["bp"]) for m in got] == [(50, 99.005)]
        with pytest.raises(TimeoutError):
            await recv_json(conflated, timeout=0.5)  # and nothing more
        live = await messages_until(realtime, lambda m: len(m) >= 50)
        assert [m["i"] for m in live] == list(range(1, 51))
        await conflated.close()
        await realtime.close()


async def test_a_wildcard_subscriber_gets_a_sorted_snapshot_then_only_changes(
    start_server, memory_bus
):
    """Quotes of three symbols cached: subscribe '*' gets ack + 3 snapshot quotes, then MSFT."""
    server = await start_server(interval_ms=20)
    async with asyncio.timeout(20):
        for seq, symbol in enumerate(["MSFT", "AAPL", "GOOG"], 1):
            await memory_bus.publish(MD_QUOTES, *record(symbol, quote(symbol, seq)))
        await asyncio.sleep(0.2)  # a tick puts them in the tier's cache
        ws = await open_client(server, token=stream_token())
        await send(ws, action="subscribe", quotes=["*"])
        first = await recv_json(ws)
        assert first[0] == {
            "T": "subscription",
            "trades": [],
            "quotes": ["*"],
            "bars": [],
            "statuses": [],
        }
        assert [(m["S"], m["i"]) for m in first[1:]] == [("AAPL", 2), ("GOOG", 3), ("MSFT", 1)]
        await memory_bus.publish(MD_QUOTES, *record("MSFT", quote("MSFT", 4)))
        assert [(m["S"], m["i"]) for m in await messages_until(ws, len)] == [("MSFT", 4)]
        await ws.close()


async def test_unsubscribed_symbols_stop_and_the_ack_lists_the_full_remaining_set(
    start_server, memory_bus
):
    """Unsubscribe AAPL: later AAPL trades never arrive; MSFT trades do."""
    server = await start_server(interval_ms=20)
    async with asyncio.timeout(20):
        ws = await open_client(server, token=stream_token())
        await send(ws, action="subscribe", trades=["AAPL", "MSFT"], statuses=["AAPL"])
        await recv_json(ws)
        await send(ws, action="unsubscribe", trades=["AAPL"])
        assert await recv_json(ws) == [
            {
                "T": "subscription",
                "trades": ["MSFT"],
                "quotes": [],
                "bars": [],
                "statuses": ["AAPL"],
            }
        ]
        await memory_bus.publish(MD_TRADES, *record("AAPL", trade("AAPL", 1)))
        await memory_bus.publish(MD_TRADES, *record("MSFT", trade("MSFT", 2)))
        await memory_bus.publish(MD_STATUS, *record("AAPL", status("AAPL", 3, code="H")))
        got = await messages_until(ws, lambda m: len(m) >= 2)
        assert sorted((m["T"], m["S"], m["i"]) for m in got) == [("s", "AAPL", 3), ("t", "MSFT", 2)]
        with pytest.raises(TimeoutError):
            await recv_json(ws, timeout=0.3)
        await ws.close()


async def test_clients_subscribing_mid_stream_see_no_gap_and_no_duplicate(start_server, memory_bus):
    """3,000 trades and quotes of AAPL/MSFT while 20 clients subscribe at random moments:
    for every client and symbol, the trade totals chain exactly from its snapshot
    (cn = previous cn + n, cv = previous cv + v), sequence numbers only increase, and the
    last trade and quote are the last published; the client subscribed before the first
    trade sees volumes summing to every share traded."""
    server = await start_server(interval_ms=20)
    rng = random.Random(4)
    symbols = ("AAPL", "MSFT")
    published: dict[str, list[tuple[int, int]]] = {s: [] for s in symbols}  # (seq, size)
    last_quote: dict[str, int] = {}
    total = 3000

    async def publish() -> None:
        for seq in range(1, total + 1):
            symbol = symbols[seq % 2]
            size = rng.randrange(1, 500)
            published[symbol].append((seq, size))
            await memory_bus.publish(MD_TRADES, *record(symbol, trade(symbol, seq, size=size)))
            await memory_bus.publish(MD_QUOTES, *record(symbol, quote(symbol, seq)))
            last_quote[symbol] = seq
            if seq % 10 == 0:
                await asyncio.sleep(0.001)

    async def subscriber(delay: float) -> list[dict]:
        await asyncio.sleep(delay)
        ws = await open_client(server, token=stream_token())
        await send(ws, action="subscribe", trades=list(symbols), quotes=list(symbols))
        # The acknowledgement's frame carries the snapshot: messages_until keeps it.

        def complete(messages: list[dict]) -> bool:
            last = {m["S"]: m["cn"] for m in messages if m["T"] == "t"}
            return all(last.get(s) == total // 2 for s in symbols)

        try:
            return await messages_until(ws, complete, timeout=30)
        finally:
            await ws.close()

    async with asyncio.timeout(45):
        first = asyncio.create_task(subscriber(0))
        await asyncio.sleep(0.3)
        others = [asyncio.create_task(subscriber(rng.uniform(0, 1.5))) for _ in range(19)]
        await publish()
        results = [await first] + [await task for task in others]

    for client, messages in enumerate(results):
        for symbol in symbols:
            trades = [m for m in messages if m["T"] == "t" and m["S"] == symbol]
            assert trades, f"client {client} got no {symbol} trade"
            for before, after in itertools.pairwise(trades):
                assert after["cn"] == before["cn"] + after["n"], (client, symbol, before, after)
                assert after["cv"] == before["cv"] + after["v"]
                assert after["i"] > before["i"]
            assert trades[-1]["i"] == published[symbol][-1][0]
            assert trades[-1]["cv"] == sum(size for _, size in published[symbol])
            quotes = [m["i"] for m in messages if m["T"] == "q" and m["S"] == symbol]
            assert quotes == sorted(set(quotes))
            assert quotes[-1] == last_quote[symbol]
    for symbol in symbols:
        trades = [m for m in results[0] if m["T"] == "t" and m["S"] == symbol]
        assert sum(m["v"] for m in trades) == sum(size for _, size in published[symbol])
        assert sum(m["n"] for m in trades) == total // 2


@pytest.mark.parametrize(
    ("subscribed", "routing"),
    [(["AAPL", "MSFT"], "pull"), (["AAPL", "MSFT", "IBM", "ORCL", "SAP"], "push")],
)
async def test_an_unsubscribe_between_two_chunks_of_a_distribution_drops_the_waiting_update(
    start_server, memory_bus, monkeypatch, subscribed, routing
):
    """A tick is served one client per chunk (``_FLUSH_CHUNK`` = 1), yielding in between.
    Client B unsubscribes AAPL after the tick was routed but before B's chunk: B's ack comes,
    and no AAPL quote after it; A, served first, still gets the quote; B keeps MSFT. Both
    routings: the tick changes every key A and B name (pulled by getters), or 2 of 5
    (pushed per update)."""
    monkeypatch.setattr(fanout.server, "_FLUSH_CHUNK", 1)
    server = await start_server(interval_ms=50)
    async with asyncio.timeout(20):
        a = await open_client(server, token=stream_token())
        b = await open_client(server, token=stream_token())
        for ws in (a, b):
            await send(ws, action="subscribe", quotes=subscribed)
            assert (await recv_json(ws))[0]["T"] == "subscription"
        client_b = max(server._clients, key=lambda c: c.id)
        flush = server._flush
        interrupted = []

        def flush_with_unsubscribe(routes, work, table, updates, fragments, now_ns):
            if any(client is client_b for client, _ in work) and not interrupted:
                interrupted.append("pull" if table is not None else "push")
                unsubscribe = Unsubscribe({Channel.QUOTES: ("AAPL",)})
                server._change_subscription(client_b, unsubscribe)
            flush(routes, work, table, updates, fragments, now_ns)

        monkeypatch.setattr(server, "_flush", flush_with_unsubscribe)
        await memory_bus.publish_many(
            MD_QUOTES, [record("AAPL", quote("AAPL", 1)), record("MSFT", quote("MSFT", 2))]
        )
        got_a = await messages_until(a, lambda m: len(m) >= 2)
        assert sorted((m["S"], m["i"]) for m in got_a) == [("AAPL", 1), ("MSFT", 2)]
        got_b: list[dict] = []
        while len(got_b) < 2:  # the ack and the quote queue together: one frame or two
            got_b += await recv_json(b)
        assert interrupted == [routing]
        assert got_b[0] == {
            "T": "subscription",
            "trades": [],
            "quotes": sorted(set(subscribed) - {"AAPL"}),
            "bars": [],
            "statuses": [],
        }
        assert [(m["S"], m["i"]) for m in got_b[1:]] == [("MSFT", 2)]
        with pytest.raises(TimeoutError):
            await recv_json(b, timeout=0.3)
        await a.close()
        await b.close()


async def test_a_busy_tick_and_a_partial_tick_give_every_client_exactly_its_share(
    start_server, memory_bus
):
    """A's named quotes AAPL, MSFT and trades AAPL; B quotes '*'; C trades MSFT. Tick 1 has
    an update for every named key (served by each client's getter), tick 2 only an AAPL
    quote (served per update): each client gets exactly its subscriptions' updates, once."""
    server = await start_server(interval_ms=100)
    async with asyncio.timeout(20):
        a = await open_client(server, token=stream_token())
        b = await open_client(server, token=stream_token())
        c = await open_client(server, token=stream_token())
        for ws, subscription in (
            (a, {"quotes": ["AAPL", "MSFT"], "trades": ["AAPL"]}),
            (b, {"quotes": ["*"]}),
            (c, {"trades": ["MSFT"]}),
        ):
            await send(ws, action="subscribe", **subscription)
            assert (await recv_json(ws))[0]["T"] == "subscription"
        await memory_bus.publish_many(
            MD_QUOTES,
            [record("AAPL", quote("AAPL", 1)), record("MSFT", quote("MSFT", 2))],
        )
        await memory_bus.publish_many(
            MD_TRADES,
            [record("AAPL", trade("AAPL", 3)), record("MSFT", trade("MSFT", 4))],
        )

        def shares(messages: list[dict]) -> list[tuple[str, str, int]]:
            return sorted((m["T"], m["S"], m["i"]) for m in messages)

        assert shares(await messages_until(a, lambda m: len(m) >= 3)) == [
            ("q", "AAPL", 1),
            ("q", "MSFT", 2),
            ("t", "AAPL", 3),
        ]
        assert shares(await messages_until(b, lambda m: len(m) >= 2)) == [
            ("q", "AAPL", 1),
            ("q", "MSFT", 2),
        ]
        assert shares(await messages_until(c, lambda m: len(m) >= 1)) == [("t", "MSFT", 4)]
        await memory_bus.publish(MD_QUOTES, *record("AAPL", quote("AAPL", 5)))
        assert shares(await messages_until(a, lambda m: len(m) >= 1)) == [("q", "AAPL", 5)]
        assert shares(await messages_until(b, lambda m: len(m) >= 1)) == [("q", "AAPL", 5)]
        for ws in (a, b, c):
            with pytest.raises(TimeoutError):
                await recv_json(ws, timeout=0.3)  # nothing more, no duplicate
            await ws.close()
