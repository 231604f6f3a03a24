"""Where the database is: the pure parts of tickerplant.db.connect."""

from __future__ import annotations

from pathlib import Path

from tickerplant.db import EmbeddedPostgres, describe_dsn, resolve_database_url
from tickerplant.settings import load_settings


def test_a_configured_database_url_is_used_as_is_and_no_embedded_server_starts(
    tmp_path: Path,
) -> None:
    """Scenario: database_url set. Outcome: that URL and no EmbeddedPostgres; data_dir untouched."""
    url = "postgresql://app@127.0.0.1:5999/plant"
    settings = load_settings(database_url=url, data_dir=tmp_path / "var")

    assert resolve_database_url(settings) == (url, None)
    assert not (tmp_path / "var").exists()


def test_the_embedded_server_keeps_its_files_in_data_dir_slash_pg(tmp_path: Path) -> None:
    """Scenario: settings with data_dir. Outcome: the embedded server's pgdata is data_dir/pg."""
    settings = load_settings(data_dir=tmp_path)

    assert EmbeddedPostgres.from_settings(settings).pgdata == tmp_path / "pg"


def test_describe_dsn_names_host_port_and_database_but_never_the_password() -> None:
    """Scenario: URL and key=value DSNs with passwords. Outcome: host:port/db only."""
    assert describe_dsn("postgresql://u:s3cret@127.0.0.1:5433/plant") == "127.0.0.1:5433/plant"
    assert describe_dsn("host=/tmp/pg dbname=x password=s3cret") == "/tmp/pg:5432/x"
    assert describe_dsn("postgresql://u@127.0.0.1") == "127.0.0.1:5432/u"
