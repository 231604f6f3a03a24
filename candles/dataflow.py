"""The candles Bytewax dataflow: ``md.trades`` → per-symbol windows → PostgreSQL and ``md.bars``.

::

    BusSource (one partition per bus partition)
      → parse (a batch of EventBatches → (symbol, trades) per symbol)
      → stateful_batch "windows" keyed by symbol (SymbolWindows, snapshot-able)
      → BarStoreSink (PostgreSQL, COPY + merge, written while the next bars are computed)
        and BarBusSink (pb.Bar EventBatches on md.bars)

Unit of parallelism: the bus partition on the input side (each Bytewax worker reads the
partitions it owns), the symbol for the windows (Bytewax routes each key to one worker),
the store partition (``crc32(symbol)``) for PostgreSQL. All bars of a symbol are therefore
written by one writer, in order. Unit of work: a source batch. The parse step turns a
whole batch into one item per symbol (its trades in record order), so the windows run
once per symbol and batch, not once per record.

Delivery: the source's snapshot is the *next* offset of each partition and the windows'
snapshot is their state, both taken by Bytewax at the same epoch boundary and kept in the
recovery store together (recovery enabled: ``CandlesSettings.recovery_dir``). On resume,
the windows restart from their snapshot and the source re-reads from the matching offsets,
so every trade is applied once to the state (exactly-once state); the windows' state does
not depend on how the trades were cut into batches, so a resumed run's batches need not
match the first run's. The sinks are at-least-once: bars emitted after the last snapshot
are emitted again; PostgreSQL upserts make that an exactly-once *effect*, and ``md.bars``
subscribers may see a bar twice (the same values; they key bars by symbol, timeframe and
start). The PostgreSQL sink writes on its own thread while the worker computes the next
bars, and waits for that write in its epoch snapshot: an epoch is committed to the
recovery store only once its bars are stored.

The bus is asyncio; Bytewax calls sources and sinks synchronously from its worker threads.
``BusBridge`` runs bus coroutines on the event loop that owns the bus
(``run_coroutine_threadsafe``), so the same dataflow reads a ``MemoryBus`` shared with other
in-process components or a ``KafkaBus``.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import bytewax.operators as op
import psycopg
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from candles.bars import Bar
from candles.metrics import CandlesMetrics
from candles.storage import upsert_bars
from candles.windows import NS, SymbolWindows
from normalize._fastcore import decode_trades
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import Bus, Record, Subscription, TopicPartition
from tickerplant.topics import MD_BARS, MD_TRADES

__all__ = [
    "BarBusSink",
    "BarStoreSink",
    "BusBridge",
    "BusSource",
    "WindowLogic",
    "bar_to_pb",
    "build_flow",
    "parse_batch",
    "parse_trades",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

TradeTuple = tuple[int, int, int, int, int, bool]
"""(exchange_ts_ns, seq, price, size, match_number, broken) — what the windows take."""


class BusBridge:
    """Runs bus coroutines from synchronous code on the loop that owns the bus.

    ``loop=None`` starts a private loop in a daemon thread (then start the bus through
    ``run(bus.start())``); ``close()`` stops that loop.
    """

    def __init__(self, bus: Bus, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.bus = bus
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="candles-bus-loop", daemon=True
            )
            self._thread.start()
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self._thread = None


# -- source ---------------------------------------------------------------------------------


class _TopicReader:
    """One subscription per worker shared by the worker's source partitions.

    The ``Bus`` interface subscribes to every partition of a topic; records of partitions
    this worker does not own are dropped (with one worker, the default, there are none).
    """

    def __init__(self, bridge: BusBridge, topic: str, batch_size: int, poll_s: float) -> None:
        self.bridge = bridge
        self.topic = topic
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.sub: Subscription = bridge.run(bridge.bus.subscribe([topic], start="earliest"))
        self.buffers: dict[int, deque[Record]] = {}

    def own(self, partition: int, offset: int | None) -> int:
        """Read ``partition`` from ``offset`` (None: the earliest retained); returns it."""
        tp = TopicPartition(self.topic, partition)
        if offset is not None:
            self.sub.seek(tp, offset)
        self.buffers[partition] = deque()
        return self.sub.position(tp)

    def take(self, partition: int) -> list[Record]:
        buffer = self.buffers[partition]
        if not buffer:
            for record in self.bridge.run(self.sub.next_batch(self.batch_size, self.poll_s)):
                owned = self.buffers.get(record.partition)
                if owned is not None:
                    owned.append(record)
        return [buffer.popleft() for _ in range(min(self.batch_size, len(buffer)))]

    def release(self, partition: int) -> bool:
        """Stop reading ``partition``; True when no partition is left (then closed)."""
        self.buffers.pop(partition, None)
        if self.buffers:
            return False
        self.bridge.run(self.sub.close())
        return True


class _BusPartition(StatefulSourcePartition[Record, int]):
    def __init__(
        self,
        source: BusSource,
        reader: _TopicReader,
        partition: int,
        resume: int | None,
        end: int | None,
    ) -> None:
        self._source = source
        self._reader = reader
        self._partition = partition
        self._next = reader.own(partition, resume)
        self._end = end

    def next_batch(self) -> list[Record]:
        if self._source.stop is not None and self._source.stop.is_set():
            raise StopIteration
        if self._end is not None and self._next >= self._end:
            raise StopIteration
        batch = self._reader.take(self._partition)
        if self._end is not None:
            batch = [r for r in batch if r.offset < self._end]
        if batch:
            self._next = batch[-1].offset + 1
        return batch

    def next_awake(self) -> datetime | None:
        return None  # the reader's poll timeout paces an idle partition

    def snapshot(self) -> int:
        return self._next  # the offset of the next record to read

    def close(self) -> None:
        self._source._release(self._reader, self._partition)


class BusSource(FixedPartitionedSource[Record, int]):
    """Records of ``topic``, one Bytewax partition per bus partition.

    Unit of parallelism: the bus partition. Delivery: at-least-once from the bus, with
    the snapshot (the next offset) restoring exactly the position of the epoch's state.

    ``until_end``: stop each partition at the end offset it had when the dataflow started
    (backfills and tests; all windows are then flushed). ``stop``: an event that ends every
    partition at its next batch (the service's shutdown; windows keep their state).
    """

    def __init__(
        self,
        bridge: BusBridge,
        topic: str = MD_TRADES,
        *,
        batch_size: int = 10_000,
        poll_s: float = 0.05,
        until_end: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.bridge = bridge
        self.topic = topic
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.until_end = until_end
        self.stop = stop
        self._readers: dict[int, _TopicReader] = {}
        self._ends: dict[int, int] | None = None
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        count = self.bridge.run(self.bridge.bus.partitions(self.topic))
        return [f"{self.topic}#{p}" for p in range(count)]

    def _end_offsets(self) -> dict[int, int]:
        if self._ends is None:
            sub = self.bridge.run(self.bridge.bus.subscribe([self.topic], start="latest"))
            count = self.bridge.run(self.bridge.bus.partitions(self.topic))
            self._ends = {p: sub.position(TopicPartition(self.topic, p)) for p in range(count)}
            self.bridge.run(sub.close())
        return self._ends

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _BusPartition:
        partition = int(for_part.rpartition("#")[2])
        with self._lock:
            ident = threading.get_ident()
            reader = self._readers.get(ident)
            if reader is None:
                reader = _TopicReader(self.bridge, self.topic, self.batch_size, self.poll_s)
                self._readers[ident] = reader
            end = self._end_offsets()[partition] if self.until_end else None
        return _BusPartition(self, reader, partition, resume_state, end)

    def _release(self, reader: _TopicReader, partition: int) -> None:
        with self._lock:
            if reader.release(partition):
                self._readers = {k: r for k, r in self._readers.items() if r is not reader}


# -- parse and window -----------------------------------------------------------------------


def _symbol_trades(record: Record) -> tuple[str, list[TradeTuple]] | None:
    """The record's symbol and trades; None (logged by the caller) when its value is not an
    EventBatch. ``decode_trades`` parses in C what ``pb.EventBatch.FromString`` parses and
    rejects what it rejects (tests/unit/candles/test_decode_trades.py holds it to that)."""
    try:
        symbol, trades = decode_trades(record.value)
    except ValueError:
        return None
    return symbol or record.key.decode(), trades


def _log_undecodable(bad: list[Record], of: int) -> None:
    first = bad[0]
    logger.warning(
        "skipped %d undecodable %s records of %d (first: partition %d offset %d)",
        len(bad),
        first.topic,
        of,
        first.partition,
        first.offset,
    )


def parse_trades(record: Record) -> list[tuple[str, tuple[str, list[TradeTuple]]]]:
    """One ``md.trades`` record → ``[(symbol, (symbol, trades))]`` (empty without trades).

    The symbol is the key and also part of the value, for the windows to name their bars.
    A record that is not an EventBatch is skipped with a warning: it holds no trade the
    windows could apply, and failing would stop the dataflow at the same record on every
    restart.
    """
    parsed = _symbol_trades(record)
    if parsed is None:
        _log_undecodable([record], 1)
        return []
    symbol, trades = parsed
    return [(symbol, (symbol, trades))] if trades else []


def parse_batch(
    records: list[Record], metrics: CandlesMetrics | None = None
) -> list[tuple[str, tuple[str, list[TradeTuple]]]]:
    """``parse_trades`` of a batch of records, one item per symbol: its trades in record
    order (a symbol's records are in one bus partition, in order). One item per symbol
    instead of per record: fewer window calls, and a closed bar that several of the
    batch's late trades revise is republished once. Undecodable records are skipped, one
    warning per batch."""
    by_symbol: dict[str, list[TradeTuple]] = {}
    bad: list[Record] = []
    for record in records:
        parsed = _symbol_trades(record)
        if parsed is None:
            bad.append(record)
            continue
        symbol, trades = parsed
        if trades:
            have = by_symbol.get(symbol)
            if have is None:
                by_symbol[symbol] = trades
            else:
                have.extend(trades)
    if bad:
        _log_undecodable(bad, len(records))
        if metrics is not None:
            metrics.undecodable.inc(len(bad))
    return [(symbol, (symbol, trades)) for symbol, trades in by_symbol.items()]


class WindowLogic(StatefulBatchLogic[tuple[str, list[TradeTuple]], Bar, bytes]):
    """Bytewax glue around one symbol's ``SymbolWindows``; the snapshot is its pickle."""

    def __init__(
        self,
        windows: SymbolWindows,
        *,
        flush_on_eof: bool,
        metrics: CandlesMetrics | None = None,
    ) -> None:
        self.windows = windows
        self.flush_on_eof = flush_on_eof
        self.metrics = metrics

    def on_batch(self, values: list[tuple[str, list[TradeTuple]]]) -> tuple[list[Bar], bool]:
        w = self.windows
        late, unmatched = w.stats.too_late, w.stats.unmatched_breaks
        traded = w.stats.trades
        out: list[Bar] = []
        for symbol, trades in values:
            w.symbol = symbol
            out.extend(w.on_trades(trades))
        metrics = self.metrics
        if metrics is not None:
            metrics.trades.inc(w.stats.trades - traded)
            metrics.too_late.inc(w.stats.too_late - late)
            metrics.unmatched_breaks.inc(w.stats.unmatched_breaks - unmatched)
            metrics.bars.inc(len(out))
        if w.stats.too_late > late:
            logger.warning(
                "%s: %d trades later than the allowed lateness not applied (%d in all)",
                w.symbol,
                w.stats.too_late - late,
                w.stats.too_late,
            )
        if w.stats.unmatched_breaks > unmatched:
            logger.warning(
                "%s: %d broken trades name no trade still revisable (%d in all)",
                w.symbol,
                w.stats.unmatched_breaks - unmatched,
                w.stats.unmatched_breaks,
            )
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Bar], bool]:
        if self.flush_on_eof:
            out = self.windows.flush()
            if self.metrics is not None:
                self.metrics.bars.inc(len(out))
            return out, StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # bytes are immutable: later batches cannot change a snapshot already taken.
        return pickle.dumps(self.windows, protocol=pickle.HIGHEST_PROTOCOL)


