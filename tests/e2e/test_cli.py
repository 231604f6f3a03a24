"""The ``tickerplant`` CLI as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg
import pytest

from tickerplant.identity import authenticate


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickerplant.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
    )


def test_help_lists_every_subcommand_with_a_one_line_description():
    """`tickerplant --help` shows demo, db, users and version, each with its summary."""
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"│ (\w[\w-]*)\s{2,}(\S[^│]*?)\s*│", result.stdout))
    assert rows == {
        "version": "Print the tickerplant version.",
        "demo": "Run the whole system on this machine (embedded defaults) until Ctrl-C.",
        "ingest": "Receive the multicast feed, recover gaps, publish normalized events on the bus.",
        "normalize-file": "Normalize a whole ITCH file to Parquet trades and quotes.",
        "exchange-sim": "Simulate the exchange: seeded ITCH 5.0 order flow as MoldUDP64 multicast.",
        "replay": "Replay an ITCH file onto the multicast feed at recorded or accelerated pace.",
        "db": "Database schema: apply and inspect migrations.",
        "users": "Users, roles and API tokens.",
        "fanout": "Serve conflated market data to WebSocket subscribers (the /v1/stream endpoint).",
        "ledger": "Ledger: reconcile balances, verify the audit chain, settle.",
        "candles": "Roll bus trades into 1-second and 1-minute bars in PostgreSQL and md.bars.",
        "backfill": "Load a whole ITCH file's bars into PostgreSQL via the live candles code.",
        "archive": "Archive a day's trades, quotes and bars as Parquet partitioned by date/symbol.",
    }


def test_users_add_with_an_unknown_role_names_the_accepted_roles():
    """`users add x --role king` exits 2 naming trader, quant, compliance and admin."""
    result = run_cli("users", "add", "x", "--role", "king")
    assert result.returncode == 2
    assert "unknown role 'king': expected one of trader, quant, compliance, admin" in result.stderr


@pytest.mark.postgres
def test_db_migrate_applies_once_then_reports_the_schema_up_to_date(pg_dsn):
    """The first `db migrate` applies 0001_identity; the second applies nothing."""
    first = run_cli("db", "migrate", env={"TP_DATABASE_URL": pg_dsn})
    second = run_cli("db", "migrate", env={"TP_DATABASE_URL": pg_dsn})
    assert first.returncode == 0, first.stderr
    assert "applied 0001 identity" in first.stdout.splitlines()
    assert second.stdout.splitlines() == ["0 migration(s) applied; schema is up to date"]
    status = run_cli("db", "status", env={"TP_DATABASE_URL": pg_dsn})
    assert status.returncode == 0
    assert re.match(r"0001 identity\s+applied ", status.stdout.splitlines()[0])


@pytest.mark.postgres
def test_users_add_prints_a_token_once_that_then_authenticates(pg_dsn):
    """`users add erin --role compliance` prints a token that authenticates as erin."""
    result = run_cli(
        "users", "add", "erin", "--role", "compliance", env={"TP_DATABASE_URL": pg_dsn}
    )
    assert result.returncode == 0, result.stderr
    token = re.search(r"^token: (tp_\S+)$", result.stdout, re.MULTILINE).group(1)
    with psycopg.connect(pg_dsn) as conn:
        user = authenticate(conn, token)
    assert (user.name, user.role.value) == ("erin", "compliance")

    again = run_cli("users", "add", "ERIN", "--role", "quant", env={"TP_DATABASE_URL": pg_dsn})
    assert again.returncode == 2
    assert "erin" in again.stderr.lower() and "exists" in again.stderr
