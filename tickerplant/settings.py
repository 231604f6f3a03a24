"""Settings: every default lives here, once.

Read from ``TP_…`` environment variables and, when ``TP_CONFIG`` names one (or
``tickerplant.toml`` exists in the working directory), a TOML file. Environment wins over
the file. Nested values use ``__``: ``TP_FANOUT__PORT=9000``.

Unset ``database_url`` means the embedded PostgreSQL in ``data_dir``; unset
``kafka_bootstrap`` means the in-memory bus.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class KafkaSettings(BaseModel):
    """Bus behaviour when ``kafka_bootstrap`` is set."""

    partitions: int = Field(6, ge=1, description="partitions for topics the plant creates")
    connect_attempts: int = Field(5, ge=1, description="broker connection attempts at start-up")
    connect_backoff_s: float = Field(0.5, gt=0, description="first retry delay; doubles")
    connect_backoff_max_s: float = Field(5.0, gt=0, description="largest retry delay")
    request_timeout_s: float = Field(10.0, gt=0, description="per-request timeout")
    replication_factor: int = Field(1, ge=1, description="replicas of topics the plant creates")


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="REST API (bars, orders, accounts)")


class MetricsSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(9100, ge=0, le=65535, description="/metrics and /healthz; 0 picks one")


class FeedSettings(BaseModel):
    """The exchange feed: MoldUDP64 over UDP multicast, loopback by default."""

    group: str = "239.1.1.1"
    port: int = Field(26400, ge=1, le=65535)
    interface: str = Field("127.0.0.1", description="outgoing/joining interface address")
    ttl: int = Field(0, ge=0, le=255, description="multicast TTL; 0 keeps packets on the host")
    rerequest_port: int = Field(26401, ge=1, le=65535)


class ExchangeSimSettings(BaseModel):
    """The exchange simulator: synthetic ITCH 5.0 order flow sent as MoldUDP64 on the feed."""

    symbols: int = Field(100, ge=1, le=65535, description="symbols listed (stock locates 1..N)")
    seed: int = Field(1, description="seed of the order flow and of fault injection")
    speed: float = Field(1.0, ge=0, description="exchange seconds per wall second; 0 = no pacing")
    burst_multiplier: float = Field(100.0, ge=0, description="message rate multiple at the open")
    burst_seconds: float = Field(5.0, ge=0, description="length of the opening-bell burst")
    start_at: str = Field(
        "09:29:00",
        pattern=r"^\d{1,2}:\d{2}(:\d{2}(\.\d{1,9})?)?$",
        description="exchange time (HH:MM[:SS[.fff]]) the order flow starts at",
    )
    session: str = Field(
        "TP00000001", pattern=r"^[A-Za-z0-9]{1,10}$", description="MoldUDP64 session name"
    )
    retransmit_capacity: int = Field(
        1_000_000, ge=1, description="messages kept for answering re-requests"
    )


class ConflateSettings(BaseModel):
    """Subscriber tiers: the default tier is named after its interval (``200ms``)."""

    interval_ms: int = Field(200, ge=1, description="default subscriber conflation interval")
    tiers: dict[str, int] = Field(
        default_factory=lambda: {"realtime": 0, "1s": 1000},
        description="further tiers: name -> interval in ms (0 = unconflated)",
    )
    tier_roles: dict[str, list[str]] = Field(
        default_factory=lambda: {"realtime": ["quant", "admin"]},
        description="tiers open only to these roles (unlisted tiers: every user)",
    )


class FanoutSettings(BaseModel):
    """The WebSocket stream (``ws://host:port/v1/stream``) and its limits."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    path: str = Field("/v1/stream", description="the WebSocket endpoint's path")
    auth_timeout_s: float = Field(10.0, gt=0, description="close unauthenticated sockets after")
    auth_cache_s: float = Field(30.0, ge=0, description="keep a token's positive lookup this long")
    max_symbols: int = Field(1000, ge=1, description="(channel, symbol) pairs per connection")
    max_connections: int = Field(20_000, ge=1, description="open connections per process")
    max_frame_bytes: int = Field(64 * 1024, ge=256, description="largest client frame accepted")
    rate_per_s: float = Field(20.0, gt=0, description="client messages per second, sustained")
    rate_burst: int = Field(40, ge=1, description="client messages allowed in a burst")
    queue_soft: int = Field(500, ge=1, description="per-client queue length that conflates")
    queue_hard: int = Field(5000, ge=1, description="per-client queue length that disconnects")
    slow_client_s: float = Field(30.0, gt=0, description="disconnect a client behind this long")
    batch_max: int = Field(500, ge=1, description="data messages per frame at most")
    send_buffer_bytes: int = Field(0, ge=0, description="SO_SNDBUF per client; 0 = kernel's")
    ping_interval_s: float = Field(20.0, gt=0, description="keep-alive ping period")
    ping_timeout_s: float = Field(20.0, gt=0, description="close when a pong is this late")
    close_timeout_s: float = Field(5.0, gt=0, description="wait this long for a closing handshake")
    tls_cert: Path | None = Field(None, description="PEM certificate chain; set: serve wss://")
    tls_key: Path | None = Field(None, description="PEM private key (default: in tls_cert)")


class CandlesSettings(BaseModel):
    """The candles dataflow: trades -> 1-second and 1-minute bars."""

    allowed_lateness_s: float = Field(10.0, ge=0, description="late trades revise bars this long")
    batch_size: int = Field(10_000, ge=1, description="bus records per source batch")
    flush_interval_s: float = Field(1.0, gt=0, description="Bytewax epoch: snapshot and flush")
    timeframes_s: tuple[int, ...] = Field((1, 60), description="bar widths computed, seconds")
    recovery_dir: Path | None = Field(None, description="Bytewax recovery store; unset: none")
    metrics_port: int = Field(
        9101, ge=0, le=65535, description="/metrics and /healthz of the dataflow; 0 picks one"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TP_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: str | None = Field(
        None, description="PostgreSQL DSN; unset means the embedded PostgreSQL in data_dir"
    )
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers; unset means the in-memory bus"
    )
    memory_bus_retention: int = Field(
        1_000_000, ge=1, description="records the in-memory bus keeps per partition"
    )
    data_dir: Path = Field(Path("var"), description="embedded PostgreSQL, archives, state")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field("text", pattern="^(text|json)$", description="text or json")
    token_secret: str = Field("dev-only-change-me", description="HMAC key for signed stream tokens")
    kafka: KafkaSettings = KafkaSettings()
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    feed: FeedSettings = FeedSettings()
    conflate: ConflateSettings = ConflateSettings()
    fanout: FanoutSettings = FanoutSettings()
    exchange_sim: ExchangeSimSettings = ExchangeSimSettings()
    candles: CandlesSettings = CandlesSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("TP_CONFIG") or "tickerplant.toml"
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and the TOML file, with explicit overrides on top."""
    return Settings(**overrides)
