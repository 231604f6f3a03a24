"""Kill -9 and restart the candles dataflow on real Kafka and PostgreSQL: bars exactly once.

A simulated day's ``md.trades`` records (20 symbols, ≈40k trades, some records delivered late
so bars get revised, two broken trades) stream into a fresh Kafka topic. The dataflow runs in
a child process (``recovery_worker``) with a Bytewax recovery store and a 50 ms epoch; it is
SIGKILLed at three seeded random points while the trades stream, restarted each time, and the
last run reads the topic to its end. An uninterrupted run of the same code over the same
topic writes into a second database. Both databases must hold identical rows, and the bars
must equal Polars' bars over the same trades.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from bytewax.recovery import init_db_dir
from psycopg import sql
from psycopg.conninfo import make_conninfo

from candles.dataflow import BusBridge
from normalize.proto import marketdata_pb2 as pb
from tests.fixtures.postgres import database_name
from tests.unit.candles.reference import polars_bars, simulated_records, trades_frame
from tickerplant.bus import KafkaBus
from tickerplant.db import connect, migrate

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(90),
]

ROOT = Path(__file__).resolve().parents[3]
SEED = 20240301
KILLS = 3
PARTITIONS = 4
CHUNKS = 200  # the trades stream in this many publishes…
CHUNK_INTERVAL_S = 0.05  # …this far apart; the last HELD_UNTIL_KILLED wait for the kills
HELD_UNTIL_KILLED = 0.2  # (a slow machine must not run out of stream before the third kill)
HOLD_BACK_EVERY = 15  # every 15th record of a symbol is delivered after the symbol's next one
MAX_HOLD_BACK_NS = 5_000_000_000  # well inside the 10 s allowed lateness: revisions, not drops

Records = list[tuple[bytes, bytes]]


# -- the trades ------------------------------------------------------------------------------


def _trade_span(value: bytes) -> tuple[int, int, set[int]]:
    """(first exchange time, last exchange time, broken match numbers) of one record."""
    events = [e.trade for e in pb.EventBatch.FromString(value).events]
    broken = {t.match_number for t in events if t.kind == pb.TRADE_KIND_BROKEN}
    times = [t.exchange_ts_ns for t in events]
    return min(times), max(times), broken


def with_late_records(records: Records) -> Records:
    """The same records with some delivered late: for every ``HOLD_BACK_EVERY``-th record of
    a symbol, it and the symbol's next record swap places when that makes its trades at
    most ``MAX_HOLD_BACK_NS`` late. Records holding broken trades, or the trades they break,
    keep their place (a break must follow its trade)."""
    spans = [_trade_span(v) for _, v in records]
    broken = set().union(*(b for _, _, b in spans))

    def touches_break(i: int) -> bool:
        if spans[i][2]:
            return True
        trades = pb.EventBatch.FromString(records[i][1]).events
        return any(e.trade.match_number in broken for e in trades)

    by_symbol: dict[bytes, list[int]] = defaultdict(list)
    for i, (key, _) in enumerate(records):
        by_symbol[key].append(i)
    out = list(records)
    for positions in by_symbol.values():
        for k in range(0, len(positions) - 1, HOLD_BACK_EVERY):
            a, b = positions[k], positions[k + 1]
            if spans[b][1] - spans[a][0] > MAX_HOLD_BACK_NS or touches_break(a) or touches_break(b):
                continue
            out[a], out[b] = records[b], records[a]
    return out


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Records:
    records = simulated_records(
        str(tmp_path_factory.mktemp("sim")), symbols=20, seed=11, messages=400_000
    )
    return with_late_records(list(records))


# -- services --------------------------------------------------------------------------------


@pytest.fixture
def second_dsn(pg_admin_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second fresh, migrated database for the uninterrupted run."""
    name = database_name(request.node.name + "_ref")
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(pg_admin_dsn, dbname=name)
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def bridge(kafka_bootstrap: str) -> Iterator[BusBridge]:
    b = BusBridge(
        KafkaBus(
            kafka_bootstrap,
            partitions=PARTITIONS,
            connect_attempts=3,
            connect_backoff_s=0.2,
            request_timeout_s=10.0,
            client_id="test-recovery",
        )
    )
    b.run(b.bus.start())
    yield b
    b.run(b.bus.close())
    b.close()


class Worker:
    """One run of ``recovery_worker`` in a child process, output kept in a log file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.candles.recovery_worker", *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        assert self.proc.poll() is None, f"worker died before its kill:\n{self.output()}"
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def finish(self, timeout: float) -> None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"worker did not reach the end in {timeout}s:\n{self.output()}")
        assert code == 0, f"worker exited {code}:\n{self.output()}"


def written_since(dsn: str, since: object) -> int:
    with connect(dsn) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM bars WHERE updated_at >= %s", [since]
        ).fetchone()
    return count


def latest_write(conn: psycopg.Connection) -> object:
    (when,) = conn.execute("SELECT max(updated_at) FROM bars").fetchone()
    return when


def db_now(dsn: str) -> object:
    with connect(dsn) as conn:
        (now,) = conn.execute("SELECT clock_timestamp()").fetchone()
    return now


def all_rows(dsn: str) -> list[tuple]:
    """Every stored bar, every column but ``updated_at``."""
    with connect(dsn) as conn:
        return conn.execute(
            "SELECT symbol, timeframe, start, open, high, low, close, volume, trade_count,"
            " notional, vwap_e8, revised, last_seq FROM bars ORDER BY symbol, timeframe, start"
        ).fetchall()


def values(rows: list[tuple], timeframe: str) -> list[tuple]:
    """Rows of one timeframe in ``polars_bars``' shape."""
    return [
        (s, int(t.timestamp()) * 1_000_000_000, o, h, lo, c, v, n, vw)
        for s, tf, t, o, h, lo, c, v, n, _, vw, _, _ in rows
        if tf == timeframe
    ]


