"""The database's own enforcement of the ledger's invariants since migration 0007, driven with
raw SQL around the Python API: each test is one way round a mechanism, and shows it closed.

0007 checks the zero-sum once per journal transaction (a deferred constraint trigger on
ledger_transactions) and the entries' references once per INSERT statement (the entry
statement trigger) instead of per entry; these are the bypasses those changes could open.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from ledger import Ledger, reconcile, verify
from tests.integration.ledger.conftest import accounts_of
from tickerplant.db import migrate

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

AT = datetime(2025, 6, 10, 15, tzinfo=UTC)


def raw_transaction(conn: psycopg.Connection, user: int, seq: int = 1000) -> uuid.UUID:
    """A journal transaction row inserted by hand (not through the functions)."""
    tx = uuid.uuid4()
    conn.execute(
        "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
        " prev_hash, hash) VALUES (%s, %s, %s, 'deposit', %s, %s, %s)",
        (tx, user, seq, AT, bytes(32), bytes(32)),
    )
    return tx


def raw_entries(conn: psycopg.Connection, tx: uuid.UUID, *entries: tuple[int, str, int]) -> None:
    """One INSERT statement of (account_id, asset, amount) rows into transaction ``tx``."""
    conn.execute(
        "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)"
        " SELECT %s, a, s, m FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS e (a, s, m)",
        (tx, [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]),
    )


def settled(conn: psycopg.Connection, user: int) -> int:
    return conn.execute(
        "SELECT settled FROM ledger_balances WHERE user_id = %s AND asset = 'USD'",
        (user,),
    ).fetchone()[0]


def test_a_raw_balanced_transaction_commits_and_moves_the_cached_balance(conn, funded):
    """Raw SQL, no functions: a transaction row and two entries summing to zero commit, and
    the cached balance moved with them (same transaction, statement trigger)."""
    user, ids = funded
    with conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["bank"], "USD", -250), (ids["cash_settled"], "USD", 250))
    assert settled(conn, user) == 10250
    assert reconcile(conn).ok


def test_raw_entries_that_do_not_sum_to_zero_fail_at_commit_naming_the_transaction(conn, funded):
    """Entries inserted one statement at a time may be unbalanced in between (the check is
    deferred); at commit the transaction's sum is checked, once, and nothing is kept."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["bank"], "USD", -250))
        raw_entries(conn, tx, (ids["cash_settled"], "USD", 200))
    assert caught.value.sqlstate == "TPL01"
    assert f"ledger transaction {tx} is unbalanced: asset USD sums to -50" in str(caught.value)
    assert settled(conn, user) == 10000


def test_two_journal_transactions_in_one_database_transaction_are_each_checked(
    conn, ledger, funded
):
    """A deposit through the API and a raw unbalanced transaction in one database
    transaction: the commit fails on the raw one, and the deposit is rolled back with it."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        ledger.deposit(user, 500, idempotency_key="inside")
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["cash_settled"], "USD", 7))
    assert caught.value.sqlstate == "TPL01"
    assert f"ledger transaction {tx} is unbalanced: asset USD sums to 7" in str(caught.value)
    assert settled(conn, user) == 10000


def test_set_constraints_immediate_then_more_entries_is_refused(conn, ledger, funded):
    """SET CONSTRAINTS ALL IMMEDIATE runs a pending zero-sum check early (it passes); entries
    added to that transaction afterwards are refused at once: TPL01 when they unbalance it,
    TPL02 (closed) when they are balanced, so nothing escapes the check."""
    user, ids = funded
    for extra, sqlstate, message in (
        ([(ids["cash_settled"], "USD", 5)], "TPL01", "is unbalanced: asset USD sums to 5"),
        (
            [(ids["bank"], "USD", -5), (ids["cash_settled"], "USD", 5)],
            "TPL02",
            "is closed to new entries",
        ),
    ):
        with pytest.raises(psycopg.Error) as caught, conn.transaction():
            receipt = ledger.deposit(user, 300, idempotency_key=f"d-{sqlstate}")
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            raw_entries(conn, receipt.transaction_id, *extra)
        assert caught.value.sqlstate == sqlstate
        assert f"transaction {receipt.transaction_id} {message}" in str(caught.value)
    assert settled(conn, user) == 10000


def test_set_constraints_immediate_before_the_transaction_row_closes_it_to_entries(conn, funded):
    """Immediate mode from the start: the check runs right after the transaction row's
    INSERT (no entries yet, balanced) and closes it, so its entries are refused."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["bank"], "USD", -9), (ids["cash_settled"], "USD", 9))
    assert caught.value.sqlstate == "TPL02"
    assert str(caught.value).startswith(
        f"the ledger journal is append-only: transaction {tx} is closed to new entries"
    )
    assert settled(conn, user) == 10000


