"""Migration 0008 on a real PostgreSQL: one balance row per (user, asset), its CHECKs, the
order path's postings that move it themselves, and the CHECKs that became domains."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from ledger import IdempotencyConflictError, Ledger, reconcile
from ledger.money import Asset
from tests.integration.ledger.test_integrity import raw_entries, raw_transaction
from tests.integration.ledger.test_ledger_pg import concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

AT = datetime(2025, 6, 10, 15, tzinfo=UTC)  # a Tuesday: the fill settles on Wednesday


def balance_rows(conn: psycopg.Connection, user: int) -> list[tuple[str, int, int, int]]:
    return conn.execute(
        "SELECT asset, settled, unsettled, held FROM ledger_balances WHERE user_id = %s"
        " ORDER BY asset",
        (user,),
    ).fetchall()


def held_accounts(conn: psycopg.Connection, user: int) -> tuple[int, int]:
    """The user's USD held account and the broker's USD holds account."""
    return conn.execute(
        "SELECT max(id) FILTER (WHERE user_id = %s), max(id) FILTER (WHERE user_id IS NULL)"
        " FROM ledger_accounts WHERE asset = 'USD' AND kind IN ('cash_held', 'broker_holds')",
        (user,),
    ).fetchone()


def test_each_user_account_opens_its_balance_row_once(conn, ledger: Ledger, new_user):
    """Creating a user's accounts of an asset opens that asset's balance row at zero; creating
    them again (or another asset's) adds no second row."""
    from ledger import journal

    user = new_user()
    journal.ensure_accounts(conn, user, [Asset("USD"), Asset("AAPL")])
    journal.ensure_accounts(conn, user, [Asset("USD"), Asset("MSFT")])
    assert balance_rows(conn, user) == [
        ("AAPL", 0, 0, 0),
        ("MSFT", 0, 0, 0),
        ("USD", 0, 0, 0),
    ]


def test_hold_and_fills_move_the_balance_rows_as_their_entries_say(conn, ledger, new_user):
    """The order path's postings move the balance rows in their own statement: the rows
    equal the entries' sums (reconcile), with exact values after a buy and a sell."""
    user = new_user()
    ledger.deposit(user, 100_000, idempotency_key="fund")
    hold = ledger.place_hold(user, asset="USD", amount=30_000, idempotency_key="h")
    assert balance_rows(conn, user) == [("USD", 100_000, 0, 30_000)]
    ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=20, price_cents=1_000, fee_cents=50,
        executed_at=AT, idempotency_key="f1", hold_id=hold.hold_id,
    )  # fmt: skip
    # 20 x $10 + $0.50 fee = 20,050 cents from settled cash; the hold shrinks by as much.
    assert balance_rows(conn, user) == [("AAPL", 0, 20, 0), ("USD", 79_950, 0, 9_950)]
    sell_hold = ledger.place_hold(user, asset="AAPL", amount=5, idempotency_key="h2")
    ledger.book_fill(
        user, symbol="AAPL", side="sell", quantity=5, price_cents=1_200, fee_cents=25,
        executed_at=AT, idempotency_key="f2", hold_id=sell_hold.hold_id,
    )  # fmt: skip
    # Shares come from unsettled (none settled yet); proceeds less fee land unsettled.
    assert balance_rows(conn, user) == [("AAPL", 0, 15, 0), ("USD", 79_950, 5_975, 9_950)]
    conn.commit()
    assert reconcile(conn).ok


def test_holds_can_not_exceed_settled_plus_unsettled_even_by_raw_sql(conn, funded):
    """The cover invariant is a CHECK on the balance row: a raw UPDATE and raw entries that
    hold more than the user owns are refused (23514, ledger_balances_holds_covered)."""
    user, _ = funded
    held, broker_holds = held_accounts(conn, user)
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute(
            "UPDATE ledger_balances SET held = settled + unsettled + 1"
            " WHERE user_id = %s AND asset = 'USD'",
            (user,),
        )
    assert caught.value.diag.constraint_name == "ledger_balances_holds_covered"
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (held, "USD", 10_001), (broker_holds, "USD", -10_001))
    assert caught.value.diag.constraint_name == "ledger_balances_holds_covered"
    with conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (held, "USD", 10_000), (broker_holds, "USD", -10_000))
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 10_000)]


def test_raw_entries_can_not_take_a_balance_row_below_zero(conn, funded):
    """Each of the three balances has its own CHECK (>= 0), for raw SQL as for the functions
    (here the holds stay covered: unsettled cash makes up for the overdrawn settled cash)."""
    user, ids = funded
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(
            conn,
            tx,
            (ids["cash_settled"], "USD", -10_001),
            (ids["cash_unsettled"], "USD", 5_000),
            (ids["bank"], "USD", 5_001),
        )
    assert caught.value.diag.constraint_name == "ledger_balances_settled_nonnegative"
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 0)]


