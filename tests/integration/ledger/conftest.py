"""Shared helpers for the ledger's PostgreSQL tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from ledger import Ledger
from tickerplant.identity import Role, create_user


@pytest.fixture
def conn(migrated_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_dsn) as connection:
        yield connection


@pytest.fixture
def ledger(conn: psycopg.Connection) -> Ledger:
    return Ledger.over_connection(conn)


@pytest.fixture
def new_user(conn: psycopg.Connection) -> Callable[[], int]:
    def make() -> int:
        user, _ = create_user(conn, f"u{uuid.uuid4().hex[:10]}", Role.TRADER)
        return int(user.id)

    return make


def accounts_of(conn: psycopg.Connection, user: int) -> dict[str, int]:
    """The user's USD account ids by kind, and the broker's USD bank account as 'bank'."""
    rows = conn.execute(
        "SELECT coalesce(CASE WHEN kind = 'broker_bank' THEN 'bank' END, kind), id"
        " FROM ledger_accounts WHERE asset = 'USD'"
        " AND (user_id = %s OR (user_id IS NULL AND kind = 'broker_bank'))",
        (user,),
    ).fetchall()
    return dict(rows)


@pytest.fixture
def funded(ledger: Ledger, new_user, conn: psycopg.Connection) -> tuple[int, dict[str, int]]:
    """A user with $100 of settled cash, committed; their USD accounts and the bank's."""
    user = new_user()
    ledger.deposit(user, 10000, idempotency_key="fund")
    ids = accounts_of(conn, user)
    conn.commit()  # each test's `conn.transaction()` is then a transaction, not a savepoint
    return user, ids
