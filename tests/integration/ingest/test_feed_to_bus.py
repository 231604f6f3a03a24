"""The ticker plant end to end: exchange-sim → multicast → ingest → normalize → bus → consumer.

The simulator drops, duplicates and reorders live packets; the consumer must still receive
exactly the trades and quotes that a loss-free run produces (the simulator's own ITCH file,
normalized directly), none missing and none twice.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from exchange_sim import run_exchange_sim
from ingest.sequencer import GapRecoverer
from ingest.service import FeedIngest
from normalize.itchfile import iter_messages
from normalize.normalizer import Normalizer, batch_records
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import MemoryBus, PublishError
from tickerplant.settings import ExchangeSimSettings, FeedSettings, Settings
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

pytestmark = [pytest.mark.multicast, pytest.mark.slow]

MIDNIGHT_NS = 1_732_078_800_000_000_000
MESSAGES = 30_000


def payloads(records) -> dict[tuple[str, bytes], list[bytes]]:
    """Events per (topic, symbol) in order, as bytes without the plant's own timestamps."""
    out: dict[tuple[str, bytes], list[bytes]] = {}
    for topic, key, value in records:
        for event in pb.EventBatch.FromString(value).events:
            payload = getattr(event, event.WhichOneof("payload"))
            payload.receive_ts_ns = 0
            payload.publish_ts_ns = 0
            out.setdefault((topic, key), []).append(payload.SerializeToString())
    return out


def loss_free(path) -> dict[tuple[str, bytes], list[bytes]]:
    normalizer = Normalizer(midnight_ns=MIDNIGHT_NS, session="TPTEST0001")
    for seq, message in enumerate(iter_messages(path), start=1):
        normalizer.process(message, seq=seq, receive_ts_ns=0)
    return payloads(batch_records(normalizer.take_events(publish_ts_ns=0)))


async def test_the_consumer_gets_exactly_the_loss_free_events_despite_loss_dups_and_reordering(
    private_netns, bus, tmp_path
):
    """3% drops, 2% duplicates, 2% reorders: every trade and quote arrives once, in order."""
    rng = random.Random()
    settings = Settings(
        feed=FeedSettings(
            port=rng.randrange(20_000, 30_000), rerequest_port=rng.randrange(30_000, 40_000)
        ),
        exchange_sim=ExchangeSimSettings(symbols=20, seed=11, session="TPTEST0001"),
    )
    for topic in (MD_TRADES, MD_QUOTES, MD_STATUS):
        await bus.create_topic(topic, 3)
    subscription = await bus.subscribe([MD_TRADES, MD_QUOTES, MD_STATUS], start="latest")
    normalizer = Normalizer(midnight_ns=MIDNIGHT_NS, session="TPTEST0001")
    ingest = FeedIngest(settings.feed, bus, normalizer)
    await ingest.start()
    itch_file = tmp_path / "sent.itch"
    try:
        async with asyncio.timeout(120):
            stats = await run_exchange_sim(
                settings=settings,
                messages=MESSAGES,
                speed=0,
                out_file=itch_file,
                drop_rate=0.03,
                duplicate_rate=0.02,
                reorder_rate=0.02,
                linger=0.5,
            )
            while ingest.pipeline.stats.end_of_session == 0:
                await asyncio.sleep(0.05)
    finally:
        await ingest.stop()

    expected = loss_free(itch_file)
    published = sum(len(v) for v in expected.values())
    received: list[tuple[str, bytes, bytes]] = []
    async with asyncio.timeout(60):
        while sum(len(v) for v in payloads(received).values()) < published:
            batch = await subscription.next_batch(timeout=1.0)
            received += [(r.topic, r.key, r.value) for r in batch]
        received += [(r.topic, r.key, r.value) for r in await subscription.next_batch(timeout=0.5)]
    await subscription.close()

    recovery = ingest.pipeline.recoverer.stats
    assert stats.messages == MESSAGES and stats.dropped_packets > 0
    assert recovery.gaps > 0 and recovery.recovered == recovery.gaps
    assert recovery.unrecoverable == 0
    assert recovery.messages == MESSAGES
    assert payloads(received) == expected
    trades = sum(len(v) for (topic, _), v in expected.items() if topic == MD_TRADES)
    quotes = sum(len(v) for (topic, _), v in expected.items() if topic == MD_QUOTES)
    print(
        f"\n  {MESSAGES} messages, {stats.dropped_packets} packets dropped, "
        f"{recovery.gaps} gaps recovered: {trades} trades, {quotes} quotes identical"
    )


