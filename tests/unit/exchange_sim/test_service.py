"""The service without a network: pacing, files, the stop event."""

from __future__ import annotations

import asyncio
import gzip
import math
from pathlib import Path

import pytest

from exchange_sim import (
    OptionError,
    OrderFlow,
    Pacer,
    default_symbols,
    run_exchange_sim,
    write_file,
)
from exchange_sim.schedule import parse_time
from normalize.itch import encode
from normalize.itchfile import iter_messages
from tickerplant.settings import Settings

NS = 1_000_000_000
START = parse_time("09:29:00")


def test_a_pacer_maps_exchange_time_to_wall_time_divided_by_speed():
    """At speed 2 from 09:29:00 at wall 100.0: 09:29:10 is due at 105.0, anything before
    the origin at once."""
    pacer = Pacer(2.0, origin_ns=START, wall_start=100.0)
    assert pacer.due(START + 10 * NS) == pytest.approx(105.0)
    assert pacer.due(START - 3600 * NS) == 100.0
    assert pacer.paced


@pytest.mark.parametrize("speed", [0.0, math.inf])
def test_speed_zero_or_infinite_paces_nothing(speed: float):
    """Every message is due now."""
    pacer = Pacer(speed, origin_ns=None, wall_start=0.0)
    assert pacer.due(START) is None
    assert not pacer.paced


def test_a_pacer_without_an_origin_starts_at_the_first_timestamp():
    """origin None: the first message is due at the start, one 1 s later at speed 1."""
    pacer = Pacer(1.0, origin_ns=None, wall_start=7.0)
    assert pacer.due(START) == 7.0
    assert pacer.due(START + NS) == pytest.approx(8.0)


def test_a_negative_speed_is_refused():
    with pytest.raises(OptionError, match="speed"):
        Pacer(-1.0, origin_ns=None, wall_start=0.0)


def test_write_file_writes_the_generated_messages_framed(tmp_path: Path):
    """5,000 messages written; reading the file back gives their encodings, in order."""
    path = tmp_path / "day.itch"
    assert write_file(path, symbols=10, seed=4, messages=5_000) == 5_000
    flow = OrderFlow(default_symbols(10, seed=4), seed=4)
    expected = [encode(m) for m in flow.generate(5_000)]
    assert [bytes(m) for m in iter_messages(path)] == expected
    assert path.stat().st_size == sum(2 + len(m) for m in expected)


def test_write_file_gzips_a_dot_gz_path(tmp_path: Path):
    """A .gz path holds the same frames, compressed."""
    plain, packed = tmp_path / "a.itch", tmp_path / "a.itch.gz"
    write_file(plain, symbols=5, seed=2, messages=1_000)
    write_file(packed, symbols=5, seed=2, messages=1_000)
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()


async def test_a_run_without_sending_writes_the_same_file_as_write_file(tmp_path: Path):
    """run_exchange_sim(send=False, speed=0) with the default settings writes byte for byte
    what write_file writes with its defaults."""
    ran, written = tmp_path / "ran.itch", tmp_path / "written.itch"
    async with asyncio.timeout(30):
        stats = await run_exchange_sim(
            settings=Settings(), send=False, speed=0, messages=3_000, out_file=ran
        )
    write_file(written, messages=3_000)
    assert stats.messages == 3_000
    assert stats.packets == 0
    assert ran.read_bytes() == written.read_bytes()


async def test_a_paced_run_takes_the_exchange_time_divided_by_speed(tmp_path: Path):
    """The messages up to 09:29:03 at speed 20 take at least 0.15 s (the span / 20)."""
    flow = OrderFlow(default_symbols(100, seed=1), seed=1)
    count = sum(1 for _ in flow.generate(until=START + 3 * NS))
    async with asyncio.timeout(30):
        stats = await run_exchange_sim(
            settings=Settings(), send=False, speed=20.0, messages=count, out_file=tmp_path / "p"
        )
    span = (stats.last_timestamp - START) / NS
    assert stats.messages == count
    assert 2.9 < span < 3.0
    assert span / 20 - 0.01 <= stats.wall_seconds < span / 20 + 1.0


async def test_a_set_stop_event_ends_the_run_before_any_message(tmp_path: Path):
    """A stop event already set: nothing is sent or written, the stats say stopped."""
    stop = asyncio.Event()
    stop.set()
    out = tmp_path / "none.itch"
    async with asyncio.timeout(10):
        stats = await run_exchange_sim(
            settings=Settings(), send=False, speed=0, out_file=out, stop=stop
        )
    assert (stats.messages, stats.stopped) == (0, True)
    assert out.read_bytes() == b""
