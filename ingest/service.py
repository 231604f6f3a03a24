"""``tickerplant ingest``: multicast feed in, normalized Protobuf records out on the bus.

Sockets and the bus only move bytes; ``FeedPipeline`` decides. One process owns a shard
of the symbols (``stock_locate % shards == shard``); N processes on N cores all join the
same group and each publishes only its symbols, so per-symbol order holds on the bus.

Two UDP sockets feed the pipeline: the multicast group (live packets) and a unicast
socket on the feed interface whose re-requests the exchange answers to the same socket.
Records are handed to a publisher task through a queue, so a slow broker delays publishing
but never the reading of packets (the kernel's receive buffer is the only other buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import fields
from datetime import date

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.moldudp64 import Request, encode_request
from ingest.multicast import open_receiver
from ingest.pipeline import FeedPipeline, OutRecord
from ingest.sequencer import GapRecoverer
from normalize.fast import FastNormalizer, make_normalizer
from normalize.normalizer import LocateShard, Normalizer
from normalize.session import midnight_ns
from tickerplant.bus import Bus, BusError, make_bus
from tickerplant.observability import Health, MetricsServer, new_registry
from tickerplant.runtime import tune_gc_for_latency
from tickerplant.settings import FeedSettings, Settings
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

logger = logging.getLogger(__name__)

# How often re-request timeouts are checked when no packet arrives.
_TIMER_INTERVAL_S = 0.01
# How long a stopping process keeps retrying a failing bus before it gives up on a batch.
_STOP_PUBLISH_GRACE_S = 10.0


class _FeedProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, bool], None], *, retransmission: bool) -> None:
        self._on_datagram = on_datagram
        self._retransmission = retransmission

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data, self._retransmission)

    def error_received(self, exc: Exception) -> None:
        logger.warning("feed socket error: %s", exc)


# Normalizer stats that are levels, not totals.
_GAUGES = frozenset({"stale_symbols"})


def _describe(stat: str) -> str:
    return "Normalizer: " + stat.replace("_", " ")


class IngestMetrics(Collector):
    """Reads the pipeline's plain counters at scrape time (no per-message metric calls)."""

    def __init__(self, pipeline: FeedPipeline, shard: LocateShard) -> None:
        self._pipeline = pipeline
        self._labels = {"shard": f"{shard.index}/{shard.count}"}
        self.last_receive_ts_ns = 0

    def collect(self) -> Iterable:
        recovery = self._pipeline.recoverer.stats
        normalized = self._pipeline.normalizer.stats
        pipeline = self._pipeline.stats
        counters = {
            "tp_ingest_datagrams": ("Datagrams read from the feed sockets", pipeline.datagrams),
            "tp_ingest_bad_packets": ("Malformed MoldUDP64 packets skipped", pipeline.bad_packets),
            "tp_ingest_packets": ("MoldUDP64 packets accepted", recovery.packets),
            "tp_ingest_messages": ("Messages delivered in sequence", recovery.messages),
            "tp_ingest_duplicates": ("Duplicate messages dropped", recovery.duplicates),
            "tp_ingest_reordered": ("Messages buffered behind a gap", recovery.reordered),
            "tp_ingest_gaps": ("Sequence gaps detected", recovery.gaps),
            "tp_ingest_recovered": ("Gaps filled by retransmission", recovery.recovered),
            "tp_ingest_unrecoverable": ("Messages declared lost", recovery.unrecoverable),
            "tp_ingest_rerequests": ("Re-requests sent", recovery.requests),
        }
        labels = list(self._labels)
        for name, (documentation, value) in counters.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            family.add_metric(list(self._labels.values()), value)
            yield family
        for stat in fields(normalized):
            value = getattr(normalized, stat.name)
            metric = GaugeMetricFamily if stat.name in _GAUGES else CounterMetricFamily
            family = metric(f"tp_normalize_{stat.name}", _describe(stat.name), labels=labels)
            family.add_metric(list(self._labels.values()), value)
            yield family
        lag = GaugeMetricFamily(
            "tp_ingest_feed_lag_seconds",
            "Receive time minus exchange time of the last message (0 before any)",
            labels=labels,
        )
        exchange_ts = self._pipeline.normalizer.last_exchange_ts_ns
        lag.add_metric(
            list(self._labels.values()),
            (self.last_receive_ts_ns - exchange_ts) / 1e9 if exchange_ts else 0.0,
        )
        yield lag