async def test_with_the_rerequest_server_down_every_symbol_is_marked_stale_on_the_bus(
    private_netns, tmp_path
):
    """Drops with no retransmission: a FEED_STALE status per announced symbol reaches md.status,
    naming the lost range, and no quote for a stale symbol follows it."""
    rng = random.Random()
    settings = Settings(
        feed=FeedSettings(
            port=rng.randrange(20_000, 30_000), rerequest_port=rng.randrange(30_000, 40_000)
        ),
        exchange_sim=ExchangeSimSettings(symbols=5, seed=3, session="TPTEST0002"),
    )
    bus = MemoryBus(partitions=1)
    await bus.start()
    for topic in (MD_TRADES, MD_QUOTES, MD_STATUS):
        await bus.create_topic(topic, 1)
    subscription = await bus.subscribe([MD_QUOTES, MD_STATUS], start="latest")
    normalizer = Normalizer(midnight_ns=MIDNIGHT_NS, session="TPTEST0002")
    recoverer = GapRecoverer(request_timeout_ns=50_000_000, max_retries=1)
    ingest = FeedIngest(settings.feed, bus, normalizer, recoverer=recoverer)
    await ingest.start()
    try:
        async with asyncio.timeout(60):
            await run_exchange_sim(
                settings=settings,
                messages=5_000,
                speed=0,
                drop_rate=0.05,
                rerequest=False,
                linger=0.5,
            )
            while ingest.pipeline.stats.end_of_session == 0:
                await asyncio.sleep(0.05)
    finally:
        await ingest.stop()
    events = []
    while batch := await subscription.next_batch(timeout=0.5):
        for r in batch:
            for event in pb.EventBatch.FromString(r.value).events:
                events.append(getattr(event, event.WhichOneof("payload")))
    await bus.close()

    stale = [e for e in events if isinstance(e, pb.Status) and e.kind == pb.STATUS_KIND_FEED_STALE]
    assert ingest.pipeline.recoverer.stats.unrecoverable > 0
    assert sorted(s.symbol for s in stale) == sorted(normalizer.symbols().values())
    assert all(s.reason.endswith("of session TPTEST0002 could not be recovered") for s in stale)
    first_stale = events.index(stale[0])
    assert not [e for e in events[first_stale:] if isinstance(e, pb.Quote)]


class RefusingBus(MemoryBus):
    """A real in-memory bus whose first ``refusals`` publishes fail, as a down broker's do."""

    def __init__(self, refusals: int) -> None:
        super().__init__(partitions=1)
        self.refusals = refusals

    async def publish_many(self, topic, records):
        if self.refusals > 0:
            self.refusals -= 1
            records = list(records)
            raise PublishError(topic, len(records), len(records), "broker unavailable")
        return await super().publish_many(topic, records)


async def test_records_wait_while_the_bus_refuses_them_and_none_is_lost(private_netns, tmp_path):
    """The first 3 publishes fail: ingest reports unhealthy, retries, and the consumer still
    gets exactly the loss-free events."""
    rng = random.Random()
    settings = Settings(
        feed=FeedSettings(
            port=rng.randrange(20_000, 30_000), rerequest_port=rng.randrange(30_000, 40_000)
        ),
        exchange_sim=ExchangeSimSettings(symbols=5, seed=5, session="TPTEST0001"),
    )
    bus = RefusingBus(refusals=3)
    await bus.start()
    for topic in (MD_TRADES, MD_QUOTES, MD_STATUS):
        await bus.create_topic(topic, 1)
    subscription = await bus.subscribe([MD_TRADES, MD_QUOTES, MD_STATUS], start="latest")
    ingest = FeedIngest(
        settings.feed, bus, Normalizer(midnight_ns=MIDNIGHT_NS, session="TPTEST0001")
    )
    await ingest.start()
    problems = []
    itch_file = tmp_path / "sent.itch"
    try:
        async with asyncio.timeout(60):
            sim = asyncio.create_task(
                run_exchange_sim(
                    settings=settings, messages=3_000, speed=0, out_file=itch_file, linger=0.5
                )
            )
            while not sim.done() or ingest.pipeline.stats.end_of_session == 0:
                problems.append(ingest.health_problem())
                await asyncio.sleep(0.01)
            await sim
            while bus.refusals or ingest.health_problem() is not None:
                await asyncio.sleep(0.05)
    finally:
        await ingest.stop()
    received = []
    while batch := await subscription.next_batch(timeout=0.5):
        received += [(r.topic, r.key, r.value) for r in batch]
    await bus.close()

    assert any(p and p.startswith("publishing to md.") for p in problems)
    assert payloads(received) == loss_free(itch_file)