def test_the_postings_mark_ends_with_its_statement(conn, ledger, funded):
    """A posting tells the entry trigger its INSERT is its own (the balances moved already)
    for that one statement: raw entries later in the same database transaction are checked
    and move the balance rows through the trigger."""
    user, ids = funded
    with conn.transaction():
        ledger.place_hold(user, asset="USD", amount=1_000, idempotency_key="h")
        assert conn.execute("SELECT current_setting('ledger.posting', true)").fetchone() == ("",)
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["bank"], "USD", -300), (ids["cash_settled"], "USD", 300))
    assert balance_rows(conn, user) == [("USD", 10_300, 0, 1_000)]
    assert reconcile(conn).ok


def test_a_transactions_kind_and_hashes_are_checked_by_their_domains(conn, funded):
    """The CHECKs that became domains keep their names and SQLSTATE (23514)."""
    user, _ = funded
    insert = (
        "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
        " prev_hash, hash) VALUES (%s, %s, 99, %s, %s, %s, %s)"
    )
    for kind, prev, digest, constraint in (
        ("bogus", bytes(32), bytes(32), "ledger_transactions_kind_check"),
        ("deposit", bytes(31), bytes(32), "ledger_sha256_length"),
        ("deposit", bytes(32), bytes(33), "ledger_sha256_length"),
    ):
        with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
            conn.execute(insert, (uuid.uuid4(), user, kind, AT, prev, digest))
        assert caught.value.diag.constraint_name == constraint, kind
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute("UPDATE ledger_chains SET head = '\\x00' WHERE user_id = %s", (user,))
    assert caught.value.diag.constraint_name == "ledger_sha256_length"


def test_journal_and_hold_rows_need_a_ledger_user(conn, new_user):
    """A transaction or hold row names a user with a chain (foreign key, 23503)."""
    stranger = new_user()  # a user, but never booked: no chain
    with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
        raw_transaction(conn, stranger)
    with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
        conn.execute(
            "INSERT INTO ledger_holds (id, user_id, asset, amount, remaining)"
            " VALUES (%s, %s, 'USD', 1, 1)",
            (uuid.uuid4(), stranger),
        )


def test_a_hold_or_fill_key_replays_its_receipt_and_refuses_another_request(conn, ledger, new_user):
    """The order path keeps its keys on the journal transaction: the same hold or fill again
    returns the original receipt and books nothing; another request with the key, of the
    same operation or another (a deposit), is refused naming the original operation."""
    user = new_user()
    ledger.deposit(user, 100_000, idempotency_key="fund")
    hold = ledger.place_hold(user, asset="USD", amount=30_000, idempotency_key="h")
    fill = ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=20, price_cents=1_000, fee_cents=50,
        executed_at=AT, idempotency_key="f", hold_id=hold.hold_id,
    )  # fmt: skip
    before = balance_rows(conn, user)
    assert ledger.place_hold(user, asset="USD", amount=30_000, idempotency_key="h") == hold
    assert ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=20, price_cents=1_000, fee_cents=50,
        executed_at=AT, idempotency_key="f", hold_id=hold.hold_id,
    ) == fill  # fmt: skip
    assert (fill.hold_id, str(fill.settlement_date)) == (hold.hold_id, "2025-06-11")
    assert balance_rows(conn, user) == before
    with pytest.raises(IdempotencyConflictError) as caught:
        ledger.place_hold(user, asset="USD", amount=30_001, idempotency_key="h")
    assert (caught.value.operation, caught.value.original_operation) == (
        "place_hold",
        "place_hold",
    )
    with pytest.raises(IdempotencyConflictError) as caught:
        ledger.deposit(user, 100, idempotency_key="f")
    assert (caught.value.operation, caught.value.original_operation) == ("deposit", "book_fill")
    with pytest.raises(IdempotencyConflictError) as caught:
        ledger.place_hold(user, asset="USD", amount=100, idempotency_key="fund")
    assert (caught.value.operation, caught.value.original_operation) == ("place_hold", "deposit")
    assert balance_rows(conn, user) == before
    assert conn.execute(
        "SELECT count(*) FROM ledger_transactions WHERE user_id = %s", (user,)
    ).fetchone() == (3,)


def test_concurrent_holds_with_one_key_book_one_hold(migrated_dsn, ledger, new_user, conn):
    """20 simultaneous $10 holds with the same key: they wait on the chain lock, the first
    books, the others see it committed and return its receipt; $10 is held once."""
    user = new_user()
    ledger.deposit(user, 10_000, idempotency_key="fund")
    conn.commit()
    results = concurrently(
        migrated_dsn, 20, lambda lg, i: lg.place_hold(user, asset="USD", amount=1_000,
                                                       idempotency_key="same")
    )  # fmt: skip
    assert len({r.hold_id for r in results}) == 1
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 1_000)]
