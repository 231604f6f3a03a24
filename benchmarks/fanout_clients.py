"""A load-generating process of ``benchmarks/fanout.py``: many WebSocket clients on one loop.

Commands on a ``multiprocessing`` connection:

- ``("connect", url, first_index, count, token)``: open ``count`` clients (at most 200
  handshakes at a time); with a token, each authenticates and subscribes to trades and
  quotes of 20 of the 100 symbols (client ``i`` takes symbols ``20·i mod 100`` onwards).
  Answers ``{"ok": n, "errors": [...]}``.
- ``("window", start_s, end_s)``: count what arrives between these wall-clock times.
- ``("stats",)``: answers the counts and the latency samples of the window.
- ``("close",)``: closes every client; ``("exit",)`` ends the process.

Cheap on purpose (the clients share 2 cores with the server): a frame is not parsed as
JSON; its data messages are counted with ``str.count`` and one latency sample is taken per
frame: receive time minus the *oldest* ``t`` in the frame (the publish time, see
``fanout_servers``), so the sample is the frame's worst message.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import time
from array import array
from multiprocessing.connection import Connection

from fanout_servers import SYMBOLS, raise_nofile
from websockets.asyncio.client import ClientConnection, connect

_T = re.compile(r'"t":"([^"]+)"')
CONNECT_CONCURRENCY = 200


class _Window:
    def __init__(self) -> None:
        self.reset(0, 0)
        self.seconds: dict[str, int] = {}

    def reset(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.messages = 0
        self.frames = 0
        self.latency_ms = array("d")

    def publish_ns(self, t: str) -> int:
        """``2024-11-20T14:30:00.123456789Z`` → ns; the seconds part is cached."""
        head = t[:19]
        base = self.seconds.get(head)
        if base is None:
            base = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) * 1_000_000_000
            self.seconds[head] = base
        return base + int(t[20:29])

    def on_frame(self, text: str) -> None:
        now = time.time_ns()
        if not self.start_ns <= now < self.end_ns:
            return
        data = text.count('"T":"q"') + text.count('"T":"t"')
        if not data:
            return
        self.frames += 1
        self.messages += data
        oldest = min(_T.findall(text))
        self.latency_ms.append((now - self.publish_ns(oldest)) / 1e6)


async def _client(
    url: str, index: int, token: str | None, gate: asyncio.Semaphore
) -> ClientConnection:
    async with gate:
        ws = await connect(url, open_timeout=60, compression=None, ping_interval=None)
        if token is not None:
            await ws.recv()  # connected
            await ws.send(json.dumps({"action": "auth", "token": token}))
            reply = await ws.recv()
            if "authenticated" not in reply:
                raise RuntimeError(f"auth: {reply[:200]}")
            start = (index * 20) % len(SYMBOLS)
            symbols = [SYMBOLS[(start + k) % len(SYMBOLS)] for k in range(20)]
            await ws.send(json.dumps({"action": "subscribe", "trades": symbols, "quotes": symbols}))
            reply = await ws.recv()
            if '"subscription"' not in reply:
                raise RuntimeError(f"subscribe: {reply[:200]}")
    return ws


async def _read(ws: ClientConnection, window: _Window) -> None:
    on_frame = window.on_frame
    try:
        async for message in ws:
            on_frame(message)  # type: ignore[arg-type]
    except Exception:  # a close mid-run is counted by the server's connection figure
        return


async def _main(conn: Connection) -> None:
    raise_nofile()
    window = _Window()
    clients: list[ClientConnection] = []
    readers: list[asyncio.Task] = []
    while True:
        command = await asyncio.to_thread(conn.recv)
        kind = command[0]
        if kind == "connect":
            _, url, first, count, token = command
            gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
            results = await asyncio.gather(
                *(_client(url, first + i, token, gate) for i in range(count)),
                return_exceptions=True,
            )
            clients = [r for r in results if isinstance(r, ClientConnection)]
            readers = [asyncio.create_task(_read(ws, window)) for ws in clients]
            errors = [repr(r) for r in results if isinstance(r, BaseException)]
            conn.send({"ok": len(clients), "errors": errors[:3], "failed": len(errors)})
        elif kind == "window":
            window.reset(int(command[1] * 1e9), int(command[2] * 1e9))
        elif kind == "stats":
            conn.send(
                {
                    "messages": window.messages,
                    "frames": window.frames,
                    "latency_ms": window.latency_ms.tobytes(),
                }
            )
        elif kind == "close":
            for task in readers:
                task.cancel()
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
            clients, readers = [], []
            conn.send({"closed": True})
        elif kind == "exit":
            return


def run_clients(conn: Connection) -> None:
    asyncio.run(_main(conn))
