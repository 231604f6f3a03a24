"""Process lifetime helpers shared by every long-running subcommand."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

logger = logging.getLogger(__name__)


def tune_gc_for_latency() -> None:
    """Keep garbage collection pauses out of a latency-sensitive process's tail.

    ``gc.freeze`` moves everything alive after start-up (modules, settings, the bus client)
    out of the collector's sight, so full collections stop re-scanning it; a larger
    first-generation threshold makes the young collections rarer, so fewer short-lived
    objects (events, updates, frames) are promoted and later re-scanned by a full
    collection. Measured: the feed's p99 at 100,000 msgs/s from about 1.1 ms to about 0.6 ms
    (``benchmarks/feed_latency.py``); the fanout with 10,000 clients from two full
    collections of ~0.47 s each per 11 s to none (``benchmarks/fanout.py``).
    """
    _freeze_start_up_heap(young_threshold=5_000)


def tune_gc_for_throughput() -> None:
    """Keep the cyclic garbage collector from re-scanning what lives for the whole run.

    For batch-shaped work that allocates an object or more per input (the candles dataflow:
    a tuple per trade, a few objects per bar): the start-up heap frozen as above and a young
    threshold ten times higher still, so collections are rarer and each one longer (pauses
    matter less than throughput there). Measured with ``benchmarks/candles_throughput.py``
    (no sinks, 1 worker): about 3.8 s of CPU without, 2.8-3.0 s with.
    """
    _freeze_start_up_heap(young_threshold=50_000)


def _freeze_start_up_heap(*, young_threshold: int) -> None:
    # Process-wide: only a process that is one service calls these (the demo, which runs
    # every component in one process, does not).
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 20, 100)


async def wait_for_stop_signal() -> signal.Signals:
    """Wait until SIGINT or SIGTERM arrives; return which.

    The handlers stay installed for the rest of the loop's life: a second Ctrl-C while the
    process shuts down is logged, not raised as ``KeyboardInterrupt`` in the middle of the
    clean-up (which would leave, say, the embedded PostgreSQL running).
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if received.done():
            logger.warning("%s received again: still stopping cleanly, please wait", sig.name)
        else:
            received.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return await received
