"""Candles throughput: trades/s from the bus through the Bytewax dataflow into PostgreSQL.

One run measures, over the same trades (the ``md.trades`` records the FastNormalizer makes of
the cached simulated day, ``benchmarks/itch_input.py``):

- **dataflow → PostgreSQL + md.bars**: ``MemoryBus`` → ``BusSource`` (through ``BusBridge``)
  → parse → per-symbol windows → ``BarStoreSink`` (upserts) and ``BarBusSink``, one worker
  (``run_main``), to the end of the topic with every window flushed. The figure held against
  the target (≥ 200,000 trades/s).
- the same dataflow **without the PostgreSQL sink**, and **without either sink** (source,
  parse, windows only): where the time goes.

The PostgreSQL sink (``BarStoreSink``, 2 partitions by default) writes each batch on its own
thread while the worker computes the next one; a run's clock stops when ``run_main``
returns, i.e. after the sink's ``close`` waited for the last write: every bar is in
PostgreSQL. Each line also prints the CPU seconds of this process (all threads, not the
server's): with other work on the same cores, wall time includes waiting for a core. The
process tunes its garbage collector as the ``tickerplant candles`` service does
(``tickerplant.runtime.tune_gc_for_throughput``) once the input is prepared.
- the same with **2 workers in one process** (``cluster_main``, threads) and **2 processes x
  1 worker** (``cluster_main`` over 127.0.0.1, each process with its own ``MemoryBus`` holding
  the same records; Bytewax splits the bus partitions between the processes and routes each
  symbol's trades to one worker); and 2 processes x 1 worker **without sinks** (no PostgreSQL
  competing for the cores: the scaling of the parse and window work alone).
- **Polars ``group_by_dynamic``** 1-second and 1-minute bars of the same trades in memory (the
  upper bound: no bus, no Protobuf, no database).
- **raw ``COPY``** of the trades (one row each) into an unlogged-free plain PostgreSQL table
  (the database's limit for getting rows in), from CSV text prepared outside the timing.

Each dataflow run starts from empty ``bars`` and ``bar_aggregates`` tables and a bus holding
only the trades. A
scratch database is created on the server named by ``--dsn`` / ``TP_TEST_DATABASE_URL``
and dropped at the end. ``--profile`` prints the top of a cProfile of one 1-worker run.

Run: ``.venv/bin/python benchmarks/candles_throughput.py [--runs 3] [--messages N] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this folder heads sys.path and benchmarks/normalize.py would shadow
    # the normalize package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import polars as pl
import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import cluster_main, run_main
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks.itch_input import DEFAULT_MESSAGES, frame_chunks, itch_file, machine
from candles.dataflow import BarBusSink, BusBridge, BusSource, build_flow
from normalize.fast import FastNormalizer
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import MemoryBus
from tickerplant.db import migrate
from tickerplant.runtime import tune_gc_for_throughput
from tickerplant.topics import MD_BARS, MD_TRADES

MIDNIGHT_NS = 1_732_060_800_000_000_000
PARTITIONS = 4
TARGET_TRADES_S = 200_000

Records = list[tuple[bytes, bytes]]


# -- input ----------------------------------------------------------------------------------


def trade_records(messages: int) -> Records:
    """``md.trades`` records ``(key, value)`` of the cached day, as the plant publishes them
    (``process_framed`` per 64 KiB, ``take_records`` after each piece)."""
    data = itch_file(messages).read_bytes()
    normalizer = FastNormalizer(midnight_ns=MIDNIGHT_NS, session="BENCH")
    out: Records = []
    seq = 1
    for chunk in frame_chunks(data, 1 << 16):
        seq += normalizer.process_framed(chunk, first_seq=seq, receive_ts_ns=seq)
        out.extend(
            (k, v) for t, k, v in normalizer.take_records(publish_ts_ns=seq) if t == MD_TRADES
        )
    return out


def trades_frame(records: Records) -> pl.DataFrame:
    """Every trade event of the records, one row each (broken trades are rare; kept as rows)."""
    cols: dict[str, list[int | str]] = {
        k: [] for k in ("symbol", "ts", "seq", "price", "size", "match")
    }
    for _, value in records:
        for event in pb.EventBatch.FromString(value).events:
            if event.WhichOneof("payload") != "trade":
                continue
            t = event.trade
            for name, v in zip(
                cols,
                (t.symbol, t.exchange_ts_ns, t.seq, t.price, t.size, t.match_number),
                strict=True,
            ):
                cols[name].append(v)
    return pl.DataFrame(cols, schema={"symbol": pl.String} | {k: pl.Int64 for k in list(cols)[1:]})


# -- peers ----------------------------------------------------------------------------------


def polars_bars(frame: pl.DataFrame) -> int:
    """1-second and 1-minute bars by ``group_by_dynamic``, as tests/unit/candles/reference.py;
    returns the number of bars."""
    timed = frame.with_columns(pl.from_epoch("ts", time_unit="ns").alias("time")).sort(
        "symbol", "ts", "seq"
    )
    count = 0
    for every in ("1s", "1m"):
        bars = timed.group_by_dynamic(
            "time", every=every, group_by="symbol", closed="left", label="left"
        ).agg(
            pl.col("price").first().alias("o"),
            pl.col("price").max().alias("h"),
            pl.col("price").min().alias("l"),
            pl.col("price").last().alias("c"),
            pl.col("size").sum().alias("v"),
            pl.len().alias("n"),
            (pl.col("price") * pl.col("size")).sum().alias("notional"),
        )
        count += bars.height
    return count


def copy_trades(dsn: str, csv: bytes) -> None:
    """One ``COPY … FROM STDIN (FORMAT csv)`` of every trade into a fresh table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_trades")
        conn.execute(
            "CREATE TABLE bench_trades (symbol text NOT NULL, ts bigint NOT NULL,"
            " seq bigint NOT NULL, price bigint NOT NULL, size bigint NOT NULL,"
            " match bigint NOT NULL)"
        )
        with conn.cursor() as cur, cur.copy("COPY bench_trades FROM STDIN (FORMAT csv)") as copy:
            view = memoryview(csv)
            for start in range(0, len(view), 1 << 20):
                copy.write(view[start : start + (1 << 20)])


