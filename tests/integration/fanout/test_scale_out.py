"""Horizontal scale: fanout nodes read the bus independently (in-memory and real Kafka)."""

from __future__ import annotations

import asyncio

from fanout import FanoutServer, PoolAuthenticator
from tests.integration.fanout.conftest import SECRET, open_client, recv_json, send, stream_token
from tests.unit.conflate.builders import quote, record
from tickerplant.settings import ConflateSettings, FanoutSettings
from tickerplant.topics import MD_QUOTES, MD_TRADES


async def subscribed_bid(ws, symbol: str) -> float:
    """Subscribe to ``symbol``'s quotes; the bid of the first quote (the snapshot)."""
    await send(ws, action="subscribe", quotes=[symbol])
    while True:
        for message in await recv_json(ws, timeout=15):
            if message["T"] == "q":
                return message["bp"]


async def test_two_nodes_on_one_bus_serve_the_same_prices_and_a_reconnect_gets_a_snapshot(bus):
    """Nodes A and B each read the bus; a client moving from A to B gets B's snapshot at once."""
    for topic in (MD_QUOTES, MD_TRADES):
        await bus.create_topic(topic, 3)
    nodes = [
        FanoutServer(
            bus,
            PoolAuthenticator(None, secret=SECRET),
            settings=FanoutSettings(port=0),
            conflate=ConflateSettings(interval_ms=50),
        )
        for _ in range(2)
    ]
    for node in nodes:
        await node.start()
    try:
        await asyncio.sleep(0.5)  # both readers are at the tail before anything is published
        await bus.publish(MD_QUOTES, *record("AAPL", quote("AAPL", 1, bid=1_234_500)))
        on_a = await open_client(nodes[0], token=stream_token())
        bid_on_a = await subscribed_bid(on_a, "AAPL")
        await on_a.close()
        on_b = await open_client(nodes[1], token=stream_token())
        bid_on_b = await subscribed_bid(on_b, "AAPL")
        await on_b.close()
    finally:
        for node in nodes:
            await node.stop()
    assert bid_on_a == bid_on_b == 123.45
