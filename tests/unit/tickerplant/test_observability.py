"""The /metrics + /healthz side server and structured logging."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from tickerplant.observability import Health, JsonFormatter, MetricsServer, configure_logging


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_endpoint_exposes_the_process_registry_and_healthz_follows_its_checks():
    """/metrics shows a counter's exact value; /healthz is 200 until a check reports a problem."""
    registry = CollectorRegistry()
    packets = Counter("tp_test_packets", "Packets read", registry=registry)
    packets.inc(7)
    feed_problem: list[str] = []
    health = Health()
    health.add("feed", lambda: feed_problem[0] if feed_problem else None)

    with MetricsServer(registry, health, port=0) as server:
        status, metrics = get(server.url + "/metrics")
        ok_status, ok_body = get(server.url + "/healthz")
        feed_problem.append("no packet for 30 s")
        bad_status, bad_body = get(server.url + "/healthz")

    assert status == 200
    assert "tp_test_packets_total 7.0" in metrics.splitlines()
    assert (ok_status, json.loads(ok_body)) == (200, {"status": "ok", "checks": {"feed": "ok"}})
    assert (bad_status, json.loads(bad_body)) == (
        503,
        {"status": "unhealthy", "checks": {"feed": "no packet for 30 s"}},
    )


def test_a_health_check_that_raises_is_reported_unhealthy_not_crashed():
    """A check raising ZeroDivisionError makes the report unhealthy with the exception named."""
    health = Health()
    health.add("broken", lambda: 1 / 0)
    assert health.report() == (
        False,
        {"broken": "check raised ZeroDivisionError: division by zero"},
    )


def test_json_logs_are_one_object_per_line_with_extra_fields():
    """A record logged with extra={'symbol': 'AAPL'} formats as JSON carrying that field."""
    record = logging.makeLogRecord(
        {"name": "ingest", "levelname": "WARNING", "msg": "gap of %d", "args": (3,)}
    )
    record.symbol = "AAPL"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "ingest"
    assert entry["message"] == "gap of 3"
    assert entry["symbol"] == "AAPL"


def test_an_unknown_log_level_is_refused_with_the_accepted_ones():
    """configure_logging('LOUD') raises ValueError listing DEBUG, INFO, WARNING, ERROR."""
    with pytest.raises(ValueError, match="'LOUD' is not one of DEBUG, INFO, WARNING, ERROR"):
        configure_logging("LOUD")