def test_balanced_entries_added_to_a_committed_transaction_are_refused(conn, ledger, funded):
    """A transaction booked and committed earlier takes no more entries, even balanced ones
    (its check ran at its own commit; the journal is append-only)."""
    user, ids = funded
    old = ledger.deposit(user, 100, idempotency_key="old")
    conn.commit()
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        raw_entries(
            conn, old.transaction_id, (ids["bank"], "USD", -1), (ids["cash_settled"], "USD", 1)
        )
    assert caught.value.sqlstate == "TPL02"
    assert settled(conn, user) == 10100


def test_a_transaction_row_claiming_another_database_transaction_takes_no_entries(conn, funded):
    """created_xact set by hand to some other transaction id: its entries are refused."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        tx = uuid.uuid4()
        conn.execute(
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash, created_xact) VALUES (%s, %s, 1000, 'deposit', %s, %s, %s,"
            " '3')",
            (tx, user, AT, bytes(32), bytes(32)),
        )
        raw_entries(conn, tx, (ids["bank"], "USD", -9), (ids["cash_settled"], "USD", 9))
    assert caught.value.sqlstate == "TPL02"


def test_a_savepoint_rolled_back_after_an_early_check_puts_the_check_back(conn, funded):
    """The early check ran inside a savepoint that is rolled back: the check is pending again
    and runs at commit, so an unbalanced transaction still cannot commit."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["cash_settled"], "USD", 11))
        with pytest.raises(psycopg.Error), conn.transaction():
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # fails: sums to 11
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
    assert caught.value.sqlstate == "TPL01"
    assert f"ledger transaction {tx} is unbalanced: asset USD sums to 11" in str(caught.value)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing account", "names no account"),
        ("wrong asset", "names no account"),
        ("missing transaction", "names no transaction"),
    ],
)
def test_raw_entries_must_name_an_account_of_their_asset_and_an_existing_transaction(
    conn, funded, target, message
):
    """The foreign keys' guarantees, now checked per statement: SQLSTATE 23503 as before."""
    user, ids = funded
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught, conn.transaction():
        tx = raw_transaction(conn, user)
        if target == "missing account":
            raw_entries(conn, tx, (ids["bank"], "USD", -3), (2**40, "USD", 3))
        elif target == "wrong asset":
            raw_entries(conn, tx, (ids["bank"], "AAPL", -3), (ids["cash_settled"], "AAPL", 3))
        else:
            raw_entries(
                conn, uuid.uuid4(), (ids["bank"], "USD", -3), (ids["cash_settled"], "USD", 3)
            )
    assert message in str(caught.value)


def test_accounts_are_permanent_and_keep_their_identity(conn, funded):
    """What entries name cannot change or go: DELETE, TRUNCATE and any UPDATE of an account
    are refused (TPL02); its balance lives in the user's balance row, a plain UPDATE."""
    user, ids = funded
    for statement in (
        f"DELETE FROM ledger_accounts WHERE id = {ids['cash_settled']}",
        "TRUNCATE ledger_accounts CASCADE",
        f"UPDATE ledger_accounts SET asset = 'EUR' WHERE id = {ids['cash_settled']}",
        f"UPDATE ledger_accounts SET kind = 'cash_held' WHERE id = {ids['cash_settled']}",
        f"UPDATE ledger_accounts SET user_id = NULL WHERE id = {ids['cash_settled']}",
        f"UPDATE ledger_accounts SET id = DEFAULT WHERE id = {ids['cash_settled']}",
        f"UPDATE ledger_accounts SET created_at = now() WHERE id = {ids['cash_settled']}",
    ):
        with pytest.raises(psycopg.Error) as caught, conn.transaction():
            conn.execute(statement)
        assert caught.value.sqlstate == "TPL02", statement
        assert str(caught.value).startswith("ledger accounts are permanent"), statement
    with conn.transaction():
        conn.execute(
            "UPDATE ledger_balances SET settled = settled + 1 WHERE user_id = %s AND asset = 'USD'",
            (user,),
        )
    assert settled(conn, user) == 10001


@pytest.mark.parametrize(
    ("user_is_set", "asset", "kind", "constraint"),
    [
        (True, "usd", "cash_settled", "ledger_accounts_asset_check"),
        (True, "USD", "cash_frozen", "ledger_accounts_kind_check"),
        (False, "USD", "cash_settled", "ledger_accounts_owner_kind"),
        (True, "USD", "broker_bank", "ledger_accounts_owner_kind"),
        (True, "AAPL", "cash_settled", "ledger_accounts_cash_is_usd"),
        (True, "USD", "position_settled", "ledger_accounts_position_not_usd"),
    ],
)
def test_a_new_account_is_checked_as_the_checks_it_replaced(
    conn, new_user, user_is_set, asset, kind, constraint
):
    """0002's CHECKs on owner, asset and kind run on INSERT: 23514 with the same names."""
    user = new_user() if user_is_set else None
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute(
            "INSERT INTO ledger_accounts (user_id, asset, kind) VALUES (%s, %s, %s)",
            (user, asset, kind),
        )
    assert caught.value.diag.constraint_name == constraint


