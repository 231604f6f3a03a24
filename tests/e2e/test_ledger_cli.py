"""``tickerplant ledger verify / reconcile / settle`` as an operator runs them."""

from __future__ import annotations

import psycopg
import pytest

from ledger import Ledger
from tests.e2e.test_cli import run_cli
from tickerplant.identity import Role, create_user

pytestmark = pytest.mark.postgres


def test_verify_and_reconcile_pass_then_name_the_tampered_transaction(migrated_dsn):
    """Two deposits verify and reconcile cleanly (exit 0); after an entry is changed with
    triggers disabled, verify exits 1 naming the second transaction and reconcile the account."""
    env = {"TP_DATABASE_URL": migrated_dsn}
    with psycopg.connect(migrated_dsn) as conn:
        user, _ = create_user(conn, "erin", Role.TRADER)
        ledger = Ledger.over_connection(conn)
        ledger.deposit(user.id, 100, idempotency_key="a")
        second = ledger.deposit(user.id, 200, idempotency_key="b")
    verified = run_cli("ledger", "verify", env=env)
    assert (verified.returncode, verified.stdout) == (
        0,
        "2 transaction(s) in 1 chain(s) verified\n",
    )
    reconciled = run_cli("ledger", "reconcile", env=env)
    assert reconciled.returncode == 0, reconciled.stderr
    assert reconciled.stdout.startswith("3 account(s) reconciled")

    with psycopg.connect(migrated_dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "UPDATE ledger_entries SET amount = amount * 10 WHERE transaction_id = %s",
            (second.transaction_id,),
        )
    broken = run_cli("ledger", "verify", env=env)
    assert broken.returncode == 1
    assert broken.stdout == (
        f"user {user.id}: transaction {second.transaction_id} (seq 2) altered: "
        "its content no longer matches its hash\n"
    )
    drift = run_cli("ledger", "reconcile", env=env)
    assert drift.returncode == 1
    assert "cached 300, entries sum to 2100" in drift.stdout


def test_settle_reports_what_it_settled(migrated_dsn):
    """With nothing booked, `ledger settle --as-of 2025-06-16` settles 0 fills."""
    result = run_cli(
        "ledger", "settle", "--as-of", "2025-06-16", env={"TP_DATABASE_URL": migrated_dsn}
    )
    assert (result.returncode, result.stdout) == (
        0,
        "settled 0 fill(s) with 0 transaction(s); 0 already settled\n",
    )
