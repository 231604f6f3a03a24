"""``tickerplant demo``: the whole system on one machine, on the embedded defaults.

Starts (or connects to) PostgreSQL, applies migrations, creates the demo user, opens the
bus with every topic, and serves the HTTP API; then waits for Ctrl-C and stops everything
in reverse order, the embedded PostgreSQL last. Each component issue adds its processes
here, so the demo always runs end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
import uvicorn

from candles.dataflow import BusBridge
from candles.service import run_dataflow
from exchange_sim import run_exchange_sim
from fanout.auth import PoolAuthenticator
from fanout.server import FanoutServer
from ingest.service import FeedIngest
from normalize.fast import make_normalizer
from normalize.session import exchange_today, midnight_ns
from tickerplant.api import create_app
from tickerplant.bus import make_bus
from tickerplant.db import connect, describe_dsn, migrate, open_async_pool, resolve_database_url
from tickerplant.identity import (
    Role,
    UserExistsError,
    create_user,
    issue_token,
    revoke_user_tokens,
)
from tickerplant.observability import Health, new_registry
from tickerplant.settings import Settings
from tickerplant.topics import ALL_TOPICS

log = logging.getLogger(__name__)

DEMO_USER = "demo"


@dataclass(frozen=True)
class DemoInfo:
    """What the demo prints once everything is up."""

    api_url: str
    database: str
    bus: str
    feed: str
    stream_url: str
    user: str
    token: str

    def lines(self) -> list[str]:
        return [
            "tickerplant demo is running",
            f"  market page  {self.api_url}/#token={self.token}  (open in a browser)",
            f"  API          {self.api_url}/docs  (OpenAPI: {self.api_url}/openapi.json)",
            f"  health       {self.api_url}/healthz",
            f"  metrics      {self.api_url}/metrics",
            f"  who am I     curl -H 'Authorization: Bearer {self.token}' {self.api_url}/v1/me",
            f"  database     {self.database}",
            f"  bus          {self.bus}",
            f"  feed         {self.feed}",
            f"  stream       {self.stream_url}  (send "
            f'{{"action":"auth","token":"{self.token}"}} then '
            '{"action":"subscribe","quotes":["*"],"trades":["*"]})',
            f"  demo user    {self.user} (role trader), token {self.token}",
            "Press Ctrl-C to stop.",
        ]


def demo_token(conn: psycopg.Connection) -> str:
    """A fresh token for the demo user, created on first run; earlier demo tokens are revoked."""
    try:
        _, token = create_user(conn, DEMO_USER, Role.TRADER)
    except UserExistsError:
        with conn.transaction():
            revoke_user_tokens(conn, DEMO_USER)
            token = issue_token(conn, DEMO_USER)
    return token


async def _report_progress(ingest: FeedIngest, *, every_s: float = 10.0) -> None:
    """Log the plant's counts every ``every_s`` so a newcomer sees it working."""
    while True:
        await asyncio.sleep(every_s)
        recovery = ingest.pipeline.recoverer.stats
        normalized = ingest.pipeline.normalizer.stats
        log.info(
            "plant: %d messages in sequence, %d trades, %d quotes, %d statuses; "
            "%d gaps (%d recovered), %d records published",
            recovery.messages,
            normalized.trades,
            normalized.quotes,
            normalized.statuses,
            recovery.gaps,
            recovery.recovered,
            ingest.published,
        )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the demo owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def run_demo(
    settings: Settings,
    *,
    announce: Callable[[DemoInfo], None],
    until: Callable[[], Awaitable[object]],
) -> None:
    """Run the demo until ``until()`` completes (the CLI passes a wait for SIGINT/SIGTERM)."""
    async with contextlib.AsyncExitStack() as stack:
        dsn, embedded = await asyncio.to_thread(resolve_database_url, settings)
        if embedded is not None:
            stack.callback(embedded.stop)
        applied = await asyncio.to_thread(migrate, dsn)
        log.info("database ready: %d migration(s) applied", len(applied))
        with connect(dsn) as conn:
            token = demo_token(conn)

        bus = make_bus(settings)
        await bus.start()
        stack.push_async_callback(bus.close)
        for topic in ALL_TOPICS:
            await bus.create_topic(topic, settings.kafka.partitions)

        pool = await open_async_pool(dsn)
        stack.push_async_callback(pool.close)

        registry = new_registry("demo")
        health = Health()
        health.add("database", lambda: "connection pool closed" if pool.closed else None)

        # The ticker plant: the exchange simulator multicasts on loopback (TTL 0), ingest
        # recovers and normalizes the feed onto the bus.
        normalizer = make_normalizer(midnight_ns=midnight_ns(exchange_today(time.time())))
        ingest = FeedIngest(settings.feed, bus, normalizer, registry=registry)
        await ingest.start()
        stack.push_async_callback(ingest.stop)
        health.add("feed", ingest.health_problem)
        stop_sim = asyncio.Event()
        sim = asyncio.create_task(
            run_exchange_sim(settings=settings, linger=0.0, stop=stop_sim), name="exchange-sim"
        )

        async def stop_simulator() -> None:
            stop_sim.set()
            await sim

        stack.push_async_callback(stop_simulator)
        # The stream: conflated market data to WebSocket subscribers, same bearer tokens.
        stream = FanoutServer(
            bus,
            PoolAuthenticator(
                pool, secret=settings.token_secret, cache_s=settings.fanout.auth_cache_s
            ),
            settings=settings.fanout,
            conflate=settings.conflate,
            registry=registry,
            health=health,
        )
        await stream.start()
        stack.push_async_callback(stream.stop)
        # Candles: the Bytewax dataflow runs on a worker thread and reaches the demo's bus
        # through a bridge to this loop; bars go to PostgreSQL and md.bars (the stream).
        candles_stop = threading.Event()
        candles = asyncio.create_task(
            asyncio.to_thread(
                run_dataflow,
                BusBridge(bus, loop=asyncio.get_running_loop()),
                settings=settings,
                dsn=dsn,
                stop=candles_stop,
            ),
            name="candles",
        )

        async def stop_candles() -> None:
            candles_stop.set()
            await candles

        stack.push_async_callback(stop_candles)
        progress = asyncio.create_task(_report_progress(ingest), name="demo-progress")
        stack.callback(progress.cancel)
        app = create_app(
            pool=pool,
            registry=registry,
            health=health,
            stream_url=stream.url,
            token_secret=settings.token_secret,
        )
        sock = _bind(settings.http.host, settings.http.port)
        server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))

        async def stop_server() -> None:
            server.should_exit = True
            await serving
            sock.close()

        stack.push_async_callback(stop_server)
        while not server.started:
            if serving.done():
                serving.result()  # re-raises why uvicorn could not start
            await asyncio.sleep(0.05)

        host, port = sock.getsockname()[:2]
        announce(
            DemoInfo(
                api_url=f"http://{host}:{port}",
                database=("embedded PostgreSQL, " if embedded else "") + describe_dsn(dsn),
                bus=(
                    f"Kafka at {settings.kafka_bootstrap}"
                    if settings.kafka_bootstrap
                    else "in-memory"
                ),
                feed=(
                    f"exchange-sim {settings.exchange_sim.symbols} symbols from "
                    f"{settings.exchange_sim.start_at} at speed {settings.exchange_sim.speed} -> "
                    f"MoldUDP64 {settings.feed.group}:{settings.feed.port} via "
                    f"{settings.feed.interface} (TTL {settings.feed.ttl}) -> ingest -> "
                    "md.trades, md.quotes, md.status"
                ),
                stream_url=stream.url,
                user=DEMO_USER,
                token=token,
            )
        )
        await until()
        log.info("stopping the demo")
