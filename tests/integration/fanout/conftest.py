"""A fanout server on 127.0.0.1 (free port) over a ``MemoryBus``, and a small JSON client."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from websockets.asyncio.client import ClientConnection, connect

from fanout import FanoutServer, PoolAuthenticator, issue_stream_token
from tickerplant.bus import MemoryBus
from tickerplant.identity import Role, User, UserId
from tickerplant.settings import ConflateSettings, FanoutSettings

SECRET = "fanout-test-secret"
ANN = User(UserId(7), "ann", Role.TRADER, datetime(2024, 1, 1, tzinfo=UTC))
PRO = User(UserId(8), "pat", Role.QUANT, datetime(2024, 1, 1, tzinfo=UTC))  # may use realtime


def stream_token(user: User = ANN) -> str:
    return issue_stream_token(SECRET, user, now_s=time.time(), ttl_s=300)


@pytest.fixture
async def memory_bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus(partitions=3) as bus:
        yield bus


ServerFactory = Callable[..., Awaitable[FanoutServer]]


@pytest.fixture
async def start_server(memory_bus: MemoryBus) -> AsyncIterator[ServerFactory]:
    """``await start_server(interval_ms=50, pool=None, **fanout_settings)``: a running server."""
    servers: list[FanoutServer] = []

    async def start(*, interval_ms: int = 50, pool=None, **fanout: object) -> FanoutServer:
        server = FanoutServer(
            memory_bus,
            PoolAuthenticator(pool, secret=SECRET),
            settings=FanoutSettings(port=0, **fanout),
            conflate=ConflateSettings(interval_ms=interval_ms),
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> list[dict]:
    import asyncio

    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def open_client(
    server: FanoutServer, *, token: str | None = None, query: str = "", **kwargs: object
) -> ClientConnection:
    """Connect, read the ``connected`` greeting, and authenticate when ``token`` is given."""
    ws = await connect(server.url + query, open_timeout=10, **kwargs)
    assert await recv_json(ws) == [{"T": "success", "msg": "connected"}]
    if token is not None:
        await ws.send(json.dumps({"action": "auth", "token": token}))
        assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
    return ws


async def send(ws: ClientConnection, **message: object) -> None:
    await ws.send(json.dumps(message))


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (polled every 10 ms); fail after ``timeout``."""
    import asyncio

    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
