"""`tickerplant demo` as a newcomer runs it: starts, prints its URLs, stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect

pytestmark = pytest.mark.slow


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    """Read stdout until a line matches ``pattern``; return every line read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise AssertionError(
        f"no line matching {pattern!r} within {timeout}s; output:\n" + "\n".join(lines)
    )


def ingested_messages(api: str, *, at_least: int, within_s: float) -> int:
    """tp_ingest_messages_total from /metrics, polled until ``at_least`` or the time is up."""
    messages = 0
    deadline = time.monotonic() + within_s
    while messages < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        with urllib.request.urlopen(api + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        found = re.search(r"^tp_ingest_messages_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE)
        messages = int(float(found.group(1))) if found else 0
    return messages


async def first_quotes(stream: str, token: str) -> list[dict]:
    """Authenticate with the demo token, subscribe to every quote, return the first ones."""
    async with asyncio.timeout(20), connect(stream) as ws:
        await ws.recv()  # connected
        await ws.send(json.dumps({"action": "auth", "token": token}))
        assert json.loads(await ws.recv()) == [{"T": "success", "msg": "authenticated"}]
        await ws.send(json.dumps({"action": "subscribe", "quotes": ["*"]}))
        while True:
            messages = json.loads(await ws.recv())
            quotes = [m for m in messages if m["T"] == "q"]
            if quotes:
                return quotes


def postgres_processes_using(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "postgres" and str(data_dir) in cmdline:
            found.append(process)
    return found


def test_the_demo_serves_its_urls_with_the_printed_token_and_stops_on_sigint(tmp_path):
    """The demo prints the API URL and a token that /v1/me accepts; SIGINT exits 0, no orphans."""
    env = {
        **os.environ,
        "TP_DATA_DIR": str(tmp_path / "var"),
        "TP_HTTP__PORT": "0",
        "TP_LOG_LEVEL": "WARNING",
        "TP_FEED__PORT": str(random.randrange(20_000, 30_000)),
        "TP_FEED__REREQUEST_PORT": str(random.randrange(30_000, 40_000)),
        "TP_EXCHANGE_SIM__SYMBOLS": "20",
        "TP_FANOUT__PORT": "0",
    }
    for name in ("TP_DATABASE_URL", "TP_KAFKA_BOOTSTRAP", "TP_CONFIG"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tickerplant.cli", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = wait_for_line(process, r"Press Ctrl-C to stop", timeout=90)
        output = "\n".join(lines)
        api = re.search(r"API\s+(http://127\.0\.0\.1:\d+)/docs", output).group(1)
        token = re.search(r"token (tp_\S+)", output).group(1)
        assert "bus          in-memory" in output
        assert "database     embedded PostgreSQL" in output

        assert "feed         exchange-sim 20 symbols from 09:29:00" in output
        request = urllib.request.Request(
            api + "/v1/me", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            me = json.loads(response.read())
        assert me["name"] == "demo" and me["role"] == "trader"
        assert ingested_messages(api, at_least=100, within_s=30) >= 100
        stream = re.search(r"stream\s+(ws://\S+)", output).group(1)
        quotes = asyncio.run(first_quotes(stream, token))
        assert quotes and all(q["T"] == "q" and q["bp"] <= q["ap"] for q in quotes if q["ap"])
        with urllib.request.urlopen(api + "/healthz", timeout=10) as response:
            health = json.loads(response.read())
        assert health == {
            "status": "ok",
            "checks": {"database": "ok", "feed": "ok", "bus reader": "ok"},
        }
        assert postgres_processes_using(tmp_path / "var" / "pg"), "embedded PostgreSQL not running"

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, rest
    assert rest.rstrip().endswith("tickerplant demo stopped")
    deadline = time.monotonic() + 10
    while postgres_processes_using(tmp_path / "var" / "pg") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert postgres_processes_using(tmp_path / "var" / "pg") == []
