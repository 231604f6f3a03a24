# ruff: noqa: E501  (tables of exact error messages read best one case per line)
"""Every documented error code, reached by a real client over a real socket."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.fanout.conftest import (
    PRO,
    eventually,
    open_client,
    recv_json,
    send,
    stream_token,
)

pytestmark = pytest.mark.timeout(60)


async def closed_with(ws) -> tuple[int, str]:
    """Read until the server closes; the close code and reason."""
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                await ws.recv()
    return caught.value.rcvd.code, caught.value.rcvd.reason


async def test_subscribing_before_auth_is_401_and_the_socket_stays_open(start_server):
    """401 not authenticated; a later auth still works."""
    server = await start_server()
    async with asyncio.timeout(10):
        ws = await open_client(server)
        await send(ws, action="subscribe", trades=["AAPL"])
        assert await recv_json(ws) == [{"T": "error", "code": 401, "msg": "not authenticated"}]
        await send(ws, action="auth", token=stream_token())
        assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
        await ws.close()


async def test_a_bad_token_is_402_and_closes_with_4402(start_server):
    """An unknown token: error 402, then close code 4402 'auth failed'."""
    server = await start_server()
    async with asyncio.timeout(10):
        ws = await open_client(server)
        await send(ws, action="auth", token="tps_forged.AAAA")
        assert await recv_json(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        assert await closed_with(ws) == (4402, "auth failed")


async def test_authenticating_twice_is_403(start_server):
    """403 already authenticated; the connection stays usable."""
    server = await start_server()
    async with asyncio.timeout(10):
        ws = await open_client(server, token=stream_token())
        await send(ws, action="auth", token=stream_token())
        assert await recv_json(ws) == [{"T": "error", "code": 403, "msg": "already authenticated"}]
        await send(ws, action="subscribe", quotes=["AAPL"])
        assert (await recv_json(ws))[0]["quotes"] == ["AAPL"]
        await ws.close()


async def test_no_auth_within_the_timeout_is_404_and_closes_with_4404(start_server):
    """auth_timeout_s=0.3: error 404 'auth timeout: no auth within 0.3s', close 4404."""
    server = await start_server(auth_timeout_s=0.3)
    async with asyncio.timeout(10):
        ws = await open_client(server)
        assert await recv_json(ws) == [
            {"T": "error", "code": 404, "msg": "auth timeout: no auth within 0.3s"}
        ]
        assert await closed_with(ws) == (4404, "auth timeout: no auth within 0.3s")
        await eventually(lambda: server.connections == 0)


async def test_too_many_symbols_is_405_and_nothing_is_added(start_server):
    """max_symbols=3: subscribing four is refused whole; the set stays as it was."""
    server = await start_server(max_symbols=3)
    async with asyncio.timeout(10):
        ws = await open_client(server, token=stream_token())
        await send(ws, action="subscribe", trades=["A", "B", "C", "D"])
        assert await recv_json(ws) == [
            {
                "T": "error",
                "code": 405,
                "msg": "symbol limit exceeded: 4 subscriptions requested, at most 3 per connection",
            }
        ]
        await send(ws, action="subscribe", trades=["A"])
        assert (await recv_json(ws))[0] == {
            "T": "subscription",
            "trades": ["A"],
            "quotes": [],
            "bars": [],
            "statuses": [],
        }
        await ws.close()


async def test_one_connection_too_many_is_406_and_closes_with_4406(start_server):
    """max_connections=2: the third socket gets 406 and close 4406; the first two stay."""
    server = await start_server(max_connections=2)
    async with asyncio.timeout(10):
        first = await open_client(server)
        second = await open_client(server)
        from websockets.asyncio.client import connect

        third = await connect(server.url)
        assert await recv_json(third) == [
            {"T": "error", "code": 406, "msg": "connection limit exceeded: at most 2 connections"}
        ]
        assert await closed_with(third) == (
            4406,
            "connection limit exceeded: at most 2 connections",
        )
        assert server.connections == 2
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("not json", {"T": "error", "code": 400, "msg": "invalid syntax: not valid JSON"}),
        (b"\x00\x01", {"T": "error", "code": 400, "msg": "invalid syntax: binary frames are not accepted; send JSON text"}),
        ('{"action":"subscribe","trades":"AAPL"}', {"T": "error", "code": 410, "msg": "invalid subscribe action: 'trades' must be a list of symbols"}),
    ],
)  # fmt: skip
async def test_malformed_frames_get_400_or_410_and_the_connection_survives(
    start_server, frame, expected
):
    """Each bad frame is answered with its error; the next valid message works."""
    server = await start_server()
    async with asyncio.timeout(10):
        ws = await open_client(server, token=stream_token())
        await ws.send(frame)
        assert await recv_json(ws) == [expected]
        await send(ws, action="subscribe", bars=["AAPL"])
        assert (await recv_json(ws))[0]["bars"] == ["AAPL"]
        await ws.close()


async def test_too_many_messages_get_one_429_per_second_and_are_dropped(start_server):
    """rate 1/s, burst 2: of 10 subscribes at once, 2 are answered and one 429 is sent."""
    server = await start_server(rate_per_s=1.0, rate_burst=2)
    async with asyncio.timeout(10):
        ws = await open_client(server)  # the auth message would spend a token
        for symbol in "ABCDEFGHIJ":
            await send(ws, action="subscribe", quotes=[symbol])
        replies = []
        while len(replies) < 3:
            replies += await recv_json(ws)
        assert [r.get("code") for r in replies] == [401, 401, 429]
        assert replies[2]["msg"] == "rate limit exceeded: at most 1 messages/s"
        with pytest.raises(TimeoutError):
            await recv_json(ws, timeout=0.3)
        await ws.close()


async def test_a_frame_over_the_size_limit_closes_only_that_client_with_1009(start_server):
    """max_frame_bytes=1024: a 2 KB frame closes its sender (1009); another client is fine."""
    server = await start_server(max_frame_bytes=1024)
    async with asyncio.timeout(10):
        good = await open_client(server, token=stream_token())
        bad = await open_client(server)
        await bad.send(json.dumps({"action": "auth", "token": "x" * 2048}))
        assert (await closed_with(bad))[0] == 1009
        await send(good, action="subscribe", quotes=["AAPL"])
        assert (await recv_json(good))[0]["T"] == "subscription"
        await good.close()


async def test_an_unknown_tier_is_400_and_a_known_one_is_accepted(start_server):
    """?tier=5s is refused naming the tiers; ?tier=realtime connects (for a quant)."""
    server = await start_server()
    async with asyncio.timeout(10):
        from websockets.asyncio.client import connect

        ws = await connect(server.url + "?tier=5s")
        assert await recv_json(ws) == [
            {
                "T": "error",
                "code": 400,
                "msg": "invalid syntax: unknown tier '5s': expected one of 50ms, realtime, 1s",
            }
        ]
        assert (await closed_with(ws))[0] == 4400
        ok = await open_client(server, token=stream_token(PRO), query="?tier=realtime")
        await ok.close()


async def test_the_realtime_tier_refuses_a_trader_with_409_and_admits_a_quant(start_server):
    """Unconflated prices are for professional roles (``tier_roles``, default quant and
    admin): a trader's auth on ?tier=realtime gets 409 and close code 4409; the same trader
    on the default tier and a quant on realtime are authenticated."""
    server = await start_server()
    async with asyncio.timeout(10):
        from websockets.asyncio.client import connect

        ws = await connect(server.url + "?tier=realtime")
        assert (await recv_json(ws))[0]["msg"] == "connected"
        await send(ws, action="auth", token=stream_token())
        assert await recv_json(ws) == [
            {
                "T": "error",
                "code": 409,
                "msg": "insufficient subscription: the realtime tier needs role admin or quant",
            }
        ]
        assert await closed_with(ws) == (
            4409,
            "insufficient subscription: the realtime tier needs role admin or quant",
        )
        trader = await open_client(server, token=stream_token())
        quant = await open_client(server, token=stream_token(PRO), query="?tier=realtime")
        await send(quant, action="subscribe", quotes=["AAPL"])
        assert (await recv_json(quant))[0]["T"] == "subscription"
        await trader.close()
        await quant.close()
