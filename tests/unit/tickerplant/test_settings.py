"""Settings from defaults, environment and the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tickerplant.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("TP_DATABASE_URL", "TP_KAFKA_BOOTSTRAP", "TP_CONFIG", "TP_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_mean_embedded_postgres_and_the_in_memory_bus():
    """With nothing configured there is no database URL and no Kafka: embedded defaults."""
    settings = load_settings()
    assert settings.database_url is None
    assert settings.kafka_bootstrap is None
    assert settings.data_dir == Path("var")
    assert settings.conflate.interval_ms == 200
    assert (settings.feed.interface, settings.feed.ttl) == ("127.0.0.1", 0)


def test_environment_variables_set_top_level_and_nested_values(monkeypatch):
    """TP_KAFKA_BOOTSTRAP and TP_FANOUT__PORT reach their settings with the right types."""
    monkeypatch.setenv("TP_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("TP_FANOUT__PORT", "9001")
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.fanout.port == 9001


def test_a_toml_file_is_read_and_the_environment_overrides_it(monkeypatch, tmp_path):
    """Values come from the TOML file named by TP_CONFIG unless the environment sets them."""
    config = tmp_path / "plant.toml"
    config.write_text(
        'database_url = "postgresql://file@127.0.0.1/tp"\n'
        "[conflate]\ninterval_ms = 1000\n"
        "[http]\nport = 8080\n"
    )
    monkeypatch.setenv("TP_CONFIG", str(config))
    monkeypatch.setenv("TP_HTTP__PORT", "8081")
    settings = load_settings()
    assert settings.database_url == "postgresql://file@127.0.0.1/tp"
    assert settings.conflate.interval_ms == 1000
    assert settings.http.port == 8081


def test_an_out_of_range_port_is_rejected_naming_the_field(monkeypatch):
    """TP_HTTP__PORT=70000 fails validation with an error that names http.port."""
    monkeypatch.setenv("TP_HTTP__PORT", "70000")
    with pytest.raises(ValidationError) as excinfo:
        load_settings()
    assert excinfo.value.errors()[0]["loc"] == ("http", "port")