# -- the dataflow ---------------------------------------------------------------------------


def loaded_bridge(records: Records) -> BusBridge:
    bridge = BusBridge(MemoryBus(partitions=PARTITIONS))
    bridge.run(bridge.bus.start())
    for topic in (MD_TRADES, MD_BARS):
        bridge.run(bridge.bus.create_topic(topic))
    bridge.run(bridge.bus.publish_many(MD_TRADES, records))
    return bridge


def close_bridge(bridge: BusBridge) -> None:
    bridge.run(bridge.bus.close())
    bridge.close()


def reset_bars(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bars, bar_aggregates")


def stored_bars(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM bars").fetchone()
    return int(row[0]) if row else 0


class DiscardSink(DynamicSink[object]):
    """Drops every bar: the run without sinks still needs an output step."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


class _Discard(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


def run_flow(records: Records, dsn: str | None, *, publish: bool, workers: int = 1) -> float:
    """Seconds for one dataflow run to the end of the topic (bus loaded before the clock)."""
    if dsn is not None:
        reset_bars(dsn)
    bridge = loaded_bridge(records)
    try:
        flow = build_flow(
            BusSource(bridge, MD_TRADES, until_end=True),
            dsn=dsn,
            bars_sink=BarBusSink(bridge) if publish else DiscardSink(),  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
        return time.perf_counter() - started
    finally:
        close_bridge(bridge)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(dsn: str, messages: int, procs: int, *, sinks: bool = True) -> tuple[float, str]:
    """Seconds for ``procs`` processes x 1 worker (from the last process entering
    ``cluster_main`` to the last leaving it) and a note of the child timings. Without
    ``sinks`` the bars are discarded (no PostgreSQL, no md.bars)."""
    reset_bars(dsn)
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(procs)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                str(i),
                "--addresses",
                ",".join(addresses),
                "--dsn",
                dsn,
                "--messages",
                str(messages),
                *(() if sinks else ("--no-sinks",)),
            ],
            stdout=subprocess.PIPE,
        )
        for i in range(procs)
    ]
    spans = []
    for child in children:
        out, _ = child.communicate(timeout=900)
        if child.returncode != 0:
            raise RuntimeError(f"child exited {child.returncode}")
        spans.append(json.loads(out.decode().strip().splitlines()[-1]))
    started = max(s["start"] for s in spans)
    ended = max(s["end"] for s in spans)
    return ended - started, " ".join(
        f"proc{i}: {s['end'] - s['start']:.2f}s" for i, s in enumerate(spans)
    )


def child(args: argparse.Namespace) -> None:
    """One process of the multi-process run: its own bus holding the same records."""
    records = trade_records(args.messages)
    bridge = loaded_bridge(records)
    tune_gc_for_throughput()
    try:
        flow = build_flow(
            BusSource(bridge, MD_TRADES, until_end=True),
            dsn=None if args.no_sinks else args.dsn,
            bars_sink=DiscardSink() if args.no_sinks else BarBusSink(bridge),  # type: ignore[arg-type]
        )
        start = time.time()
        cluster_main(flow, args.addresses.split(","), args.child)
        end = time.time()
    finally:
        close_bridge(bridge)
    print(json.dumps({"start": start, "end": end}), flush=True)


# -- driver ---------------------------------------------------------------------------------


def scratch_database(admin_dsn: str) -> tuple[str, str]:
    name = f"bench_candles_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(admin_dsn, dbname=name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def timed(function: Callable[[], object], runs: int) -> tuple[float, list[float], float]:
    """Median wall seconds, every run's, and the median CPU seconds of this process (all its
    threads; not the PostgreSQL server's): on shared cores, wall time includes waiting."""
    times, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        function()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return statistics.median(times), times, statistics.median(cpu)


def profile_one(records: Records, dsn: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run_flow(records, dsn, publish=True)
    profiler.disable()
    out = io.StringIO()
    # Bytewax runs the dataflow on its own worker thread(s) only when clustered: run_main
    # runs it on this thread, so the profile sees the source, the windows and the sinks.
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(r"candles|psycopg/cursor|bus", 15)
    print(
        "\ncProfile of one 1-worker run (by own time, then cumulative for candles/psycopg/bus;"
        " the PostgreSQL writes run on the sink's writer threads, outside this profile):"
    )
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("TP_TEST_DATABASE_URL", ""))
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    parser.add_argument("--no-sinks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The simulated day has a few broken trades whose trade is already out of the window;
    # the dataflow warns once per symbol and batch, which would drown the figures.
    logging.getLogger("candles.dataflow").setLevel(logging.ERROR)
    if args.child is not None:
        child(args)
        return
    if not args.dsn:
        parser.error("give --dsn or set TP_TEST_DATABASE_URL (deploy/postgres/pg.sh start DIR)")

    records = trade_records(args.messages)
    frame = trades_frame(records)
    trades = frame.height
    csv = frame.write_csv(include_header=False).encode()
    tune_gc_for_throughput()  # as `tickerplant candles` does at start-up
    print(f"{machine()}; load average {os.getloadavg()[0]:.2f} at start")
    print(
        f"input: {trades:,} trades in {len(records):,} md.trades records over "
        f"{frame['symbol'].n_unique():,} symbols ({args.messages:,} simulated ITCH messages); "
        f"MemoryBus, {PARTITIONS} partitions; median of {args.runs} runs"
    )
    name, dsn = scratch_database(args.dsn)
    try:
        migrate(dsn)
        rows: list[tuple[str, float, list[float]]] = []

        def measure(label: str, function: Callable[[], object], runs: int = args.runs) -> None:
            seconds, times, cpu = timed(function, runs)
            rows.append((label, seconds, times))
            spread = ", ".join(f"{trades / t / 1e3:.0f}k" for t in times)
            print(
                f"  {label}: {trades / seconds:,.0f} trades/s  ({spread}; "
                f"median {seconds:.2f} s wall, {cpu:.2f} s CPU in this process)",
                flush=True,
            )

        measure("Polars group_by_dynamic 1s+1m, in memory", lambda: polars_bars(frame))
        measure("COPY trades into PostgreSQL", lambda: copy_trades(dsn, csv))
        measure(
            "dataflow → PostgreSQL + md.bars, 1 worker",
            lambda: run_flow(records, dsn, publish=True),
        )
        bars = stored_bars(dsn)
        measure("dataflow → md.bars only, 1 worker", lambda: run_flow(records, None, publish=True))
        measure(
            "dataflow, bars discarded (no sinks), 1 worker",
            lambda: run_flow(records, None, publish=False),
        )
        measure(
            "dataflow → PostgreSQL + md.bars, 2 workers, 1 process",
            lambda: run_flow(records, dsn, publish=True, workers=2),
        )
        multi_times = []
        for _ in range(args.runs):
            seconds, note = run_processes(dsn, args.messages, 2)
            multi_times.append(seconds)
            print(f"    2 processes: {seconds:.2f}s ({note})", flush=True)
        rows.append(
            (
                "dataflow → PostgreSQL + md.bars, 2 processes x 1 worker",
                statistics.median(multi_times),
                multi_times,
            )
        )
        bare_times = []
        for _ in range(args.runs):
            seconds, note = run_processes(dsn, args.messages, 2, sinks=False)
            bare_times.append(seconds)
            print(f"    2 processes, no sinks: {seconds:.2f}s ({note})", flush=True)
        rows.append(
            (
                "dataflow, bars discarded (no sinks), 2 processes x 1 worker",
                statistics.median(bare_times),
                bare_times,
            )
        )
        print(f"bars written per dataflow run: {bars:,} (1-second and 1-minute)")

        print("\n| peer | trades/s | runs (k trades/s) |\n| --- | ---: | --- |")
        for label, seconds, times in rows:
            spread = ", ".join(f"{trades / t / 1e3:.0f}" for t in times)
            print(f"| {label} | {trades / seconds:,.0f} | {spread} |")
        one = trades / rows[2][1]
        verdict = "PASS" if one >= TARGET_TRADES_S else "FAIL"
        print(
            f"\ntarget >= {TARGET_TRADES_S:,} trades/s through the dataflow on one worker:"
            f" {verdict} ({one:,.0f})"
        )
        two_threads, two_procs = trades / rows[5][1], trades / rows[6][1]
        print(
            f"scaling: 2 workers in 1 process {two_threads / one:.2f}x, "
            f"2 processes {two_procs / one:.2f}x the 1-worker figure"
        )
        bare_one, bare_two = trades / rows[4][1], trades / rows[7][1]
        print(
            f"scaling without sinks (no PostgreSQL on the cores): 2 processes "
            f"{bare_two / bare_one:.2f}x the 1-worker figure"
        )
        if args.profile:
            profile_one(records, dsn)
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        drop_database(args.dsn, name)


if __name__ == "__main__":
    main()