def test_migrations_7_to_10_apply_over_a_used_0006_ledger(pg_dsn: str, tmp_path: Path):
    """A ledger migrated to 0006 with booked transactions (through its SQL functions, as the
    code of that day called them), then brought to 0010: the cached balances move to the
    balance rows unchanged, the old transactions are closed to entries, new operations book,
    verify and reconcile pass."""
    from tests.integration.db.test_migrate import copy_shipped_migrations

    old = copy_shipped_migrations(tmp_path / "m")
    for path in old.glob("*.sql"):
        if int(path.name[:4]) > 6:
            path.unlink()
    migrate(pg_dsn, directory=old)
    from ledger.audit import GENESIS
    from tickerplant.identity import Role, create_user

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        user = int(create_user(conn, "before7", Role.TRADER)[0].id)
        for asset, kinds in (("USD", "cash"), ("AAPL", "position")):
            for bucket in ("settled", "unsettled", "held"):
                conn.execute(
                    "INSERT INTO ledger_accounts (user_id, asset, kind, balance)"
                    " VALUES (%s, %s, %s, 0)",
                    (user, asset, f"{kinds}_{bucket}"),
                )
            for kind in ("broker_bank", "broker_street", "broker_fees", "broker_holds"):
                conn.execute(
                    "INSERT INTO ledger_accounts (user_id, asset, kind) VALUES (NULL, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (asset, kind),
                )
        conn.execute("INSERT INTO ledger_chains (user_id, head) VALUES (%s, %s)", (user, GENESIS))
        first = conn.execute(
            "SELECT ledger_deposit(%s, 'd1', '\\x00', 5000, '{}', %s)->>'transaction_id'",
            (user, AT),
        ).fetchone()[0]
        hold = conn.execute(
            "SELECT ledger_place_hold(%s, 'h1', '\\x00', 'USD', 1000, NULL, %s)->>'hold_id'",
            (user, AT),
        ).fetchone()[0]
        conn.execute(
            "SELECT ledger_book_fill(%s, 'f1', '\\x00', 'AAPL', 'buy', 2, 400, 10, %s,"
            " '2025-06-10', '2025-06-11', %s)",
            (user, AT, hold),
        )
        cached = conn.execute(
            "SELECT asset, kind, balance FROM ledger_accounts WHERE user_id = %s AND balance <> 0"
            " ORDER BY asset, kind",
            (user,),
        ).fetchall()
    assert cached == [
        ("AAPL", "position_unsettled", 2),
        ("USD", "cash_held", 190),
        ("USD", "cash_settled", 4190),
    ]
    assert [m.version for m in migrate(pg_dsn)] == [7, 8, 9, 10]
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(
            "SELECT asset, settled, unsettled, held FROM ledger_balances WHERE user_id = %s"
            " ORDER BY asset",
            (user,),
        ).fetchall() == [("AAPL", 0, 2, 0), ("USD", 4190, 0, 190)]
        # A key booked before 0008 (kept in ledger_idempotency) still replays, or is refused.
        replay = "SELECT ledger_place_hold(%s, 'h1', %s, 'USD', 1000, NULL, %s)->>'hold_id'"
        assert conn.execute(replay, (user, b"\x00", AT)).fetchone() == (hold,)
        with pytest.raises(psycopg.Error) as caught, conn.transaction():
            conn.execute(replay, (user, b"\x01", AT))
        assert caught.value.sqlstate == "TPL11"
        ids = accounts_of(conn, user)
        with pytest.raises(psycopg.Error) as caught, conn.transaction():
            raw_entries(
                conn,
                uuid.UUID(first),
                (ids["bank"], "USD", -1),
                (ids["cash_settled"], "USD", 1),
            )
        assert caught.value.sqlstate == "TPL02"
        ledger = Ledger.over_connection(conn)
        ledger.book_fill(
            user, symbol="AAPL", side="sell", quantity=1, price_cents=500, fee_cents=10,
            executed_at=AT, idempotency_key="f2",
        )  # fmt: skip
        conn.commit()
        balances = ledger.balances(user)
        assert (balances.cash.settled, balances.cash.unsettled, balances.cash.held) == (
            4190,
            490,
            190,
        )
        assert balances.assets["AAPL"].unsettled == 1
        assert reconcile(conn).ok and verify(conn).ok
