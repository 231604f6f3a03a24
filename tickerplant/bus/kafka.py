"""The Apache Kafka bus, on aiokafka: the production implementation of ``Bus``.

Routing equals ``MemoryBus``: the producer's partitioner is ``partition_for`` (crc32 of the
key modulo the partition count), so a key has the same partition number on both buses.
This is *not* Kafka's default murmur2 partitioner: a Java producer writing the same keys
would route them differently.

Delivery: publishing is idempotent (``enable_idempotence``, ``acks=all``), so producer
retries neither duplicate nor reorder records of a partition; ``publish``/``publish_many``
return once every record is acknowledged. Subscriptions read with manual assignment of
every partition (no group rebalance, ready at once); ``group`` only names where ``commit``
stores offsets, so consumers sharing a group do not split partitions between them.
At-least-once overall: a consumer that crashes between processing and ``commit`` sees the
uncommitted records again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ConsumerStoppedError, KafkaError
from aiokafka.errors import OffsetOutOfRangeError as KafkaOffsetOutOfRangeError

from tickerplant.bus.base import Record, StartAt, TopicPartition, partition_for
from tickerplant.bus.errors import (
    BusError,
    BusNotRunningError,
    BusUnavailableError,
    CommitError,
    NoGroupError,
    OffsetOutOfRangeError,
    PartitionNotAssignedError,
    PublishError,
    SubscriptionClosedError,
    UnknownTopicError,
)
from tickerplant.settings import KafkaSettings

__all__ = ["KafkaBus", "KafkaSubscription"]

logger = logging.getLogger(__name__)

_DEFAULTS = KafkaSettings.model_fields

# Kafka protocol error codes seen in metadata responses.
_UNKNOWN_TOPIC_OR_PARTITION = 3
_TOPIC_ALREADY_EXISTS = 36

# publish_many awaits acknowledgements in windows of this many records, bounding the
# futures held for an unbounded iterable without stalling the producer's batching.
_ACK_WINDOW = 65_536


def _crc32_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    # aiokafka passes the topic's partition ids; they are 0..n-1, so the index *is* the id.
    return partition_for(key or b"", len(all_partitions))


def _cause(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    # aiokafka's errors already start with their class name.
    return text if text.startswith(name) else f"{name}: {text}"


def _check_bytes(key: bytes, value: bytes) -> None:
    if not isinstance(key, bytes) or not isinstance(value, bytes):
        raise TypeError(
            f"key and value must be bytes, got {type(key).__name__} and {type(value).__name__}"
        )


class KafkaBus:
    """``Bus`` on an Apache Kafka cluster at ``bootstrap`` (``host:port[,host:port…]``).

    ``start()`` connects the producer and an admin client, retrying ``connect_attempts``
    times with exponential backoff (``connect_backoff_s`` doubling up to
    ``connect_backoff_max_s``; each attempt bounded by ``request_timeout_s``), then raises
    ``BusUnavailableError``. ``partitions`` is what ``create_topic`` uses when given no count.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = _DEFAULTS["partitions"].default,
        connect_attempts: int = _DEFAULTS["connect_attempts"].default,
        connect_backoff_s: float = _DEFAULTS["connect_backoff_s"].default,
        connect_backoff_max_s: float = _DEFAULTS["connect_backoff_max_s"].default,
        request_timeout_s: float = _DEFAULTS["request_timeout_s"].default,
        client_id: str = "tickerplant",
        replication_factor: int = _DEFAULTS["replication_factor"].default,
        linger_ms: int = 5,
        max_batch_size: int = 1024 * 1024,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if connect_attempts < 1:
            raise ValueError(f"connect_attempts must be >= 1, got {connect_attempts}")
        self.bootstrap = bootstrap
        self._default_partitions = partitions
        self._connect_attempts = connect_attempts
        self._backoff_s = connect_backoff_s
        self._backoff_max_s = connect_backoff_max_s
        self._timeout_s = request_timeout_s
        self._client_id = client_id
        self._replication_factor = replication_factor
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partition_counts: dict[str, int] = {}
        self._subscriptions: set[KafkaSubscription] = set()
        self._state = "not started"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state == "running":
            return
        if self._state == "closed":
            raise BusNotRunningError("closed")
        began = time.monotonic()
        last: BaseException | None = None
        for attempt in range(1, self._connect_attempts + 1):
            producer = self._new_producer()
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self._client_id}-admin",
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            try:
                # aiokafka fails fast on a refused connection, but a black-holed address
                # would wait on the socket: bound every attempt.
                async with asyncio.timeout(self._timeout_s):
                    await producer.start()
                    await admin.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                last = exc
                await _stop_quietly(producer, admin)
                if attempt == self._connect_attempts:
                    logger.warning(
                        "Kafka broker at %s unavailable (attempt %s of %s: %s); giving up",
                        self.bootstrap,
                        attempt,
                        self._connect_attempts,
                        _cause(exc),
                    )
                    break
                delay = min(self._backoff_s * 2 ** (attempt - 1), self._backoff_max_s)
                logger.warning(
                    "Kafka broker at %s unavailable (attempt %s of %s: %s); retrying in %.2fs",
                    self.bootstrap,
                    attempt,
                    self._connect_attempts,
                    _cause(exc),
                    delay,
                )
                await asyncio.sleep(delay)
            except BaseException:
                await _stop_quietly(producer, admin)
                raise
            else:
                self._producer, self._admin = producer, admin
                self._state = "running"
                return
        assert last is not None
        raise BusUnavailableError(
            self.bootstrap, self._connect_attempts, time.monotonic() - began, _cause(last)
        ) from last

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            partitioner=_crc32_partitioner,
            linger_ms=self._linger_ms,
            max_batch_size=self._max_batch_size,
            request_timeout_ms=int(self._timeout_s * 1000),
        )

    async def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        for sub in list(self._subscriptions):
            await sub.close()
        # The producer flushes what it still holds before it stops.
        await _stop_quietly(self._producer, self._admin)
        self._producer = self._admin = None

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _running(self) -> tuple[AIOKafkaProducer, AIOKafkaAdminClient]:
        if self._state != "running" or self._producer is None or self._admin is None:
            raise BusNotRunningError(self._state)
        return self._producer, self._admin

    # -- topics ------------------------------------------------------------------------------

    async def create_topic(self, topic: str, partitions: int | None = None) -> None:
        _, admin = self._running()
        count = self._default_partitions if partitions is None else partitions
        if count < 1:
            raise ValueError(f"partitions must be >= 1, got {count}")
        try:
            response = await admin.create_topics([NewTopic(topic, count, self._replication_factor)])
        except KafkaError as exc:
            raise BusError(f"creating topic {topic!r} failed: {_cause(exc)}") from exc
        for name, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                detail = rest[0] if rest and rest[0] else f"error code {code}"
                raise BusError(f"creating topic {name!r} failed: {detail}")
        # CreateTopics returns once the controller accepted the topic; partitions get
        # leaders a moment later. Wait until metadata shows all of them led, so a publish
        # or subscribe right after this call does not race the broker.
        await self._wait_for_topic(topic, missing_ok=True)

    async def partitions(self, topic: str) -> int:
        self._running()
        count = self._partition_counts.get(topic)
        if count is None:
            count = await self._wait_for_topic(topic, missing_ok=False)
        return count

    async def _wait_for_topic(self, topic: str, *, missing_ok: bool) -> int:
        _, admin = self._running()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        while True:
            try:
                (meta,) = await admin.describe_topics([topic])
            except KafkaError as exc:
                raise BusError(f"reading metadata of {topic!r} failed: {_cause(exc)}") from exc
            code = meta["error_code"]
            parts = meta["partitions"]
            if code == _UNKNOWN_TOPIC_OR_PARTITION and not missing_ok:
                raise UnknownTopicError(topic)
            if code == 0 and parts and all(p["leader"] >= 0 for p in parts):
                self._partition_counts[topic] = len(parts)
                return len(parts)
            if loop.time() >= deadline:
                raise BusError(
                    f"topic {topic!r} has no leader for every partition after "
                    f"{self._timeout_s:.1f}s (metadata error code {code})"
                )
            await asyncio.sleep(0.05)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        producer, _ = self._running()
        _check_bytes(key, value)
        await self.partitions(topic)  # UnknownTopicError now, not a metadata timeout later
        try:
            future = await producer.send(topic, value, key=key)
            await future
        except KafkaError as exc:
            raise PublishError(topic, 1, 1, _cause(exc)) from exc

    async def publish_many(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Publish every pair and wait for all acknowledgements; returns how many.

        Raises ``PublishError`` when some were not acknowledged (the others, and possibly
        some of the failed ones, are written: retrying duplicates them). A bad pair
        (``TypeError``) or a failing iterable stops the publishing; the pairs before it
        are written.
        """
        producer, _ = self._running()
        await self.partitions(topic)
        # send() only appends to the producer's per-partition batch and returns a future;
        # batches go out every linger_ms or when full. Awaiting the futures afterwards (in
        # windows) keeps many batches in flight instead of one round trip per record.
        # Per-key order holds: one key is one partition, appended in iteration order, and
        # the idempotent producer never reorders a partition's batches on retry.
        pending: list[asyncio.Future[object]] = []
        count = failed = 0
        first_error: BaseException | None = None

        async def settle() -> None:
            nonlocal failed, first_error
            results = await asyncio.gather(*pending, return_exceptions=True)
            pending.clear()
            for result in results:
                if isinstance(result, BaseException):
                    failed += 1
                    first_error = first_error or result

        try:
            for key, value in records:
                _check_bytes(key, value)
                pending.append(await producer.send(topic, value, key=key))
                count += 1
                if len(pending) >= _ACK_WINDOW:
                    await settle()
        except KafkaError as exc:
            await settle()
            raise PublishError(topic, failed + 1, count + 1, _cause(exc)) from exc
        except Exception:
            # A bad record or a failing iterable: what was already handed to the producer
            # is still sent; wait for it so no acknowledgement is left unobserved.
            await settle()
            raise
        await settle()
        if first_error is not None:
            raise PublishError(topic, failed, count, _cause(first_error)) from first_error
        return count

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Iterable[str],
        *,
        group: str | None = None,
        start: StartAt = "latest",
    ) -> KafkaSubscription:
        self._running()
        if start not in ("earliest", "latest", "committed"):
            raise ValueError(f"start must be 'earliest', 'latest' or 'committed', got {start!r}")
        if isinstance(topics, str):
            raise TypeError(f"topics must be a list of names, e.g. [{topics!r}], not a str")
        tps: list[KafkaTopicPartition] = []
        for topic in dict.fromkeys(topics):
            count = await self.partitions(topic)
            tps.extend(KafkaTopicPartition(topic, p) for p in range(count))
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            group_id=group,
            enable_auto_commit=False,
            # Never rewind silently: a position outside the log is an error to the caller.
            auto_offset_reset="none",
            request_timeout_ms=int(self._timeout_s * 1000),
            fetch_max_wait_ms=100,
        )
        began = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                await consumer.start()
                consumer.assign(tps)
                positions = await _initial_positions(consumer, tps, group, start)
        except (KafkaError, OSError, TimeoutError) as exc:
            await _stop_quietly(consumer)
            raise BusUnavailableError(
                self.bootstrap,
                1,
                time.monotonic() - began,
                f"opening a subscription: {_cause(exc)}",
            ) from exc
        except BaseException:
            await _stop_quietly(consumer)
            raise
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        sub = KafkaSubscription(consumer, positions, group, self._subscriptions)
        self._subscriptions.add(sub)
        return sub


async def _initial_positions(
    consumer: AIOKafkaConsumer,
    tps: list[KafkaTopicPartition],
    group: str | None,
    start: StartAt,
) -> dict[KafkaTopicPartition, int]:
    """Resolve ``start`` to explicit offsets before ``subscribe`` returns.

    Resolving ``latest`` here (not lazily on the first fetch) is what makes "only records
    published after subscribe() returned" hold: a record acknowledged with acks=all is
    below the high watermark that ListOffsets returns now, and anything later is above it.
    """
    if not tps:
        return {}
    if start == "latest":
        return dict(await consumer.end_offsets(tps))
    beginning = await consumer.beginning_offsets(tps)
    if start == "earliest" or group is None:
        return dict(beginning)
    end = await consumer.end_offsets(tps)
    positions: dict[KafkaTopicPartition, int] = {}
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None:
            positions[tp] = beginning[tp]
        else:
            # Clamp as the consumer's reset would if retention removed committed records.
            positions[tp] = min(max(committed, beginning[tp]), end[tp])
    return positions


async def _stop_quietly(
    *clients: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient | None,
) -> None:
    """Stop clients during clean-up, where their own errors must not mask the real one."""
    for client in clients:
        with contextlib.suppress(Exception):
            if isinstance(client, AIOKafkaAdminClient):
                await client.close()
            elif client is not None:
                await client.stop()


class KafkaSubscription:
    """A consumer over every partition of some topics, manually assigned.

    Records fetched from Kafka wait in ``_pending`` until handed out; ``position`` and
    ``commit`` count only records handed out (by ``next_batch`` or the iterator), so
    breaking out of ``async for`` and committing loses nothing.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        positions: Mapping[KafkaTopicPartition, int],
        group: str | None,
        registry: set[KafkaSubscription],
    ) -> None:
        self._consumer = consumer
        self._positions = {TopicPartition(tp.topic, tp.partition): o for tp, o in positions.items()}
        self.topics = frozenset(tp.topic for tp in self._positions)
        self.group = group
        self._registry = registry
        self._pending: deque[Record] = deque()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise SubscriptionClosedError()

    def _check_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._positions:
            assigned = sum(1 for t in self._positions if t.topic == tp.topic)
            raise PartitionNotAssignedError(tp.topic, tp.partition, assigned)

    async def _fill(self, max_records: int, timeout: float) -> None:
        try:
            fetched = await self._consumer.getmany(
                timeout_ms=int(timeout * 1000), max_records=max_records
            )
        except ConsumerStoppedError:
            if self._closed:  # closed by another task while this one waited
                return
            raise SubscriptionClosedError() from None
        except KafkaOffsetOutOfRangeError as exc:
            ktp, offset = next(iter(exc.args[0].items()))
            raise OffsetOutOfRangeError(
                ktp.topic, ktp.partition, offset, "outside the retained records"
            ) from exc
        except KafkaError as exc:
            raise BusError(f"fetching records failed: {_cause(exc)}") from exc
        for ktp, messages in fetched.items():
            topic, partition = ktp.topic, ktp.partition
            self._pending.extend(
                Record(topic, partition, m.offset, m.key or b"", m.value or b"", m.timestamp)
                for m in messages
            )

    def _hand_out(self, n: int) -> list[Record]:
        out = [self._pending.popleft() for _ in range(min(n, len(self._pending)))]
        last: dict[tuple[str, int], int] = {}
        for r in out:
            last[(r.topic, r.partition)] = r.offset
        for (topic, partition), offset in last.items():
            self._positions[TopicPartition(topic, partition)] = offset + 1
        return out

    async def next_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
        self._check_open()
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        if not self._pending:
            await self._fill(max_records, timeout)
        return self._hand_out(max_records)

    async def __aiter__(self) -> AsyncIterator[Record]:
        while not self._closed:
            if not self._pending:
                await self._fill(10_000, 1.0)
            if self._pending:
                (record,) = self._hand_out(1)
                yield record

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_open()
        self._check_assigned(tp)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        # Drop fetched-but-undelivered records of tp; aiokafka discards its own buffer and
        # any in-flight fetch for the old position.
        self._pending = deque(
            r for r in self._pending if (r.topic, r.partition) != (tp.topic, tp.partition)
        )
        self._consumer.seek(KafkaTopicPartition(tp.topic, tp.partition), offset)
        self._positions[tp] = offset

    def position(self, tp: TopicPartition) -> int:
        self._check_assigned(tp)
        return self._positions[tp]

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if self.group is None:
            raise NoGroupError()
        if offsets is None:
            offsets = dict(self._positions)
        for tp, offset in offsets.items():
            self._check_assigned(tp)
            if offset < 0:
                raise ValueError(f"offset must be >= 0, got {offset} for {tp}")
        try:
            await self._consumer.commit(
                {KafkaTopicPartition(tp.topic, tp.partition): o for tp, o in offsets.items()}
            )
        except KafkaError as exc:
            raise CommitError(self.group, _cause(exc)) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._registry.discard(self)
        self._pending.clear()
        await _stop_quietly(self._consumer)
