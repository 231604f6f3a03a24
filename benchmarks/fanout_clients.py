"""A load-generating process of ``benchmarks/fanout.py``: many WebSocket clients on one loop.

Commands on a ``multiprocessing`` connection:

- ``("connect", url, first_index, count, token)``: open ``count`` clients (at most 200
  handshakes at a time); with a token, each authenticates and subscribes to trades and
  quotes of 20 of the 100 symbols (client ``i`` takes ``symbols_for(i)``: a fixed
  pseudo-random 20 of the 100, so subscription sets differ between clients).
  Answers ``{"ok": n, "errors": [...]}``.
- ``("window", start_s, end_s)``: count what arrives between these wall-clock times.
- ``("stats",)``: answers the counts and the latency samples of the window.
- ``("close",)``: closes every client; ``("exit",)`` ends the process.

Cheap on purpose: the clients share the 2 cores with the server they measure, so every
microsecond a client spends is taken from the server. Each client is a bare
``asyncio.Protocol`` speaking just enough RFC 6455 to be a correct client of both servers:
the opening handshake (status 101 checked), masked text frames out, unmasked frames in
(text counted, ping answered with pong, close answered and the socket closed). A frame is
not parsed as JSON: its data messages are counted with ``bytes.count``, and every
``LATENCY_EVERY``-th data frame of a process gives a latency sample: receive time minus the
*oldest* ``t`` in the frame (the publish time, see ``fanout_servers``), so the sample is the
frame's worst message. The servers' protocol handling is tested with the ``websockets``
client in ``tests/``; here that client would cost several times more CPU per frame than
the server spends sending it.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import json
import os
import random
import re
import time
from array import array
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from fanout_servers import SYMBOLS, raise_nofile

_T = re.compile(rb'"t":"([^"]+)"')
CONNECT_CONCURRENCY = 200
SYMBOLS_PER_CLIENT = 20
# One latency sample per LATENCY_EVERY data frames of a process (finding the oldest ``t`` is
# half a client's work per frame): still 10^4-10^5 samples per window, taken regardless of
# content, so the percentiles are those of all frames.
LATENCY_EVERY = 4
_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


def symbols_for(index: int) -> list[str]:
    """Client ``index``'s 20 symbols: a fixed pseudo-random choice (seeded by the index)."""
    return random.Random(index).sample(SYMBOLS, SYMBOLS_PER_CLIENT)


class _Window:
    def __init__(self) -> None:
        self.reset(0, 0)
        self.seconds: dict[bytes, int] = {}

    def reset(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.messages = 0
        self.frames = 0
        self.latency_ms = array("d")

    def publish_ns(self, t: bytes) -> int:
        """``2024-11-20T14:30:00.123456789Z`` → ns; the seconds part is cached."""
        head = t[:19]
        base = self.seconds.get(head)
        if base is None:
            parsed = time.strptime(head.decode(), "%Y-%m-%dT%H:%M:%S")
            base = calendar.timegm(parsed) * 1_000_000_000
            self.seconds[head] = base
        return base + int(t[20:29])

    def on_frame(self, payload: bytes) -> None:
        now = time.time_ns()
        if not self.start_ns <= now < self.end_ns:
            return
        data = payload.count(b'"T":"q"') + payload.count(b'"T":"t"')
        if not data:
            return
        self.frames += 1
        self.messages += data
        if self.frames % LATENCY_EVERY:
            return
        oldest = min(_T.findall(payload))
        self.latency_ms.append((now - self.publish_ns(oldest)) / 1e6)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2, §5.3), FIN set."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


class _LeanClient(asyncio.Protocol):
    """One WebSocket client: handshake, then frames parsed from a buffer in place."""

    def __init__(self, host: str, path: str, window: _Window) -> None:
        self.host = host
        self.path = path
        self.window = window
        self.buffer = bytearray()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handshaken = False
        self.setup: asyncio.Queue[bytes] | None = asyncio.Queue()  # texts before the window
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if self.setup is not None:
            self.setup.put_nowait(b"")

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(_client_frame(_OP_TEXT, text.encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_client_frame(_OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(f"handshake: {status!r}"))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.handshaken = True
            self.opened.set_result(None)
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            opcode = buffer[pos] & 0x0F
            length = buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buffer[pos + head : end])
            pos = end
            if opcode == _OP_TEXT:
                if self.setup is not None:
                    self.setup.put_nowait(payload)
                else:
                    self.window.on_frame(payload)
            elif opcode == _OP_PING:
                self.transport.write(_client_frame(_OP_PONG, payload))  # type: ignore[union-attr]
            elif opcode == _OP_CLOSE:
                self.close()
                break
        del buffer[:pos]

    async def next_text(self, timeout: float = 60.0) -> bytes:
        assert self.setup is not None
        text = await asyncio.wait_for(self.setup.get(), timeout)
        if not text:
            raise ConnectionError("closed during set-up")
        return text


async def _client(
    url: str, index: int, token: str | None, gate: asyncio.Semaphore, window: _Window
) -> _LeanClient:
    parts = urlsplit(url)
    async with gate:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: _LeanClient(parts.netloc, parts.path or "/", window),
            parts.hostname,
            parts.port,
        )
        await asyncio.wait_for(client.opened, 60)
        if token is not None:
            await client.next_text()  # connected
            client.send_text(json.dumps({"action": "auth", "token": token}))
            reply = await client.next_text()
            if b"authenticated" not in reply:
                raise RuntimeError(f"auth: {reply[:200]!r}")
            symbols = symbols_for(index)
            client.send_text(
                json.dumps({"action": "subscribe", "trades": symbols, "quotes": symbols})
            )
            reply = await client.next_text()
            if b'"subscription"' not in reply:
                raise RuntimeError(f"subscribe: {reply[:200]!r}")
        client.setup = None  # from now on every text frame goes to the window
    return client


async def _main(conn: Connection) -> None:
    raise_nofile()
    window = _Window()
    clients: list[_LeanClient] = []
    while True:
        command = await asyncio.to_thread(conn.recv)
        kind = command[0]
        if kind == "connect":
            _, url, first, count, token = command
            gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
            results = await asyncio.gather(
                *(_client(url, first + i, token, gate, window) for i in range(count)),
                return_exceptions=True,
            )
            clients = [r for r in results if isinstance(r, _LeanClient)]
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
            for client in clients:
                client.close()
            clients = []
            conn.send({"closed": True})
        elif kind == "exit":
            return


def run_clients(conn: Connection) -> None:
    asyncio.run(_main(conn))
