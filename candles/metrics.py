"""The candles dataflow's Prometheus counters, served by ``tickerplant candles`` on
``/metrics`` (``TP_METRICS__PORT``). One set per process, shared by its workers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class CandlesMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.trades = Counter(
            "tp_candles_trades", "Trades applied to the windows", registry=registry
        )
        self.too_late = Counter(
            "tp_candles_trades_too_late",
            "Trades older than the allowed lateness: counted, logged, not applied",
            registry=registry,
        )
        self.unmatched_breaks = Counter(
            "tp_candles_unmatched_breaks",
            "Broken trades naming no trade still revisable",
            registry=registry,
        )
        self.undecodable = Counter(
            "tp_candles_records_undecodable",
            "md.trades records that are not an EventBatch: skipped",
            registry=registry,
        )
        self.bars = Counter(
            "tp_candles_bars_emitted",
            "Bars closed or revised (each is stored and published)",
            registry=registry,
        )