# -- sinks ----------------------------------------------------------------------------------


class _StorePartition(StatefulSinkPartition[Bar, None]):
    """One connection and one writer thread; at most one batch in flight.

    ``write_batch`` hands the batch to the writer thread and returns, so the worker computes
    the next bars while PostgreSQL stores these (psycopg waits without the GIL). It first
    waits for the batch before, so batches are stored one at a time in order, and a failed
    write raises in the worker at the next call. ``snapshot`` (end of each epoch) and
    ``close`` wait for the batch in flight: an epoch is committed to the recovery store only
    after its bars are in PostgreSQL.
    """

    def __init__(self, dsn: str) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="candles-store")
        self._in_flight: Future[tuple[int, int]] | None = None

    def _wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            upserts, deletes = in_flight.result()
            logger.debug("stored %d bars, withdrew %d", upserts, deletes)

    def write_batch(self, values: list[Bar]) -> None:
        self._wait()
        self._in_flight = self._writer.submit(upsert_bars, self._conn, values)

    def snapshot(self) -> None:
        self._wait()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._writer.shutdown()
            self._conn.close()


class BarStoreSink(FixedPartitionedSink[Bar, None]):
    """Bars into PostgreSQL, one transaction per batch, ``partitions`` writers.

    Unit of parallelism: the partition, ``crc32(symbol) % partitions`` (all bars of a symbol
    go through one writer, in order); Bytewax spreads the partitions over the workers.
    Delivery: at-least-once, flushed at every epoch boundary; upserts on (symbol,
    timeframe, start) make replays idempotent.
    """

    def __init__(self, dsn: str, *, partitions: int = 2) -> None:
        self.dsn = dsn
        self.partitions = partitions

    def list_parts(self) -> list[str]:
        return [f"store#{i}" for i in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(self.dsn)


def _fill_pb(m: pb.Bar, bar: Bar, publish_ts_ns: int) -> None:
    # Field by field into a message the batch already holds: about 3x faster in upb than
    # building a pb.Bar from keywords and copying it into an Event.
    m.symbol = bar.symbol
    m.start_ts_ns = bar.start_ns
    m.end_ts_ns = bar.end_ns
    m.open = bar.open
    m.high = bar.high
    m.low = bar.low
    m.close = bar.close
    m.volume = bar.volume
    m.trade_count = bar.trade_count
    m.vwap_e8 = bar.vwap_e8
    m.revised = bar.revised
    m.publish_ts_ns = publish_ts_ns
    m.seq = bar.last_seq
    m.exchange_ts_ns = bar.last_ts_ns


def bar_to_pb(bar: Bar, *, publish_ts_ns: int) -> pb.Bar:
    m = pb.Bar()
    _fill_pb(m, bar, publish_ts_ns)
    return m


class _BusSinkPartition(StatelessSinkPartition[tuple[str, Bar]]):
    def __init__(self, bridge: BusBridge, topic: str, clock: Callable[[], int]) -> None:
        self._bridge = bridge
        self._topic = topic
        self._clock = clock

    def write_batch(self, items: list[tuple[str, Bar]]) -> None:
        now = self._clock()
        batches: dict[str, pb.EventBatch] = {}
        for symbol, bar in items:
            batch = batches.get(symbol)
            if batch is None:
                batch = batches[symbol] = pb.EventBatch(symbol=symbol)
            _fill_pb(batch.events.add().bar, bar, now)
        records = [(symbol.encode(), b.SerializeToString()) for symbol, b in batches.items()]
        self._bridge.run(self._bridge.bus.publish_many(self._topic, records))


class BarBusSink(DynamicSink[tuple[str, Bar]]):
    """Closed and revised bars as ``pb.Bar`` EventBatches keyed by symbol (at-least-once)."""

    def __init__(
        self, bridge: BusBridge, topic: str = MD_BARS, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.bridge = bridge
        self.topic = topic
        self.clock = clock

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BusSinkPartition:
        return _BusSinkPartition(self.bridge, self.topic, self.clock)


# -- the flow -------------------------------------------------------------------------------


def build_flow(
    source: BusSource,
    *,
    dsn: str | None,
    bars_sink: BarBusSink | None,
    allowed_lateness_s: float = 10.0,
    timeframes_s: tuple[int, ...] = (1, 60),
    flush_on_eof: bool | None = None,
    flow_id: str = "candles",
    metrics: CandlesMetrics | None = None,
) -> Dataflow:
    """The candles dataflow over ``source``; ``dsn``/``bars_sink`` None leaves that sink out.
    ``metrics``: the process's counters (trades, too late, unmatched breaks, undecodable
    records, bars), or None.

    ``flush_on_eof`` (default: ``source.until_end``) closes every open bar when the input
    ends — right for a backfill, wrong for a shutdown that will resume.
    """
    flush = source.until_end if flush_on_eof is None else flush_on_eof
    lateness_ns = int(allowed_lateness_s * NS)

    def build(resume: bytes | None) -> WindowLogic:
        if resume is not None:
            return WindowLogic(pickle.loads(resume), flush_on_eof=flush, metrics=metrics)
        # stateful_batch's builder is not told the key: the windows learn their symbol
        # from the first batch (values carry it).
        windows = SymbolWindows("", allowed_lateness_ns=lateness_ns, timeframes_s=timeframes_s)
        return WindowLogic(windows, flush_on_eof=flush, metrics=metrics)

    flow = Dataflow(flow_id)
    records = op.input("trades", flow, source)
    keyed = op.flat_map_batch("parse", records, partial(parse_batch, metrics=metrics))
    bars = op.stateful_batch("windows", keyed, build)
    if dsn is not None:
        op.output("store", bars, BarStoreSink(dsn))
    if bars_sink is not None:
        op.output("publish", bars, bars_sink)
    return flow
