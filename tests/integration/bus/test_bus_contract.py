"""The bus contract: one suite, run against ``MemoryBus`` and ``KafkaBus``.

Every test taking ``bus`` runs twice (``[memory]``, ``[kafka]``; the Kafka run is marked
``kafka`` and needs TP_TEST_KAFKA_BOOTSTRAP). Consumers check for duplicates as well as
losses, and for per-key order.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Sequence

import pytest

from tickerplant.bus import (
    Bus,
    BusNotRunningError,
    BusUnavailableError,
    KafkaBus,
    MemoryBus,
    NoGroupError,
    OffsetOutOfRangeError,
    Record,
    Subscription,
    SubscriptionClosedError,
    TopicPartition,
    UnknownTopicError,
    make_bus,
    partition_for,
)
from tickerplant.settings import KafkaSettings, Settings

# After the expected records, wait this long for any extra (duplicate) one to show up.
QUIET_S = 0.5


async def collect(sub: Subscription, count: int, *, timeout: float = 30.0) -> list[Record]:
    """Exactly ``count`` records from ``sub``, then checks that nothing else arrives within
    ``QUIET_S`` (a duplicate or a stray record would)."""
    got = await collect_at_most(sub, count, timeout=timeout)
    extra = await sub.next_batch(timeout=QUIET_S)
    assert extra == [], f"{len(extra)} records beyond the {count} expected"
    return got


async def collect_at_most(sub: Subscription, count: int, *, timeout: float = 30.0) -> list[Record]:
    """Exactly ``count`` records, never asking for more (the rest stay unread)."""
    got: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got.extend(await sub.next_batch(max_records=count - len(got), timeout=1.0))
    return got


def values_by_key(records: Sequence[Record]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = defaultdict(list)
    for r in records:
        out[r.key].append(r.value)
    return dict(out)


def assert_no_duplicates(records: Sequence[Record]) -> None:
    positions = [(r.topic, r.partition, r.offset) for r in records]
    assert len(set(positions)) == len(positions), "a (partition, offset) was delivered twice"


# -- routing ----------------------------------------------------------------------------------


def test_partition_for_is_crc32_of_the_key_modulo_the_partition_count() -> None:
    """Known keys map to the partitions crc32 gives, on every process and run (no hash())."""
    assert partition_for(b"AAPL", 6) == 3060094812 % 6 == 0
    assert partition_for(b"MSFT", 6) == 3974476411 % 6 == 1
    assert partition_for(b"GOOG", 6) == 2
    assert partition_for(b"TSLA", 6) == 3
    assert partition_for(b"ACCT-42", 6) == 5
    assert partition_for(b"MSFT", 4) == 3
    assert partition_for(b"GOOG", 12) == 8
    assert partition_for(b"", 6) == 0
    assert [partition_for(b"NVDA", n) for n in (1, 4, 6, 12, 1000)] == [0, 3, 1, 7, 911]


async def test_each_key_arrives_in_publish_order_on_its_crc32_partition(
    bus: Bus, topic_name: str
) -> None:
    """Eight keys interleaved over a 4-partition topic, published one by one and in batches:
    every key's values arrive in publish order, each on partition_for(key, 4), none lost or
    duplicated, with offsets counting from 0 per partition."""
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 4)
        assert await bus.partitions(topic_name) == 4
        sub = await bus.subscribe([topic_name], start="earliest")
        keys = [f"SYM{k}".encode() for k in range(8)]
        sent: dict[bytes, list[bytes]] = {k: [] for k in keys}
        before_ms = int(time.time() * 1000)
        for i in range(40):  # one record per publish()
            key = keys[i % 8]
            sent[key].append(f"single-{i}".encode())
            await bus.publish(topic_name, key, sent[key][-1])
        batch = []
        for i in range(400):  # then publish_many
            key = keys[(i * 3) % 8]
            batch.append((key, f"many-{i}".encode()))
            sent[key].append(batch[-1][1])
        assert await bus.publish_many(topic_name, batch) == 400
        after_ms = int(time.time() * 1000)

        got = await collect(sub, 440)
        await sub.close()

    assert_no_duplicates(got)
    assert values_by_key(got) == sent
    assert {r.key: r.partition for r in got} == {k: partition_for(k, 4) for k in keys}
    for p in range(4):
        offsets = sorted(r.offset for r in got if r.partition == p)
        assert offsets == list(range(len(offsets)))
    assert all(before_ms - 1000 <= r.timestamp_ms <= after_ms + 1000 for r in got)
    assert {r.topic for r in got} == {topic_name}


# -- replay, latest, groups -------------------------------------------------------------------


async def test_seeking_to_an_offset_replays_exactly_the_records_from_there_to_the_end(
    bus: Bus, topic_name: str
) -> None:
    """50 records on one partition, all read; seek to 20: the next records are offsets
    20..49 with their original values, and the position ends at 50."""
    tp = TopicPartition(topic_name, 0)
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", f"v{i}".encode()) for i in range(50)])
        sub = await bus.subscribe([topic_name], start="earliest")
        assert sub.position(tp) == 0
        first = await collect(sub, 50)
        assert [r.offset for r in first] == list(range(50))
        assert sub.position(tp) == 50

        sub.seek(tp, 20)
        assert sub.position(tp) == 20
        replay = await collect(sub, 30)
        assert sub.position(tp) == 50
        await sub.close()

    assert [r.offset for r in replay] == list(range(20, 50))
    assert [r.value for r in replay] == [f"v{i}".encode() for i in range(20, 50)]


async def test_latest_delivers_only_records_published_after_subscribe_returned(
    bus: Bus, topic_name: str
) -> None:
    """Five records before subscribe(start="latest"), five after: exactly the five later ones
    arrive, at offsets 5..9."""
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", f"old{i}".encode()) for i in range(5)])
        sub = await bus.subscribe([topic_name], start="latest")
        assert sub.position(TopicPartition(topic_name, 0)) == 5
        for i in range(5):
            await bus.publish(topic_name, b"K", f"new{i}".encode())
        got = await collect(sub, 5)
        await sub.close()

    assert [r.value for r in got] == [f"new{i}".encode() for i in range(5)]
    assert [r.offset for r in got] == [5, 6, 7, 8, 9]


async def test_a_group_resumes_from_its_committed_offsets_in_a_new_subscription(
    bus: Bus, topic_name: str
) -> None:
    """A group reads 120 of 300 records over 3 partitions, commits and closes; 100 more are
    published; a new subscription of the group with start="committed" gets exactly the
    other 280: together every record once, per-key order kept."""
    group = f"g_{topic_name}"
    keys = [f"K{k}".encode() for k in range(12)]
    records = [(keys[i % 12], f"v{i}".encode()) for i in range(400)]
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 3)
        await bus.publish_many(topic_name, records[:300])
        first = await bus.subscribe([topic_name], group=group, start="committed")
        part1 = await collect_at_most(first, 120)
        await first.commit()
        committed = {
            tp: first.position(tp) for tp in (TopicPartition(topic_name, p) for p in range(3))
        }
        await first.close()

        await bus.publish_many(topic_name, records[300:])
        second = await bus.subscribe([topic_name], group=group, start="committed")
        assert {tp: second.position(tp) for tp in committed} == committed
        part2 = await collect(second, 280)
        await second.close()

    assert len(part1) == 120
    everything = part1 + part2
    assert_no_duplicates(everything)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for k, v in records:
        expected[k].append(v)
    assert values_by_key(everything) == dict(expected)


async def test_committed_start_without_a_commit_reads_from_the_beginning(
    bus: Bus, topic_name: str
) -> None:
    """A group that never committed, subscribing with start="committed", reads all 10
    existing records from offset 0."""
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", f"v{i}".encode()) for i in range(10)])
        sub = await bus.subscribe([topic_name], group=f"g_{topic_name}", start="committed")
        got = await collect(sub, 10)
        await sub.close()
    assert [r.offset for r in got] == list(range(10))


async def test_breaking_out_of_async_for_then_committing_loses_nothing(
    bus: Bus, topic_name: str
) -> None:
    """Iterate 7 of 20 records with ``async for``, break, commit: a new subscription of the
    group starts at offset 7 and reads the remaining 13 (records fetched but not yielded
    are not counted as consumed)."""
    group = f"g_{topic_name}"
    tp = TopicPartition(topic_name, 0)
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", f"v{i}".encode()) for i in range(20)])
        sub = await bus.subscribe([topic_name], group=group, start="earliest")
        seen = []
        async for record in sub:
            seen.append(record.offset)
            if len(seen) == 7:
                break
        assert sub.position(tp) == 7
        await sub.commit()
        await sub.close()

        again = await bus.subscribe([topic_name], group=group, start="committed")
        rest = await collect(again, 13)
        await again.close()

    assert seen == list(range(7))
    assert [r.offset for r in rest] == list(range(7, 20))


async def test_explicit_commit_offsets_are_where_the_group_resumes(
    bus: Bus, topic_name: str
) -> None:
    """commit({tp: 4}) after reading all 10 records: the group's next subscription resumes
    at offset 4, not at the read position 10."""
    group = f"g_{topic_name}"
    tp = TopicPartition(topic_name, 0)
    async with asyncio.timeout(60):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", f"v{i}".encode()) for i in range(10)])
        sub = await bus.subscribe([topic_name], group=group, start="earliest")
        await collect(sub, 10)
        await sub.commit({tp: 4})
        await sub.close()
        again = await bus.subscribe([topic_name], group=group, start="committed")
        assert again.position(tp) == 4
        rest = await collect(again, 6)
        await again.close()
    assert [r.offset for r in rest] == [4, 5, 6, 7, 8, 9]


# -- volume -----------------------------------------------------------------------------------


async def test_100k_records_published_with_publish_many_are_all_consumed_once_in_key_order(
    bus: Bus, topic_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """100,000 records over 200 keys on 6 partitions in one publish_many: the subscriber
    gets exactly 100,000, no (partition, offset) twice, every key's sequence numbers in
    publish order with none missing."""
    n, nkeys = 100_000, 200
    keys = [f"SYM{k:03d}".encode() for k in range(nkeys)]
    async with asyncio.timeout(110):
        await bus.create_topic(topic_name, 6)
        sub = await bus.subscribe([topic_name], start="latest")
        t0 = time.perf_counter()
        published = await bus.publish_many(
            topic_name, ((keys[i % nkeys], i.to_bytes(4, "big") + b"x" * 60) for i in range(n))
        )
        t1 = time.perf_counter()
        got = await collect_at_most(sub, n, timeout=90)
        t2 = time.perf_counter()
        assert await sub.next_batch(timeout=QUIET_S) == [], "records beyond the 100,000"
        await sub.close()

    with capsys.disabled():
        print(
            f"\n  {type(bus).__name__}: publish_many {n / (t1 - t0):,.0f} records/s, "
            f"consumed {n / (t2 - t1):,.0f} records/s"
        )
    assert published == n
    assert len(got) == n
    assert_no_duplicates(got)
    seqs_by_key: dict[bytes, list[int]] = defaultdict(list)
    for r in got:
        seqs_by_key[r.key].append(int.from_bytes(r.value[:4], "big"))
    assert seqs_by_key == {k: list(range(i, n, nkeys)) for i, k in enumerate(keys)}


# -- waking, errors, lifecycle ----------------------------------------------------------------


async def test_a_waiting_next_batch_returns_as_soon_as_a_record_is_published(
    bus: Bus, topic_name: str
) -> None:
    """next_batch(timeout=20) waiting on an empty topic returns the record published 0.2 s
    later well before its timeout (under 5 s)."""
    async with asyncio.timeout(30):
        await bus.create_topic(topic_name, 2)
        sub = await bus.subscribe([topic_name], start="latest")

        async def publish_later() -> None:
            await asyncio.sleep(0.2)
            await bus.publish(topic_name, b"K", b"hello")

        task = asyncio.create_task(publish_later())
        t0 = time.perf_counter()
        got = await sub.next_batch(timeout=20)
        elapsed = time.perf_counter() - t0
        await task
        await sub.close()
    assert [(r.key, r.value) for r in got] == [(b"K", b"hello")]
    assert 0.15 < elapsed < 5.0


async def test_next_batch_returns_an_empty_list_when_nothing_arrives_within_the_timeout(
    bus: Bus, topic_name: str
) -> None:
    """next_batch(timeout=0.3) on an idle topic returns [] after about 0.3 s."""
    async with asyncio.timeout(30):
        await bus.create_topic(topic_name, 1)
        sub = await bus.subscribe([topic_name], start="earliest")
        t0 = time.perf_counter()
        got = await sub.next_batch(timeout=0.3)
        elapsed = time.perf_counter() - t0
        await sub.close()
    assert got == []
    assert 0.25 < elapsed < 2.0


async def test_unknown_topics_are_refused_with_unknown_topic_error(
    bus: Bus, topic_name: str
) -> None:
    """Publishing to, subscribing to or asking partitions of a topic never created raises
    UnknownTopicError naming the topic."""
    missing = f"{topic_name}_missing"
    async with asyncio.timeout(30):
        with pytest.raises(UnknownTopicError) as publish_error:
            await bus.publish(missing, b"K", b"v")
        with pytest.raises(UnknownTopicError):
            await bus.publish_many(missing, [(b"K", b"v")])
        with pytest.raises(UnknownTopicError):
            await bus.subscribe([missing], start="earliest")
        with pytest.raises(UnknownTopicError):
            await bus.partitions(missing)
    assert publish_error.value.topic == missing
    assert str(publish_error.value) == (
        f"unknown topic {missing!r}: create it first with create_topic()"
    )


async def test_creating_an_existing_topic_keeps_its_partitions(bus: Bus, topic_name: str) -> None:
    """create_topic on an existing 3-partition topic with 5 is a no-op: still 3."""
    async with asyncio.timeout(30):
        await bus.create_topic(topic_name, 3)
        await bus.create_topic(topic_name, 5)
        assert await bus.partitions(topic_name) == 3


async def test_seeking_past_the_end_makes_next_batch_raise_offset_out_of_range(
    bus: Bus, topic_name: str
) -> None:
    """Seek to offset 100 on a partition holding 3 records: next_batch raises
    OffsetOutOfRangeError for that partition instead of silently rewinding."""
    tp = TopicPartition(topic_name, 0)
    async with asyncio.timeout(30):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", b"a"), (b"K", b"b"), (b"K", b"c")])
        sub = await bus.subscribe([topic_name], start="earliest")
        sub.seek(tp, 100)
        with pytest.raises(OffsetOutOfRangeError) as caught:
            for _ in range(20):
                await sub.next_batch(timeout=0.5)
        await sub.close()
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == (
        topic_name,
        0,
        100,
    )


async def test_commit_without_a_group_raises_no_group_error(bus: Bus, topic_name: str) -> None:
    """A subscription opened without group= cannot commit."""
    async with asyncio.timeout(30):
        await bus.create_topic(topic_name, 1)
        sub = await bus.subscribe([topic_name], start="earliest")
        with pytest.raises(NoGroupError):
            await sub.commit()
        await sub.close()


async def test_a_closed_subscription_ends_iteration_and_refuses_next_batch(
    bus: Bus, topic_name: str
) -> None:
    """Closing a subscription while ``async for`` waits ends the loop with no records;
    next_batch afterwards raises SubscriptionClosedError."""
    async with asyncio.timeout(30):
        await bus.create_topic(topic_name, 1)
        sub = await bus.subscribe([topic_name], start="latest")

        async def drain() -> list[Record]:
            return [r async for r in sub]

        task = asyncio.create_task(drain())
        await asyncio.sleep(0.3)
        await sub.close()
        assert await task == []
        with pytest.raises(SubscriptionClosedError):
            await sub.next_batch(timeout=0.1)


async def test_a_bus_refuses_use_before_start_and_after_close(topic_name: str) -> None:
    """Both implementations raise BusNotRunningError naming the state: "not started" before
    start(), "closed" after close(). (No broker needed: KafkaBus does not connect.)"""
    for impl in (MemoryBus(), KafkaBus("127.0.0.1:9")):
        with pytest.raises(BusNotRunningError) as before:
            await impl.publish(topic_name, b"K", b"v")
        assert before.value.state == "not started"
        await impl.close()
        with pytest.raises(BusNotRunningError) as after:
            await impl.create_topic(topic_name)
        assert after.value.state == "closed"


async def test_memory_bus_interleaves_partitions_so_a_busy_one_cannot_starve_another(
    topic_name: str,
) -> None:
    """5,000 records on one key's partition and 10 on another's: the first next_batch of
    1,000 already holds all 10 of the quiet partition."""
    busy, quiet = b"AAPL", b"MSFT"  # partitions 0 and 1 of 6
    async with MemoryBus() as bus, asyncio.timeout(10):
        await bus.create_topic(topic_name, 6)
        await bus.publish_many(topic_name, [(busy, b"x")] * 5000 + [(quiet, b"y")] * 10)
        sub = await bus.subscribe([topic_name], start="earliest")
        batch = await sub.next_batch(max_records=1000)
    assert len(batch) == 1000
    assert sum(1 for r in batch if r.key == quiet) == 10


async def test_memory_bus_retention_drops_the_oldest_records_per_partition(
    topic_name: str,
) -> None:
    """retention=100 keeps the newest 100 of 5,000 records: an earliest subscription starts
    at offset 4,900, and seeking to offset 0 raises OffsetOutOfRangeError."""
    tp = TopicPartition(topic_name, 0)
    async with MemoryBus(retention=100) as bus, asyncio.timeout(10):
        await bus.create_topic(topic_name, 1)
        await bus.publish_many(topic_name, [(b"K", str(i).encode()) for i in range(5000)])
        sub = await bus.subscribe([topic_name], start="earliest")
        assert sub.position(tp) == 4900
        got = await sub.next_batch()
        sub.seek(tp, 0)
        with pytest.raises(OffsetOutOfRangeError):
            await sub.next_batch()
    assert [r.offset for r in got] == list(range(4900, 5000))


# -- start-up against a broker that is down ---------------------------------------------------


def closed_loopback_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_kafka_bus_start_against_a_down_broker_raises_bus_unavailable_after_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KafkaBus pointed at a closed 127.0.0.1 port with 3 attempts and 0.1 s backoff: start()
    fails with BusUnavailableError naming the address after the 0.1 + 0.2 s of backoff and
    well within 10 s, logging one warning per attempt."""
    address = f"127.0.0.1:{closed_loopback_port()}"
    bus = KafkaBus(
        address,
        connect_attempts=3,
        connect_backoff_s=0.1,
        connect_backoff_max_s=1.0,
        request_timeout_s=2.0,
    )
    caplog.set_level(logging.WARNING, logger="tickerplant.bus.kafka")
    t0 = time.perf_counter()
    async with asyncio.timeout(20):
        with pytest.raises(BusUnavailableError) as caught:
            await bus.start()
    elapsed = time.perf_counter() - t0

    assert 0.3 <= elapsed < 10.0
    err = caught.value
    assert (err.bootstrap, err.attempts) == (address, 3)
    assert str(err).startswith(f"Kafka broker at {address} is unavailable after 3 attempts")
    warnings = [r for r in caplog.records if r.name == "tickerplant.bus.kafka"]
    assert len(warnings) == 3
    assert all(address in r.getMessage() for r in warnings)
    with pytest.raises(BusNotRunningError):
        await bus.publish("t", b"K", b"v")


