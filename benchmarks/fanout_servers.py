"""The two servers of ``benchmarks/fanout.py``, each run in its own process.

- ``run_fanout``: ``fanout.FanoutServer`` over a ``MemoryBus`` plus a feeder task on the same
  event loop (the in-memory bus is in-process, so the input has to be made there). The feeder
  publishes Quote and Trade ``EventBatch`` records (key = symbol) at a fixed rate, batched
  per 10 ms tick, each event's ``exchange_ts_ns`` set to ``time.time_ns()`` at publish: the
  ``t`` field of the JSON a client receives is therefore the publish time.
- ``run_raw``: a bare ``websockets`` server with no application logic: every conflation
  interval it builds one frame of the same messages (same JSON shapes and sizes, ``t`` = now)
  and hands it to ``websockets.asyncio.server.broadcast``: the library's ceiling.

Both obey commands on a ``multiprocessing`` connection: ``("feed", seconds)`` runs the input
for ``seconds`` and answers with its statistics; ``("stop",)`` stops the server.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from multiprocessing.connection import Connection

from fanout import FanoutServer, PoolAuthenticator
from fanout.protocol import rfc3339
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import MemoryBus
from tickerplant.runtime import tune_gc_for_latency
from tickerplant.settings import ConflateSettings, FanoutSettings
from tickerplant.topics import MD_QUOTES, MD_TRADES

SECRET = "fanout-benchmark-secret"
SYMBOLS = [f"S{i:03d}" for i in range(100)]
FEED_TICK_S = 0.01
QUOTE_SHARE = 0.75  # of the input updates; the rest are trades


def raise_nofile(limit: int = 65536) -> None:
    """Room for 10,000 sockets in one process (needs root to pass the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Feeder:
    """Reusable protobuf batches per (symbol, channel); each tick rewrites seq, time, price."""

    def __init__(self, rate: int) -> None:
        per_tick = max(1, round(rate * FEED_TICK_S))
        quotes = max(1, round(per_tick * QUOTE_SHARE / len(SYMBOLS)))
        trades = max(1, round(per_tick * (1 - QUOTE_SHARE) / len(SYMBOLS)))
        self.per_tick = (quotes + trades) * len(SYMBOLS)
        self.quotes: list[tuple[bytes, pb.EventBatch]] = []
        self.trades: list[tuple[bytes, pb.EventBatch]] = []
        for symbol in SYMBOLS:
            q = pb.EventBatch(symbol=symbol)
            for _ in range(quotes):
                q.events.add().quote.CopyFrom(
                    pb.Quote(symbol=symbol, bid_size=100, ask_size=200, ask_price=1_000_100)
                )
            t = pb.EventBatch(symbol=symbol)
            for _ in range(trades):
                t.events.add().trade.CopyFrom(pb.Trade(symbol=symbol, size=100))
            self.quotes.append((symbol.encode(), q))
            self.trades.append((symbol.encode(), t))
        self.seq = 0

    def tick(self) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        now = time.time_ns()
        seq = self.seq
        quote_records = []
        for key, batch in self.quotes:
            for event in batch.events:
                seq += 1
                q = event.quote
                q.seq = seq
                q.exchange_ts_ns = now
                q.publish_ts_ns = now
                q.bid_price = 990_000 + seq % 1000
            quote_records.append((key, batch.SerializeToString()))
        trade_records = []
        for key, batch in self.trades:
            for event in batch.events:
                seq += 1
                t = event.trade
                t.seq = seq
                t.exchange_ts_ns = now
                t.publish_ts_ns = now
                t.price = 1_000_000 + seq % 1000
            trade_records.append((key, batch.SerializeToString()))
        self.seq = seq
        return quote_records, trade_records


async def _paced(seconds: float, step) -> dict:
    """Call ``step()`` every ``FEED_TICK_S`` for ``seconds``; a tick more than 100 ms late
    is skipped, not caught up, so the achieved rate shows a feeder that cannot keep up."""
    start = time.monotonic()
    end = start + seconds
    due = start
    ticks = skipped = 0
    busy = 0.0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now - due > 0.1:
            missed = int((now - due) / FEED_TICK_S)
            skipped += missed
            due += missed * FEED_TICK_S
        cpu = time.thread_time()
        await step()
        busy += time.thread_time() - cpu
        ticks += 1
        due += FEED_TICK_S
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    elapsed = time.monotonic() - start
    return {"ticks": ticks, "skipped": skipped, "elapsed_s": elapsed, "cpu_s": busy}


async def _commands(conn: Connection, feed) -> None:
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command[0] == "stop":
            return
        if command[0] == "feed":
            conn.send(await feed(command[1]))


async def _fanout_main(conn: Connection, *, max_connections: int, rate: int, interval_ms: int):
    raise_nofile()
    # Bounded (the service keeps memory_bus_retention records), so RSS under load stays flat.
    async with MemoryBus(retention=50_000) as bus:
        server = FanoutServer(
            bus,
            PoolAuthenticator(None, secret=SECRET),
            settings=FanoutSettings(port=0, max_connections=max_connections),
            conflate=ConflateSettings(interval_ms=interval_ms),
        )
        await server.start()
        feeder = _Feeder(rate)
        # Full (generation 2) collections during the feed: count and time.
        gc_s = [0.0]
        gc_n = [0]
        started = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            elif info["generation"] == 2:
                gc_s[0] += time.perf_counter() - started[0]
                gc_n[0] += 1

        tune_gc_for_latency()  # as ``tickerplant fanout`` does once its server is up
        gc.callbacks.append(on_gc)
        conn.send({"url": server.url})

        async def step() -> None:
            quotes, trades = feeder.tick()
            await bus.publish_many(MD_QUOTES, quotes)
            await bus.publish_many(MD_TRADES, trades)

        async def feed(seconds: float) -> dict:
            gc_s[0] = 0.0
            gc_n[0] = 0
            stats = await _paced(seconds, step)
            stats["gc_s"] = gc_s[0]
            stats["gc_n"] = gc_n[0]
            stats["updates"] = stats["ticks"] * feeder.per_tick
            stats["connections"] = server.connections
            stats["evictions"] = server.evictions
            return stats

        try:
            await _commands(conn, feed)
        finally:
            await server.stop()


def run_fanout(conn: Connection, **kwargs: int) -> None:
    asyncio.run(_fanout_main(conn, **kwargs))


def raw_frame(messages_per_symbol_pair: int, now_ns: int, seq: int) -> str:
    """``messages_per_symbol_pair`` quotes and as many trades, shaped as the stream's."""
    t = rfc3339(now_ns)
    parts = []
    for i in range(messages_per_symbol_pair):
        parts.append(
            f'{{"T":"q","S":"S{i:03d}","bp":99.0{seq % 1000:03d},"bs":100,"ap":100.01,'
            f'"as":200,"t":"{t}","i":{seq + i}}}'
        )
        parts.append(
            f'{{"T":"t","S":"S{i:03d}","p":100.0{seq % 1000:03d},"s":100,"t":"{t}",'
            f'"i":{seq + i},"v":2500,"n":25,"cv":{seq * 100},"cn":{seq}}}'
        )
    return "[" + ",".join(parts) + "]"


async def _raw_main(conn: Connection, *, symbols_per_client: int, interval_ms: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    raise_nofile()

    async def handler(ws) -> None:
        await ws.wait_closed()

    async with serve(
        handler, "127.0.0.1", 0, compression=None, max_queue=16, ping_interval=20
    ) as server:
        port = server.sockets[0].getsockname()[1]
        conn.send({"url": f"ws://127.0.0.1:{port}/"})
        interval = interval_ms / 1000

        async def feed(seconds: float) -> dict:
            start = time.monotonic()
            due = start
            ticks = seq = 0
            while time.monotonic() - start < seconds:
                seq += symbols_per_client
                broadcast(server.connections, raw_frame(symbols_per_client, time.time_ns(), seq))
                ticks += 1
                due += interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            return {
                "ticks": ticks,
                "elapsed_s": time.monotonic() - start,
                "connections": len(server.connections),
            }

        await _commands(conn, feed)


def run_raw(conn: Connection, **kwargs: int) -> None:
    asyncio.run(_raw_main(conn, **kwargs))
