"""The live market page in headless Chromium against `tickerplant demo`.

Chromium is driven over the DevTools protocol (CDP) with ``websockets``: no Selenium, no
chromedriver. The screenshot of the page is kept under the test's tmp dir; its path is
printed (``pytest -s`` shows it, and it is in the captured output of a failure).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.test_demo import wait_for_line
from tests.fixtures.services import service_missing

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1440,820",
)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    service_missing("Chromium (apt-get install chromium)")
    raise AssertionError("unreachable")


class DevTools:
    """One page target over the DevTools protocol: send commands, await their results."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float, what: str) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        state = await self.evaluate("window.__market_state && window.__market_state()")
        raise AssertionError(f"{what}: not within {timeout}s (last {value!r}; page {state!r})")


def start_chromium(chromium: str, profile: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Headless Chromium on a free DevTools port (read back from ``DevToolsActivePort``)."""
    process = subprocess.Popen(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if active_port.exists() and active_port.read_text().strip():
            return process, int(active_port.read_text().split()[0])
        if process.poll() is not None:
            raise AssertionError(f"chromium exited with {process.returncode} before listening")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("chromium wrote no DevToolsActivePort within 30 s")


def page_target(port: int) -> str:
    """The WebSocket debugger URL of Chromium's first page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        targets = json.loads(response.read())
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")


async def drive_page(debugger_url: str, page_url: str, screenshot: Path) -> dict[str, Any]:
    """Open the page, watch prices change and candles appear, take a screenshot."""
    async with asyncio.timeout(240), connect(debugger_url, max_size=None) as ws:
        page = DevTools(ws)
        await page.call("Page.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=1440,
            height=820,
            deviceScaleFactor=1,
            mobile=False,
        )
        await page.call("Page.navigate", url=page_url)
        await page.wait_for(
            "document.readyState === 'complete' && typeof window.__watchlist === 'function'",
            timeout=20,
            what="the page and its script loaded",
        )
        seen: dict[str, Any] = {"hash_after_load": await page.evaluate("location.hash")}
        await page.wait_for(
            "window.__market_state().connection === 'live'",
            timeout=20,
            what="the page authenticated on the stream",
        )
        first = await page.wait_for(
            "Object.keys(window.__watchlist()).length >= 5 && window.__watchlist()",
            timeout=30,
            what="the watchlist filled with last prices",
        )
        changed = await page.wait_for(
            f"(() => {{ const before = {json.dumps(first)}; const now = window.__watchlist();"
            " return Object.keys(now).filter((s) => s in before && now[s] !== before[s]); })()",
            timeout=30,
            what="a last price on the page changed",
        )
        seen.update(first=first, changed=changed)
        seen["rows"] = await page.wait_for(
            "document.querySelectorAll('#watchlist tbody tr').length >= 20"
            " && document.querySelectorAll('#watchlist tbody tr').length",
            timeout=30,
            what="a watchlist row per simulated symbol",
        )
        seen["selected"] = await page.wait_for(
            "window.__market_state().selected", timeout=10, what="a symbol charted"
        )
        # The chart opens on 1-minute bars; switch to 1-second ones through the page's own
        # button so that closed bars arrive within seconds.
        await page.evaluate("document.querySelector('.timeframes button[data-tf=\"1\"]').click()")
        seen["candles"] = await page.wait_for(
            "window.__chart_candles() >= 5 && window.__chart_candles()",
            timeout=60,
            what="the chart drew candles from bars",
        )
        seen["candles_attribute"] = await page.evaluate(
            "Number(document.getElementById('chart').dataset.candles)"
        )
        seen["canvases"] = await page.evaluate("document.querySelectorAll('#chart canvas').length")
        await asyncio.sleep(1.0)  # let a frame or two of flashes and candles render
        shot = await page.call("Page.captureScreenshot", format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        await page.call("Browser.close")
        return seen


@pytest.mark.timeout(300)
def test_the_market_page_shows_live_prices_and_candles_in_headless_chromium(tmp_path):
    """The demo's printed page URL, opened in headless Chromium: the token leaves the address
    bar, the watchlist fills and a last price changes, the chart draws candles from bars; a
    screenshot is kept. SIGINT then stops the demo with exit status 0."""
    chromium = find_chromium()
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
    demo = subprocess.Popen(
        [sys.executable, "-m", "tickerplant.cli", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    browser: subprocess.Popen[bytes] | None = None
    screenshot = tmp_path / "market_page.png"
    try:
        output = "\n".join(wait_for_line(demo, r"Press Ctrl-C to stop", timeout=90))
        page_url = re.search(r"page\s+(http://127\.0\.0\.1:\d+/#token=tp_\S+)", output).group(1)
        api = page_url.split("/#", 1)[0]
        token = page_url.split("#token=", 1)[1]
        stream = re.search(r"stream\s+(ws://\S+)", output).group(1)

        request = urllib.request.Request(
            api + "/v1/stream-token", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            grant = json.loads(response.read())
        assert grant["token"].startswith("tps_")
        assert grant["stream_url"] == stream
        assert grant["user"] == "demo"

        browser, port = start_chromium(chromium, tmp_path / "chromium-profile")
        seen = asyncio.run(drive_page(page_target(port), page_url, screenshot))
        print(f"market page screenshot: {screenshot}")

        assert seen["hash_after_load"] == ""  # the API token left the address bar
        assert seen["rows"] == 20  # one row per simulated symbol
        assert seen["changed"], "no last price changed"
        assert seen["selected"] in seen["first"]
        assert seen["candles"] >= 5
        assert seen["candles_attribute"] >= 5
        assert seen["canvases"] > 0
        assert screenshot.stat().st_size > 10_000

        browser.wait(timeout=30)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        for process in (browser, demo):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    assert demo.returncode == 0, rest
    assert rest.rstrip().endswith("tickerplant demo stopped")