class FeedIngest:
    """Runs one shard's receive → normalize → publish loop until ``stop()``."""

    def __init__(
        self,
        feed: FeedSettings,
        bus: Bus,
        normalizer: Normalizer | FastNormalizer,
        *,
        shard: LocateShard = LocateShard(0, 1),
        registry: CollectorRegistry | None = None,
        recoverer: GapRecoverer | None = None,
    ) -> None:
        self._feed = feed
        self._bus = bus
        self.pipeline = FeedPipeline(normalizer, recoverer or GapRecoverer())
        self._queue: asyncio.Queue[tuple[int, list[OutRecord]]] = asyncio.Queue()
        self._transports: list[asyncio.DatagramTransport] = []
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._last_datagram_mono_ns: int | None = None
        self._publish_problem: str | None = None
        self.published = 0
        self.metrics = IngestMetrics(self.pipeline, shard)
        self._latency = Histogram(
            "tp_ingest_publish_latency_seconds",
            "Packet receive to bus acknowledgement",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0),
            registry=registry,
        )
        if registry is not None:
            registry.register(self.metrics)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        feed_sock = open_receiver(self._feed.group, self._feed.port, interface=self._feed.interface)
        feed_sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _FeedProtocol(self._on_datagram, retransmission=False), sock=feed_sock
        )
        self._transports.append(transport)
        request_transport, _ = await loop.create_datagram_endpoint(
            lambda: _FeedProtocol(self._on_datagram, retransmission=True),
            local_addr=(self._feed.interface, 0),
            remote_addr=(self._feed.interface, self._feed.rerequest_port),
        )
        self._request_transport = request_transport
        self._transports.append(request_transport)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="ingest-publish"),
            asyncio.create_task(self._timer_loop(), name="ingest-timer"),
        ]
        logger.info(
            "joined %s:%d on %s; re-requests to %s:%d",
            self._feed.group,
            self._feed.port,
            self._feed.interface,
            self._feed.interface,
            self._feed.rerequest_port,
        )

    async def stop(self) -> None:
        """Stop reading, publish what was already normalized, then stop the tasks."""
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def health_problem(self, *, silence_s: float = 5.0) -> str | None:
        """A reason to report unhealthy: the bus refuses records, or no datagram (not even a
        heartbeat) for ``silence_s``."""
        if self._publish_problem is not None:
            return self._publish_problem
        last = self._last_datagram_mono_ns
        if last is None:
            return "no datagram received from the feed yet"
        silent = (time.monotonic_ns() - last) / 1e9
        return f"no datagram from the feed for {silent:.0f}s" if silent > silence_s else None

    def _on_datagram(self, data: bytes, retransmission: bool) -> None:
        received_mono = time.monotonic_ns()
        self._last_datagram_mono_ns = received_mono
        received_wall = time.time_ns()
        requests = self.pipeline.on_datagram(
            data, receive_ts_ns=received_wall, now_ns=received_mono, retransmission=retransmission
        )
        self._send_requests(requests)
        records = self.pipeline.take_records(publish_ts_ns=time.time_ns())
        if records:
            self._queue.put_nowait((received_mono, records))
        self.metrics.last_receive_ts_ns = received_wall

    def _send_requests(self, requests: list[Request]) -> None:
        for request in requests:
            self._request_transport.sendto(encode_request(request))

    async def _timer_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _TIMER_INTERVAL_S)
            if self._transports:
                requests = self.pipeline.on_timer(
                    receive_ts_ns=time.time_ns(), now_ns=time.monotonic_ns()
                )
                self._send_requests(requests)
                records = self.pipeline.take_records(publish_ts_ns=time.time_ns())
                if records:
                    self._queue.put_nowait((time.monotonic_ns(), records))

    async def _publish(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        """Publish, retrying with backoff while the bus fails: records wait, never dropped.

        A failed ``publish_many`` may have written part of the batch, so a retry can
        duplicate records (at-least-once). Once ``stop()`` was called, a bus that keeps
        failing for ``_STOP_PUBLISH_GRACE_S`` makes the batch count as lost, logged.
        """
        delay = 0.1
        failing_since: float | None = None
        while True:
            try:
                self.published += await self._bus.publish_many(topic, items)
            except BusError as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    logger.error(
                        "publishing %d records to %s failed: %s; retrying", len(items), topic, exc
                    )
                self._publish_problem = f"publishing to {topic} failing: {exc}"
                if self._stopping.is_set() and now - failing_since > _STOP_PUBLISH_GRACE_S:
                    logger.error(
                        "gave up publishing %d records to %s at shutdown", len(items), topic
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing_since is not None:
                logger.info("publishing to %s recovered", topic)
            self._publish_problem = None
            return

    async def _publish_loop(self) -> None:
        """Publish queued records in order, one ``publish_many`` per topic per drain."""
        while True:
            if self._queue.empty() and self._stopping.is_set():
                return
            try:
                first = await asyncio.wait_for(self._queue.get(), 0.1)
            except TimeoutError:
                continue
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
            for _, records in batch:
                for topic, key, value in records:
                    by_topic.setdefault(topic, []).append((key, value))
            for topic, items in by_topic.items():
                await self._publish(topic, items)
            done = time.monotonic_ns()
            for received, _ in batch:
                self._latency.observe((done - received) / 1e9)


async def run_ingest(
    settings: Settings,
    *,
    shard: LocateShard,
    session_date: date,
    until: Callable[[], Awaitable[object]],
    announce: Callable[[str], None] = logger.info,
) -> None:
    """``tickerplant ingest``: one shard of the feed onto the bus until ``until()`` returns."""
    registry = new_registry("ingest")
    health = Health()
    async with contextlib.AsyncExitStack() as stack:
        bus = make_bus(settings)
        await bus.start()
        stack.push_async_callback(bus.close)
        for topic in (MD_TRADES, MD_QUOTES, MD_STATUS):
            await bus.create_topic(topic)
        normalizer = make_normalizer(
            midnight_ns=midnight_ns(session_date), shard_index=shard.index, shard_count=shard.count
        )
        ingest = FeedIngest(settings.feed, bus, normalizer, shard=shard, registry=registry)
        await ingest.start()
        stack.push_async_callback(ingest.stop)
        health.add("feed", ingest.health_problem)
        tune_gc_for_latency()
        metrics = MetricsServer(
            registry, health, host=settings.metrics.host, port=settings.metrics.port
        ).start()
        stack.callback(metrics.stop)
        announce(
            f"ingest shard {shard.index}/{shard.count} reading {settings.feed.group}:"
            f"{settings.feed.port} on {settings.feed.interface}; metrics {metrics.url}/metrics"
        )
        await until()