async def test_kafka_bus_start_against_a_silent_listener_gives_up_instead_of_hanging() -> None:
    """A 127.0.0.1 listener that accepts connections but never answers: with 2 attempts of
    at most 0.5 s each, start() raises BusUnavailableError in under 5 s."""
    held: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = KafkaBus(
        f"127.0.0.1:{port}", connect_attempts=2, connect_backoff_s=0.1, request_timeout_s=0.5
    )
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(20):
            with pytest.raises(BusUnavailableError) as caught:
                await bus.start()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    elapsed = time.perf_counter() - t0
    assert caught.value.attempts == 2
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert 0.1 <= elapsed < 5.0


async def test_make_bus_picks_memory_without_bootstrap_and_kafka_with_it(topic_name: str) -> None:
    """Settings without kafka_bootstrap give a MemoryBus whose default partition count is
    settings.kafka.partitions (3 here); with a bootstrap, a KafkaBus on that address."""
    memory = make_bus(Settings(kafka_bootstrap=None, kafka=KafkaSettings(partitions=3)))
    kafka = make_bus(Settings(kafka_bootstrap="127.0.0.1:9092"))
    assert isinstance(memory, MemoryBus)
    assert isinstance(kafka, KafkaBus)
    assert kafka.bootstrap == "127.0.0.1:9092"
    async with memory:
        await memory.create_topic(topic_name)
        assert await memory.partitions(topic_name) == 3
