"""The ticker plant's CLI as an operator runs it: exchange-sim, ingest, normalize-file."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request

import polars as pl
import pytest

pytestmark = pytest.mark.slow


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tickerplant.cli", "--log-level", "WARNING", *args]


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.multicast
def test_ingest_receives_every_message_the_simulator_sends_and_stops_on_sigint(private_netns):
    """`exchange-sim --messages 5000` with 2% drops: `ingest` counts 5000 in sequence, 0 lost."""
    port = random.randrange(20_000, 30_000)
    env = {
        **os.environ,
        "TP_FEED__PORT": str(port),
        "TP_FEED__REREQUEST_PORT": str(port + 1),
        "TP_METRICS__PORT": str(port + 2),
    }
    ingest = subprocess.Popen(
        cli("ingest", "--date", "2024-11-20"), env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        banner = ingest.stdout.readline()
        assert f"reading 239.1.1.1:{port} on 127.0.0.1" in banner
        metrics_url = re.search(r"metrics (http://\S+/metrics)", banner).group(1)
        sim = subprocess.run(
            cli(
                "exchange-sim",
                "--messages",
                "5000",
                "--speed",
                "0",
                "--symbols",
                "10",
                "--drop-rate",
                "0.02",
                "--linger",
                "1",
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sim.returncode == 0, sim.stderr
        assert sim.stdout.startswith("session TP00000001: 5000 messages")
        deadline = time.monotonic() + 20
        while (
            metric(metrics_url, "tp_ingest_messages_total") < 5000 and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert metric(metrics_url, "tp_ingest_messages_total") == 5000
        assert metric(metrics_url, "tp_ingest_unrecoverable_total") == 0
        assert metric(metrics_url, "tp_ingest_gaps_total") > 0
        assert metric(metrics_url, "tp_ingest_recovered_total") == metric(
            metrics_url, "tp_ingest_gaps_total"
        )
        ingest.send_signal(signal.SIGINT)
        assert ingest.wait(timeout=20) == 0
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()


def test_normalize_file_writes_parquet_that_polars_reads(tmp_path):
    """A 20,000-message simulated day becomes trades and quotes; counts match the summary."""
    itch = tmp_path / "day.itch"
    written = subprocess.run(
        cli("exchange-sim", "--no-send", "--out", str(itch), "--messages", "20000", "--speed", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    result = subprocess.run(
        cli("normalize-file", str(itch), "--out", str(tmp_path / "out"), "--date", "2024-11-20"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    counts = re.match(r"20000 messages -> (\d+) trades, (\d+) quotes", result.stdout)
    assert counts, result.stdout
    trades = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    quotes = pl.read_parquet(tmp_path / "out" / "quotes.parquet")
    assert (trades.height, quotes.height) == (int(counts.group(1)), int(counts.group(2)))
    assert trades.height > 0 and quotes.height > 0
    assert trades["seq"].is_sorted() and quotes["seq"].is_sorted()


def test_normalize_file_without_a_date_in_the_name_asks_for_date(tmp_path):
    """A file not named like NASDAQ's samples needs --date; the error says so."""
    itch = tmp_path / "day.itch"
    itch.write_bytes(b"")
    result = subprocess.run(
        cli("normalize-file", str(itch), "--out", str(tmp_path / "out")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.replace("│", " ").split())  # unwrap the usage box
    assert "cannot tell the session date from the name 'day.itch'; pass --date" in message
