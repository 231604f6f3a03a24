"""WebSocket fanout under load: the stream server next to a raw ``websockets`` broadcast loop.

For each client count (default 1,000 and 10,000), in one run:

1. **fanout**: a ``FanoutServer`` process (``fanout_servers.run_fanout``: the server, a
   ``MemoryBus`` and a feeder publishing 100,000 Quote/Trade updates/s over 100 symbols,
   batched per 10 ms) and ``--procs`` client processes (``fanout_clients``) that open the
   clients, authenticate with a signed stream token and subscribe each to trades and quotes of
   20 of the 100 symbols on the default (200 ms) tier;
2. **raw**: a bare ``websockets`` server process broadcasting, every 200 ms, one frame of the
   same JSON messages (20 quotes + 20 trades, ``t`` = now) to every client with
   ``websockets.asyncio.server.broadcast``: no auth, routing, conflation or per-client queue.
   The same client processes connect to it.

Per server: delivered data messages/s (counted by the clients over ``--seconds`` after a
``--warmup``), publish→client latency p50/p99 (client receive time minus the publish time in
the message's ``t``, one sample per frame: its oldest message), server CPU seconds per million
delivered messages (psutil, the whole server process; for fanout that includes the feeder,
whose share is printed), and resident memory per client: (RSS with N idle subscribed
clients - RSS with none) / N, and the same under load. Targets from issue 4: fanout ≥ 70 % of
the raw loop's delivered messages/s; p99 < interval + 50 ms at 10,000 clients; < 50 KB per idle
client.

Only 127.0.0.1; every phase is bounded in time. Needs root (or a high hard ``RLIMIT_NOFILE``)
for 10,000 clients.

    .venv/bin/python benchmarks/fanout.py [--clients 1000,10000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from fanout_clients import run_clients  # noqa: E402
from fanout_servers import SECRET, raise_nofile, run_fanout, run_raw  # noqa: E402

from fanout import issue_stream_token  # noqa: E402
from tickerplant.identity import Role, User, UserId  # noqa: E402

SYMBOLS_PER_CLIENT = 20
LATENCY_MARGIN_MS = 50.0
KB_PER_IDLE_CLIENT = 50.0
RAW_SHARE = 0.70
INPUT_SHARE = 0.95
_ctx = multiprocessing.get_context("fork")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _pin(pid: int, cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(pid, cpus)


def _cpus(text: str) -> set[int] | None:
    return {int(c) for c in text.split(",")} if text else None


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _rss(proc: psutil.Process) -> int:
    return proc.memory_info().rss


def measure(kind: str, clients: list, n: int, args: argparse.Namespace) -> dict:
    """One server (``fanout`` or ``raw``) with ``n`` clients spread over ``clients``."""
    parent, child = _ctx.Pipe()
    if kind == "fanout":
        target, kwargs = (
            run_fanout,
            {"max_connections": n + 1000, "rate": args.rate, "interval_ms": args.interval_ms},
        )
        user = User(UserId(1), "bench", Role.QUANT, datetime(2024, 1, 1, tzinfo=UTC))
        token = issue_stream_token(SECRET, user, now_s=time.time(), ttl_s=3600)
    else:
        target, kwargs = (
            run_raw,
            {"symbols_per_client": SYMBOLS_PER_CLIENT, "interval_ms": args.interval_ms},
        )
        token = None
    server = _ctx.Process(target=target, args=(child,), kwargs=kwargs, daemon=True)
    server.start()
    _pin(server.pid, args.server_cpus)
    try:
        if not parent.poll(30):
            raise RuntimeError(f"{kind} server did not start")
        url = parent.recv()["url"]
        proc = psutil.Process(server.pid)
        time.sleep(1.0)
        rss_empty = _rss(proc)

        began = time.monotonic()
        share = -(-n // len(clients))
        first = 0
        for conn in clients:
            count = min(share, n - first)
            conn.send(("connect", url, first, count, token))
            first += count
        connected = [conn.recv() for conn in clients]
        connect_s = time.monotonic() - began
        ok = sum(c["ok"] for c in connected)
        errors = [e for c in connected for e in c["errors"]][:3]
        time.sleep(2.0)
        rss_idle = _rss(proc)

        start = time.time()
        window = (start + args.warmup, start + args.warmup + args.seconds)
        parent.send(("feed", args.warmup + args.seconds + 0.5))
        for conn in clients:
            conn.send(("window", *window))
        time.sleep(max(0.0, window[0] - time.time()))
        cpu0 = _cpu_s(proc)
        time.sleep(max(0.0, window[1] - time.time()))
        cpu1 = _cpu_s(proc)
        rss_load = _rss(proc)
        if not parent.poll(args.seconds + 30):
            raise RuntimeError(f"{kind} feed did not finish")
        feed = parent.recv()
        latency: list[float] = []
        messages = frames = 0
        for conn in clients:
            conn.send(("stats",))
            stats = conn.recv()
            messages += stats["messages"]
            frames += stats["frames"]
            samples = array("d")
            samples.frombytes(stats["latency_ms"])
            latency.extend(samples)
        for conn in clients:
            conn.send(("close",))
        for conn in clients:
            conn.recv()
        parent.send(("stop",))
    finally:
        server.join(20)
        if server.is_alive():
            server.terminate()
            server.join(5)
    latency.sort()
    cpu = cpu1 - cpu0
    delivered = messages / args.seconds
    result = {
        "kind": kind,
        "clients": n,
        "connected": ok,
        "connect_s": connect_s,
        "errors": errors,
        "delivered": delivered,
        "offered_out": ok * 2 * SYMBOLS_PER_CLIENT * 1000 / args.interval_ms,
        "frames": frames,
        "p50": _percentile(latency, 0.50),
        "p99": _percentile(latency, 0.99),
        "max": latency[-1] if latency else float("nan"),
        "cpu_s": cpu,
        "cpu_per_m": cpu / messages * 1e6 if messages else float("nan"),
        "kb_idle": (rss_idle - rss_empty) / max(ok, 1) / 1024,
        "kb_load": (rss_load - rss_empty) / max(ok, 1) / 1024,
        "feed": feed,
    }
    if kind == "fanout":
        result["input_rate"] = feed["updates"] / feed["elapsed_s"]
        result["feeder_cpu_s"] = feed["cpu_s"] * args.seconds / feed["elapsed_s"]
    return result


def run_phase(n: int, args: argparse.Namespace) -> list[dict]:
    conns, procs = [], []
    for _ in range(args.procs):
        parent, child = _ctx.Pipe()
        proc = _ctx.Process(target=run_clients, args=(child,), daemon=True)
        proc.start()
        _pin(proc.pid, args.client_cpus)
        conns.append(parent)
        procs.append(proc)
    try:
        return [measure(kind, conns, n, args) for kind in ("fanout", "raw")]
    finally:
        for conn in conns:
            conn.send(("exit",))
        for proc in procs:
            proc.join(20)
            if proc.is_alive():
                proc.terminate()


def _row(r: dict) -> str:
    input_rate = f"{r['input_rate'] / 1000:.1f} k" if "input_rate" in r else "—"
    return (
        f"| {r['clients']:,} | {r['kind']} | {r['connected']:,} | {input_rate} "
        f"| {r['offered_out'] / 1000:,.0f} k | {r['delivered'] / 1000:,.1f} k "
        f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['cpu_s']:.1f} | {r['cpu_per_m']:.1f} "
        f"| {r['kb_idle']:.1f} | {r['kb_load']:.1f} |"
    )


def report(results: list[dict], args: argparse.Namespace) -> bool:
    print()
    print(
        f"{args.seconds:g} s window after {args.warmup:g} s warm-up, {args.procs} client "
        f"processes, {args.interval_ms} ms tier, offered input {args.rate:,} updates/s, "
        f"server on CPUs {sorted(args.server_cpus or []) or 'any'}, "
        f"clients on CPUs {sorted(args.client_cpus or []) or 'any'}"
    )
    print()
    print(
        "| clients | server | connected | input/s achieved | offered out/s | delivered msgs/s "
        "| p50 ms | p99 ms | server CPU s | CPU s / M msgs | KB/idle client | KB/client loaded |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(_row(r))
    print()
    for r in results:
        extra = ""
        if r["kind"] == "fanout":
            extra = (
                f", feeder {r['feeder_cpu_s']:.1f} CPU s of the window, "
                f"{r['feed']['skipped']} feed ticks skipped, "
                f"{r['feed']['evictions']} evictions, gen2 gc {r['feed']['gc_n']} "
                f"taking {r['feed']['gc_s']:.2f} s"
            )
        print(
            f"{r['kind']} @ {r['clients']:,}: connected in {r['connect_s']:.1f} s, "
            f"{r['frames']:,} frames, latency max {r['max']:.0f} ms{extra}"
            + (f"; errors {r['errors']}" if r["errors"] else "")
        )
    print()
    verdicts: list[bool] = []
    by = {(r["clients"], r["kind"]): r for r in results}
    for n in args.clients:
        fan, raw = by[(n, "fanout")], by[(n, "raw")]
        share = fan["delivered"] / raw["delivered"] if raw["delivered"] else float("nan")
        passed = share >= RAW_SHARE
        verdicts.append(passed)
        print(
            f"{'PASS' if passed else 'FAIL'}  {n:,} clients: fanout delivers {share:.0%} of the "
            f"raw loop's messages/s (target >= {RAW_SHARE:.0%})"
        )
        # The issue's load is 100,000 input updates/s: a fanout that delivers its share
        # only because its feeder could not offer the input has not carried that load.
        passed = fan["input_rate"] >= INPUT_SHARE * args.rate
        verdicts.append(passed)
        print(
            f"{'PASS' if passed else 'FAIL'}  {n:,} clients: took in {fan['input_rate']:,.0f} of "
            f"the offered {args.rate:,} updates/s (target >= {INPUT_SHARE:.0%})"
        )
        passed = fan["kb_idle"] < KB_PER_IDLE_CLIENT
        verdicts.append(passed)
        print(
            f"{'PASS' if passed else 'FAIL'}  {n:,} clients: {fan['kb_idle']:.1f} KB per idle "
            f"client (target < {KB_PER_IDLE_CLIENT:g} KB)"
        )
    limit = args.interval_ms + LATENCY_MARGIN_MS
    at_10k = [n for n in args.clients if n >= 10_000]
    if at_10k:
        fan = by[(max(at_10k), "fanout")]
        passed = fan["p99"] < limit
        verdicts.append(passed)
        print(
            f"{'PASS' if passed else 'FAIL'}  {fan['clients']:,} clients: p99 {fan['p99']:.0f} ms "
            f"(target < {args.interval_ms} + {LATENCY_MARGIN_MS:g} = {limit:g} ms)"
        )
    else:
        print(f"----  p99 target (< {limit:g} ms at 10,000 clients): not run")
    return all(verdicts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1000, 10000],
        help="comma-separated client counts (default 1000,10000)",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--rate", type=int, default=100_000, help="input updates/s offered")
    parser.add_argument("--interval-ms", type=int, default=200, help="the default tier")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--server-cpus",
        type=_cpus,
        default=_cpus("0"),
        help="CPUs the server process may run on (comma-separated; '' = any)",
    )
    parser.add_argument(
        "--client-cpus",
        type=_cpus,
        default=_cpus("1"),
        help="CPUs the client processes may run on (comma-separated; '' = any)",
    )
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120 or any(not 1 <= n <= 20_000 for n in args.clients):
        parser.error("--seconds must be 1..120 and each client count 1..20000")
    raise_nofile()
    print(
        f"fanout benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {psutil.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    results: list[dict] = []
    for n in args.clients:
        phase = run_phase(n, args)
        for r in phase:
            print(
                f"  {r['kind']} @ {n:,}: {r['connected']:,} connected, "
                f"{r['delivered']:,.0f} msgs/s, p99 {r['p99']:.1f} ms",
                flush=True,
            )
        results += phase
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
