"""The fanout's two hot paths in isolation, each next to the plain way of doing the same.

1. **Input** (µs of CPU per input update): the benchmark feeder's ``EventBatch`` records
   through decode, update building and the three default tiers (realtime muted, 200 ms,
   1 s), fed per update (``UpdateBuilder.build_batch``, as while a realtime subscriber
   listens) and per read (``build_conflated``, as while none does); decode alone for scale.
2. **Direct writes** (µs of CPU per client per tick): ``N`` clients on real sockets
   (``socket.socketpair`` under asyncio transports), each reading 40 of 200 fragments;
   ``fanout._fastwrite.write_direct`` against the same checks and frame building written in
   Python (the loop it replaced), and ``transport.write`` of a ready frame alone (the floor).
   Reading the other ends between ticks is not timed.

    .venv/bin/python benchmarks/fanout_paths.py [--clients 2000] [--ticks 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import time
from operator import itemgetter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fanout_servers import _Feeder, raise_nofile  # noqa: E402
from websockets.protocol import State  # noqa: E402

from conflate import Conflator, Tier, UpdateBuilder  # noqa: E402
from fanout._fastwrite import write_direct  # noqa: E402
from fanout.wire import text_frame_header  # noqa: E402
from normalize.proto import marketdata_pb2 as pb  # noqa: E402

TIERS = (Tier("realtime", 0), Tier("200ms", 200), Tier("1s", 1000))
READ = 200  # records per bus read (the feeder publishes 200 per 10 ms)


def input_path(runs: int) -> dict[str, list[float]]:
    feeder = _Feeder(100_000)
    ticks = [feeder.tick() for _ in range(200)]
    records = [value for quotes, trades in ticks for _, value in quotes + trades]
    updates_in = feeder.per_tick * len(ticks)
    out: dict[str, list[float]] = {"decode only": [], "per update": [], "per read": []}
    for _ in range(runs):
        start = time.process_time()
        for value in records:
            list(pb.EventBatch.FromString(value).events)
        out["decode only"].append((time.process_time() - start) / updates_in * 1e6)

        builder, tiers = UpdateBuilder(), [Conflator(t) for t in TIERS]
        start = time.process_time()
        for value in records:
            updates = builder.build_batch(pb.EventBatch.FromString(value).events)
            for tier in tiers:
                tier.add_updates(updates, emit=False)
        out["per update"].append((time.process_time() - start) / updates_in * 1e6)

        builder, tiers = UpdateBuilder(), [Conflator(t) for t in TIERS]
        start = time.process_time()
        for first in range(0, len(records), READ):
            batches = [pb.EventBatch.FromString(v).events for v in records[first : first + READ]]
            read = builder.build_conflated(batches)
            for tier in tiers:
                updates = read.latest if tier.tier.realtime else read.updates
                tier.add_updates(updates, emit=False, events_in=read.events_in)
        out["per read"].append((time.process_time() - start) / updates_in * 1e6)
    return out


class _Sink(asyncio.Protocol):
    pass


class _Protocol:
    def __init__(self) -> None:
        self._state = State.OPEN

    @property
    def state(self) -> State:  # a property, as websockets' is
        return self._state


class _Ws:
    def __init__(self, transport: asyncio.Transport) -> None:
        self.paused = False
        self.protocol = _Protocol()
        self.transport = transport


class _Stats:
    sent = 0


class _Outbox:
    def __init__(self) -> None:
        self.waiting: list = []
        self.stats = _Stats()


class _Client:
    __slots__ = ("evicted", "outbox", "pending", "sending", "ws")

    def __init__(self, ws: _Ws) -> None:
        self.pending: list = []
        self.evicted = False
        self.sending = False
        self.outbox = _Outbox()
        self.ws = ws


def python_loop(work, getters, fragments, published, latencies: list) -> None:
    """The direct path as the Python ``_flush`` wrote it before ``write_direct``."""
    for client, getter in work:
        if client.pending or client.evicted:
            continue
        ws = client.ws
        if (
            client.outbox.waiting
            or client.sending
            or ws.paused
            or ws.protocol.state is not State.OPEN
            or getters.get(client) is not getter
        ):
            continue
        parts = getter(fragments)
        body = b",".join(parts)
        size = len(body) + 2
        ws.transport.write(b"".join((text_frame_header(size), b"[", body, b"]")))
        client.outbox.stats.sent += len(parts)
        latencies.append(time.time_ns() - min(getter(published)))


async def direct_writes(n: int, ticks: int, runs: int) -> dict[str, list[float]]:
    raise_nofile(4 * n + 1000)
    loop = asyncio.get_running_loop()
    pairs = []
    for _ in range(n):
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        transport, _ = await loop.create_connection(_Sink, sock=a)
        b.setblocking(False)
        pairs.append((transport, b))
    rng = random.Random(1)
    now = time.time_ns()
    fragments = [
        b'{"T":"q","S":"S%03d","bp":99.0123,"bs":100,"ap":100.01,"as":200,'
        b'"t":"2026-11-25T06:30:00.123456789Z","i":%d}' % (i, 1_000_000 + i)
        for i in range(200)
    ]
    published = [now - 5_000_000 + i for i in range(200)]
    entries = [(f, float(p - now)) for f, p in zip(fragments, published, strict=True)]
    clients = [_Client(_Ws(transport)) for transport, _ in pairs]
    getters = {c: itemgetter(*sorted(rng.sample(range(200), 40))) for c in clients}
    work = list(getters.items())
    ready = b"x" * 4200

    def drain() -> None:
        for _, b in pairs:
            try:
                while b.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass

    def one(kind: str) -> float:
        cpu = 0.0
        for _ in range(ticks):
            drain()
            start = time.process_time()
            if kind == "write_direct (C)":
                write_direct(work, getters, entries, 500, State.OPEN, now)
            elif kind == "Python loop":
                python_loop(work, getters, fragments, published, [])
            else:
                for transport, _ in pairs:
                    transport.write(ready)
            cpu += time.process_time() - start
        return cpu / (ticks * n) * 1e6

    out: dict[str, list[float]] = {"write_direct (C)": [], "Python loop": [], "write only": []}
    for _ in range(runs):
        for kind in out:
            out[kind].append(one(kind))
    for transport, b in pairs:
        transport.close()
        b.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"fanout paths {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.runs}"
    )
    print("\n| input path | µs CPU per update | runs |\n| --- | ---: | --- |")
    for name, values in input_path(args.runs).items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {statistics.median(values):.2f} | {runs} |")
    print(f"\n| direct writes, {args.clients:,} clients | µs CPU per client | runs |")
    print("| --- | ---: | --- |")
    for name, values in asyncio.run(direct_writes(args.clients, args.ticks, args.runs)).items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {statistics.median(values):.2f} | {runs} |")


if __name__ == "__main__":
    main()
