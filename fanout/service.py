"""``tickerplant fanout``: the WebSocket stream server as a process.

Reads the bus (``make_bus``: Kafka when configured, else in-memory), authenticates with
the API tokens in PostgreSQL (``TP_DATABASE_URL``, else the embedded server) and with
signed stream tokens (``token_secret``). ``/metrics`` and ``/healthz`` are served on the
stream's own port. Several processes can run side by side: each reads the whole bus and
keeps no shared state, so a load balancer can spread subscribers across them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from fanout.auth import PoolAuthenticator
from fanout.server import FanoutServer
from tickerplant.bus import Bus, make_bus
from tickerplant.observability import Health, new_registry
from tickerplant.runtime import tune_gc_for_latency
from tickerplant.settings import Settings

logger = logging.getLogger(__name__)


async def run_fanout(
    settings: Settings,
    *,
    until: Callable[[], Awaitable[object]],
    bus: Bus | None = None,
    database_url: str | None = None,
    announce: Callable[[str], None] = logger.info,
) -> None:
    """Serve the stream until ``until()`` returns.

    ``bus``: an already started bus to read (the demo's ``MemoryBus``); otherwise one is
    made from ``settings`` and closed at the end. ``database_url``: the PostgreSQL holding
    the API tokens (default ``settings.database_url``; with neither, only signed stream
    tokens authenticate).
    """
    from tickerplant.db import open_async_pool

    registry = new_registry("fanout")
    health = Health()
    async with contextlib.AsyncExitStack() as stack:
        if bus is None:
            bus = make_bus(settings)
            await bus.start()
            stack.push_async_callback(bus.close)
        dsn = database_url or settings.database_url
        pool = None
        if dsn:
            pool = await open_async_pool(dsn, min_size=1, max_size=4, name="fanout-auth")
            stack.push_async_callback(pool.close)
        authenticator = PoolAuthenticator(
            pool, secret=settings.token_secret, cache_s=settings.fanout.auth_cache_s
        )
        server = FanoutServer(
            bus,
            authenticator,
            settings=settings.fanout,
            conflate=settings.conflate,
            registry=registry,
            health=health,
        )
        await server.start()
        stack.push_async_callback(server.stop)
        tune_gc_for_latency()
        base = server.url.removesuffix(settings.fanout.path).replace("ws", "http", 1)
        announce(
            f"fanout streaming on {server.url} (tiers {', '.join(server.tiers.tiers)}); "
            f"metrics {base}/metrics"
        )
        await until()