# -- the test --------------------------------------------------------------------------------


def test_bars_after_three_sigkills_and_restarts_equal_an_uninterrupted_run(
    day, bridge, kafka_bootstrap, topic_name, migrated_dsn, second_dsn, tmp_path
):
    """SIGKILL the dataflow three times at seeded random points while trades stream into
    Kafka, restart it from its recovery store each time and let the last run read to the
    end: the stored bars are identical, row for row and column for column (revised flag and
    last sequence number included), to an uninterrupted run's, and equal Polars' bars —
    no trade lost, none counted twice."""
    rng = random.Random(SEED)
    trades, bars = topic_name, f"{topic_name}_bars"
    for topic in (trades, bars, f"{bars}_ref"):
        bridge.run(bridge.bus.create_topic(topic, PARTITIONS))

    # The stream: a chunk every CHUNK_INTERVAL_S; the last fifth once the kills are done.
    kills_done = threading.Event()
    published: list[int] = [0]
    errors: list[BaseException] = []
    size = -(-len(day) // CHUNKS)
    held = int(len(day) * (1 - HELD_UNTIL_KILLED))

    def stream() -> None:
        try:
            for start in range(0, len(day), size):
                if start >= held:
                    kills_done.wait(60)
                if not kills_done.is_set():
                    time.sleep(CHUNK_INTERVAL_S)
                bridge.run(bridge.bus.publish_many(trades, day[start : start + size]))
                published[0] = min(start + size, len(day))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    publisher = threading.Thread(target=stream, name="publisher", daemon=True)

    recovered_dir, reference_dir = tmp_path / "recovery", tmp_path / "recovery-ref"
    for directory in (recovered_dir, reference_dir):
        directory.mkdir()
        init_db_dir(directory, 1)
    common = ["--bootstrap", kafka_bootstrap, "--trades", trades, "--epoch-s", "0.05"]
    recovered_args = [*common, "--bars", bars, "--dsn", migrated_dsn]
    recovered_args += ["--recovery-dir", str(recovered_dir)]
    log = tmp_path / "worker.log"

    publisher.start()
    published_at_kill = []
    try:
        with connect(migrated_dsn) as watch:
            watch.autocommit = True
            for _ in range(KILLS):
                last_write = latest_write(watch)
                worker = Worker(log, *recovered_args)
                # Kill at the first write to PostgreSQL seen a random 0-2 s after the run's
                # first write (near 0: while it replays and catches up after the restart):
                # mid-epoch, bars written, that epoch's snapshot most likely not committed.
                delay = rng.uniform(0.0, 2.0)
                deadline: float | None = None
                timeout = time.monotonic() + 20
                while True:
                    assert worker.proc.poll() is None, f"worker exited:\n{worker.output()}"
                    assert time.monotonic() < timeout, f"no bars written:\n{worker.output()}"
                    write = latest_write(watch)
                    if write != last_write:
                        if deadline is None:
                            deadline = time.monotonic() + delay
                        if time.monotonic() >= deadline:
                            break
                    last_write = write
                    time.sleep(0.002)
                worker.kill()
                published_at_kill.append(published[0])
    finally:
        kills_done.set()
        publisher.join(30)
    assert not errors, errors
    assert published[0] == len(day)
    # Every kill hit a run reading a topic still being written (the held-back fifth makes
    # sure of it on a slow machine; typically the kills land at 10-35 % of the stream).
    assert all(n < len(day) for n in published_at_kill), published_at_kill

    last_started = db_now(migrated_dsn)
    last = Worker(log, *recovered_args, "--until-end")
    reference = Worker(
        tmp_path / "reference.log",
        *common,
        "--bars",
        f"{bars}_ref",
        "--dsn",
        second_dsn,
        "--recovery-dir",
        str(reference_dir),
        "--until-end",
    )
    last.finish(45)
    reference.finish(45)

    recovered, uninterrupted = all_rows(migrated_dsn), all_rows(second_dsn)
    assert any(row[11] for row in uninterrupted), "no bar was revised: late records missing"
    # The last run resumed from the recovery store: it did not read the topic from its
    # start again (which would also give the right bars, proving nothing about recovery).
    rewritten = written_since(migrated_dsn, last_started)
    assert rewritten < len(recovered), (rewritten, published_at_kill)
    assert len(recovered) == len(uninterrupted)
    assert recovered == uninterrupted
    frame = trades_frame(tuple(day))
    assert values(recovered, "1Sec") == polars_bars(frame, "1s")
    assert values(recovered, "1Min") == polars_bars(frame, "1m")
