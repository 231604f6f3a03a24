"""The candles dataflow counts what it applies, refuses and skips, in Prometheus counters."""

from __future__ import annotations

from bytewax.testing import TestingSink, run_main
from prometheus_client import CollectorRegistry

from candles.dataflow import BusBridge, BusSource, build_flow
from candles.metrics import CandlesMetrics
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import MemoryBus
from tickerplant.topics import MD_TRADES

S = 1_000_000_000
T0 = 1_699_999_980 * S  # a whole minute


def _trades(symbol: str, *trades: tuple[int, int]) -> bytes:
    """An md.trades record value: (exchange time offset in seconds, seq) per trade."""
    batch = pb.EventBatch(symbol=symbol)
    for offset_s, seq in trades:
        batch.events.add().trade.CopyFrom(
            pb.Trade(
                symbol=symbol,
                seq=seq,
                exchange_ts_ns=T0 + offset_s * S,
                price=1_000_000,
                size=100,
                match_number=seq,
            )
        )
    return batch.SerializeToString()


def test_applied_too_late_and_undecodable_trades_and_emitted_bars_are_counted() -> None:
    """AAPL trades at 0 s, 1 s and 30 s, then one at 5 s (25 s behind, lateness 10 s: too
    late), then a record that is not an EventBatch. Counters: 3 applied, 1 too late, 1
    undecodable, 0 unmatched breaks; bars emitted = 1-second bars at 0, 1, 30 plus the
    minute bar at 0 (flushed at the end of input) = 4."""
    bridge = BusBridge(MemoryBus(partitions=1))
    try:
        bridge.run(bridge.bus.start())
        bridge.run(bridge.bus.create_topic(MD_TRADES))
        for value in (
            _trades("AAPL", (0, 1), (1, 2), (30, 3)),
            _trades("AAPL", (5, 4)),
            b"\xff\x00 not protobuf",
        ):
            bridge.run(bridge.bus.publish(MD_TRADES, b"AAPL", value))
        registry = CollectorRegistry()
        metrics = CandlesMetrics(registry)
        emitted: list = []
        flow = build_flow(
            BusSource(bridge, MD_TRADES, until_end=True),
            dsn=None,
            bars_sink=TestingSink(emitted),  # type: ignore[arg-type]
            allowed_lateness_s=10,
            metrics=metrics,
        )
        run_main(flow)
    finally:
        bridge.run(bridge.bus.close())
        bridge.close()
    value = registry.get_sample_value
    assert value("tp_candles_trades_total") == 3
    assert value("tp_candles_trades_too_late_total") == 1
    assert value("tp_candles_records_undecodable_total") == 1
    assert value("tp_candles_unmatched_breaks_total") == 0
    assert value("tp_candles_bars_emitted_total") == 4
    assert sorted((bar.timeframe_s, bar.start_ns - T0) for _, bar in emitted) == [
        (1, 0),
        (1, 1 * S),
        (1, 30 * S),
        (60, 0),
    ]
