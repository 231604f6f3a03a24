"""``tickerplant backfill`` and ``tickerplant archive`` as a quant runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import psycopg
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def run_cli(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickerplant.cli", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120", "TP_DATABASE_URL": dsn},
    )


@pytest.fixture
def itch(tmp_path: Path, pg_dsn: str) -> Path:
    path = tmp_path / "day.itch"
    written = run_cli(
        "exchange-sim", "--no-send", "--out", str(path), "--messages", "30000", "--speed", "0",
        "--symbols", "6", dsn=pg_dsn,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    return path


def stored_bars(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT symbol, timeframe, start, open, high, low, close, volume, trade_count,"
            " vwap_e8 FROM bars ORDER BY symbol, timeframe, start"
        ).fetchall()


BACKFILL = re.compile(
    r"^30000 messages -> (\d+) trades of (\d+) symbols -> (\d+) bars written, 0 withdrawn "
    r"in [\d.]+s \([\d,]+ msgs/s\); 0 too late, (\d+) unmatched breaks$"
)


def test_backfill_stores_the_files_bars_and_a_second_run_stores_the_same(itch, pg_dsn):
    """`backfill day.itch --date 2024-11-20` migrates, stores every bar it reports and prints
    the counts; running it again prints the same counts and leaves the same rows."""
    first = run_cli("backfill", str(itch), "--date", "2024-11-20", dsn=pg_dsn)
    assert first.returncode == 0, first.stderr
    found = BACKFILL.match(first.stdout.strip())
    assert found, first.stdout
    trades, symbols, written = (int(found.group(i)) for i in (1, 2, 3))
    rows = stored_bars(pg_dsn)
    assert (len(rows), symbols) == (written, 6)
    assert trades == sum(n for _, tf, *_, n, _ in rows if tf == "1Min") > 0
    assert {r[2].date() for r in rows} == {date(2024, 11, 20)}

    second = run_cli("backfill", str(itch), "--date", "2024-11-20", dsn=pg_dsn)
    assert second.returncode == 0, second.stderr
    assert BACKFILL.match(second.stdout.strip()).groups() == found.groups()
    assert stored_bars(pg_dsn) == rows


def test_archive_writes_hive_partitions_that_scan_parquet_reads(itch, pg_dsn, tmp_path):
    """After a backfill, `archive --date 2024-11-20 --out DIR --itch day.itch` writes trades,
    quotes and bars; Polars reads each back with date and symbol from the paths, and the bar
    count equals the database's."""
    assert run_cli("backfill", str(itch), "--date", "2024-11-20", dsn=pg_dsn).returncode == 0
    out = tmp_path / "archive"
    result = run_cli(
        "archive", "--date", "2024-11-20", "--out", str(out), "--itch", str(itch), dsn=pg_dsn
    )
    assert result.returncode == 0, result.stderr
    found = re.match(
        rf"^archived 2024-11-20: (\d+) trades, (\d+) quotes, (\d+) bars of 6 symbols under "
        rf"{re.escape(str(out))}$",
        result.stdout.strip(),
    )
    assert found, result.stdout
    trades, quotes, bars = (int(g) for g in found.groups())
    for kind, count in (("trades", trades), ("quotes", quotes), ("bars", bars)):
        frame = pl.scan_parquet(out / kind / "**" / "*.parquet", hive_partitioning=True).collect()
        assert frame.height == count > 0
        assert frame["date"].unique().to_list() == [date(2024, 11, 20)]
        assert frame["symbol"].n_unique() == 6
    assert bars == len(stored_bars(pg_dsn))

    bars_only = run_cli("archive", "--date", "2024-11-20", "--out", str(tmp_path / "b"), dsn=pg_dsn)
    assert bars_only.returncode == 0, bars_only.stderr
    assert bars_only.stdout.splitlines()[1] == (
        "no --itch file: trades and quotes not archived (the database keeps bars only)"
    )
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["bars"]


def test_backfill_of_a_file_without_a_date_in_its_name_asks_for_date(tmp_path, pg_dsn):
    """A file not named like NASDAQ's samples needs --date; the error says so."""
    itch = tmp_path / "day.itch"
    itch.write_bytes(b"")
    result = run_cli("backfill", str(itch), dsn=pg_dsn)
    assert result.returncode == 2
    message = " ".join(result.stderr.replace("│", " ").split())
    assert "cannot tell the session date from the name 'day.itch'; pass --date" in message
