"""``tickerplant candles``: run the candles dataflow on the configured bus and database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from candles.dataflow import BarBusSink, BusBridge, BusSource, build_flow
from candles.metrics import CandlesMetrics
from tickerplant.bus import make_bus
from tickerplant.db import migrate, resolve_database_url
from tickerplant.observability import Health, MetricsServer, new_registry
from tickerplant.runtime import tune_gc_for_throughput
from tickerplant.settings import Settings
from tickerplant.topics import MD_BARS, MD_TRADES

__all__ = ["run_candles", "run_dataflow"]

logger = logging.getLogger(__name__)


def run_dataflow(
    bridge: BusBridge,
    *,
    settings: Settings,
    dsn: str,
    stop: threading.Event,
    announce: Callable[[str], None] = logger.info,
    trades_topic: str = MD_TRADES,
    bars_topic: str = MD_BARS,
    until_end: bool = False,
    metrics: CandlesMetrics | None = None,
) -> None:
    """Run the dataflow over a started bus (reached through ``bridge``) until ``stop`` is set.

    Blocks this thread; the demo runs it on a worker thread with a bridge to its own loop.
    ``until_end``: stop (and close every open bar) once ``trades_topic`` is read up to the
    end it had at start-up — a backfill, or the last run of a recovery test.

    With recovery, the source's offsets and the windows' state are snapshotted at the same
    epoch boundaries into the one recovery store, every ``flush_interval_s``; a restart
    resumes both from the last epoch committed there, so offsets are never committed to
    Kafka separately (no consumer group).
    """
    c = settings.candles
    for topic in (trades_topic, bars_topic):
        bridge.run(bridge.bus.create_topic(topic))
    source = BusSource(
        bridge, trades_topic, batch_size=c.batch_size, until_end=until_end, stop=stop
    )
    flow = build_flow(
        source,
        dsn=dsn,
        bars_sink=BarBusSink(bridge, bars_topic),
        allowed_lateness_s=c.allowed_lateness_s,
        timeframes_s=c.timeframes_s,
        metrics=metrics,
    )
    recovery = RecoveryConfig(str(Path(c.recovery_dir))) if c.recovery_dir else None
    announce(f"candles: {trades_topic} -> bars {c.timeframes_s}s -> PostgreSQL and {bars_topic}")
    run_main(flow, epoch_interval=timedelta(seconds=c.flush_interval_s), recovery_config=recovery)


def run_candles(
    settings: Settings,
    *,
    until: Callable[[], None] | threading.Event,
    dsn: str | None = None,
    announce: Callable[[str], None] = logger.info,
    trades_topic: str = MD_TRADES,
    bars_topic: str = MD_BARS,
    until_end: bool = False,
) -> None:
    """Run the dataflow (one worker, in this thread) until ``until`` is set or returns.

    ``until`` is an Event, or a blocking callable run in a helper thread (e.g. waiting for
    a stop signal). Recovery is on when ``settings.candles.recovery_dir`` is set: it must
    have been initialised with ``python -m bytewax.recovery DIR 1``. The topics and
    ``until_end`` are as for :func:`run_dataflow`.
    """
    tune_gc_for_throughput()
    embedded = None
    if dsn is None:
        dsn, embedded = resolve_database_url(settings)
    migrate(dsn)
    stop = until if isinstance(until, threading.Event) else threading.Event()
    if not isinstance(until, threading.Event):
        threading.Thread(target=lambda: (until(), stop.set()), daemon=True).start()
    registry = new_registry("candles")
    metrics = CandlesMetrics(registry)
    server = MetricsServer(
        registry, Health(), host=settings.metrics.host, port=settings.candles.metrics_port
    ).start()
    announce(f"candles metrics on http://{server.host}:{server.port}/metrics")
    bridge = BusBridge(make_bus(settings))
    try:
        bridge.run(bridge.bus.start())
        run_dataflow(
            bridge,
            settings=settings,
            dsn=dsn,
            stop=stop,
            announce=announce,
            trades_topic=trades_topic,
            bars_topic=bars_topic,
            until_end=until_end,
            metrics=metrics,
        )
    finally:
        bridge.run(bridge.bus.close())
        bridge.close()
        server.stop()
        if embedded is not None:
            embedded.stop()
