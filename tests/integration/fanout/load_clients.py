"""A load-generating child process: N WebSocket clients connect at once and time their snapshot.

``python -m tests.integration.fanout.load_clients URL TOKEN N SYMBOLS_PER_CLIENT`` prints one
JSON line: how many clients got their snapshot, the slowest time from the start to a
client's snapshot and from a client's own connection to its snapshot (seconds), and the
connect spread. Runs in its own process so the
clients' CPU does not share the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect

UNIVERSE = [f"S{i:03d}" for i in range(20)]


async def one(url: str, token: str, index: int, per_client: int, start: float) -> dict:
    symbols = [UNIVERSE[(index + k) % len(UNIVERSE)] for k in range(per_client)]
    async with connect(url, open_timeout=20, compression=None) as ws:
        connected = time.perf_counter() - start
        await ws.recv()  # connected
        await ws.send(json.dumps({"action": "auth", "token": token}))
        await ws.recv()  # authenticated
        await ws.send(json.dumps({"action": "subscribe", "quotes": symbols}))
        first = json.loads(await ws.recv())
        done = time.perf_counter() - start
        got = sorted(m["S"] for m in first if m["T"] == "q")
        return {"ok": got == sorted(symbols), "connected": connected, "snapshot": done}


async def main(url: str, token: str, count: int, per_client: int) -> None:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(one(url, token, i, per_client, start) for i in range(count)), return_exceptions=True
    )
    good = [r for r in results if isinstance(r, dict) and r["ok"]]
    errors = [repr(r) for r in results if isinstance(r, BaseException)][:3]
    print(
        json.dumps(
            {
                "ok": len(good),
                "slowest_snapshot_s": max((r["snapshot"] for r in good), default=None),
                "slowest_after_connect_s": max(
                    (r["snapshot"] - r["connected"] for r in good), default=None
                ),
                "last_connected_s": max((r["connected"] for r in good), default=None),
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
