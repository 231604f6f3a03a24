"""Migration 0009 on a real PostgreSQL: a posting of the order path (ledger_post) is checked
whole by the statement that writes it and closed to later entries from its birth; every other
transaction keeps the deferred zero-sum check; the single-column CHECKs that became domains
keep their names; each balance row names the accounts its postings move, derived by the
database."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from ledger import Ledger, Receipt, journal, reconcile
from ledger.money import Asset
from tests.integration.ledger.test_balance_rows import AT, balance_rows, held_accounts
from tests.integration.ledger.test_integrity import raw_entries, raw_transaction
from tests.integration.ledger.test_ledger_pg import concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

_POST = (
    "SELECT ledger_post(%s, %s, c.seq + 1, c.head, 'hold', %s, '\\x01', %s, NULL, '{}',"
    " %s::bigint[], %s::text[], %s::bigint[], %s::text[])"
    " FROM ledger_chains c WHERE c.user_id = %s"
)


def chain_of(conn: psycopg.Connection, user: int) -> tuple[int, bytes]:
    return conn.execute(
        "SELECT seq, head FROM ledger_chains WHERE user_id = %s", (user,)
    ).fetchone()


def test_an_unbalanced_posting_is_refused_and_writes_nothing(conn, funded):
    """ledger_post called with entries that do not sum to zero (here +500 held against -400
    from the broker) raises TPL01 naming the asset and the sum; no transaction, entry, balance
    or chain head is left behind."""
    user, _ = funded
    held, broker = held_accounts(conn, user)
    tx = uuid.uuid4()
    before = (balance_rows(conn, user), chain_of(conn, user))
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        conn.execute(
            _POST,
            (tx, user, "bad", AT, [held, broker], ["USD", "USD"], [500, -400], ["held", None],
             user),
        )  # fmt: skip
    assert caught.value.sqlstate == "TPL01"
    assert str(caught.value).startswith(
        f"ledger transaction {tx} is unbalanced: asset USD sums to 100"
    )
    assert (balance_rows(conn, user), chain_of(conn, user)) == before
    assert conn.execute(
        "SELECT count(*) FROM ledger_transactions WHERE id = %s", (tx,)
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM ledger_entries WHERE transaction_id = %s", (tx,)
    ).fetchone() == (0,)


def test_a_balanced_posting_moves_the_balance_rows_and_the_chain(conn, funded):
    """The same call with balanced entries books: the entries move 'held' by 500, the chain
    advances by one to the hash the function returns. Balances equal the entries (reconcile);
    with no hold row written beside it (place_hold writes one), reconcile names the hold gap."""
    user, _ = funded
    held, broker = held_accounts(conn, user)
    seq, _ = chain_of(conn, user)
    with conn.transaction():
        (head,) = conn.execute(
            _POST,
            (uuid.uuid4(), user, "ok", AT, [held, broker], ["USD", "USD"], [500, -500],
             ["held", None], user),
        ).fetchone()  # fmt: skip
    assert chain_of(conn, user) == (seq + 1, head)
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 500)]
    report = reconcile(conn)
    assert (report.differences, report.unbalanced_assets) == ([], {})
    assert report.hold_mismatches == [(user, "USD", 500, 0)]


def test_a_postings_transaction_takes_no_entry_after_its_own(conn, ledger: Ledger, funded):
    """Later in the same database transaction, raw entries naming a hold's journal transaction
    are refused (TPL02): a posting is closed from the statement that wrote it, with no
    deferred check left to run."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        receipt = ledger.place_hold(user, asset="USD", amount=1_000, idempotency_key="h")
        raw_entries(
            conn,
            receipt.transaction_id,
            (ids["bank"], "USD", -300),
            (ids["cash_settled"], "USD", 300),
        )
    assert caught.value.sqlstate == "TPL02"
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 0)]


def test_a_raw_transaction_with_a_request_hash_can_hold_no_entries(conn, funded):
    """A transaction row inserted by hand with a request hash counts as a posting: closed at
    once, so raw entries for it are refused (TPL02), while the row alone (no entries) commits:
    it balances."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        tx = uuid.uuid4()
        conn.execute(
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash, request_hash) VALUES (%s, %s, 2001, 'hold', %s, %s, %s, '\\x01')",
            (tx, user, AT, bytes(32), bytes(32)),
        )
        raw_entries(conn, tx, (ids["bank"], "USD", -1), (ids["cash_settled"], "USD", 1))
    assert caught.value.sqlstate == "TPL02"
    with conn.transaction():
        conn.execute(
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash, request_hash) VALUES (%s, %s, 2002, 'hold', %s, %s, %s, '\\x01')",
            (uuid.uuid4(), user, AT, bytes(32), bytes(32)),
        )
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 0)]


def test_other_transactions_keep_the_deferred_zero_sum_check(conn, funded):
    """A raw transaction without a request hash whose entries do not sum to zero is refused at
    commit (TPL01) by the deferred constraint trigger, as before 0009; nothing is left."""
    user, ids = funded
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        tx = raw_transaction(conn, user)
        raw_entries(conn, tx, (ids["bank"], "USD", -300), (ids["cash_settled"], "USD", 200))
    assert caught.value.sqlstate == "TPL01"
    assert balance_rows(conn, user) == [("USD", 10_000, 0, 0)]


def test_only_transactions_other_than_postings_are_locked_by_the_deferred_check(
    conn, ledger: Ledger, funded
):
    """The deferred check closes a transaction by locking its row (its xmax is set); the
    order path's postings are not queued for it: after a hold and a fill commit, their rows
    carry no lock, while the deposit that funded the user does."""
    user, _ = funded
    hold = ledger.place_hold(user, asset="USD", amount=2_000, idempotency_key="h")
    fill = ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=1, price_cents=1_000, fee_cents=0,
        executed_at=AT, idempotency_key="f", hold_id=hold.hold_id,
    )  # fmt: skip
    conn.commit()
    locked = dict(
        conn.execute(
            "SELECT kind::text, xmax <> '0'::xid FROM ledger_transactions WHERE user_id = %s",
            (user,),
        ).fetchall()
    )
    assert locked == {"deposit": True, "hold": False, "fill": False}
    assert {hold.transaction_id, fill.transaction_id} <= {
        row[0]
        for row in conn.execute(
            "SELECT id FROM ledger_transactions WHERE request_hash IS NOT NULL AND user_id = %s",
            (user,),
        )
    }
    assert reconcile(conn).ok


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE ledger_chains SET seq = -1 WHERE user_id = %s", "ledger_chains_seq_check"),
        (
            "UPDATE ledger_balances SET unsettled = -1 WHERE user_id = %s",
            "ledger_balances_unsettled_nonnegative",
        ),
        (
            "UPDATE ledger_balances SET held = -1 WHERE user_id = %s",
            "ledger_balances_held_nonnegative",
        ),
        (
            "INSERT INTO ledger_holds (id, user_id, asset, amount, remaining)"
            " VALUES (gen_random_uuid(), %s, 'USD', 0, 0)",
            "ledger_holds_amount_check",
        ),
    ],
)
def test_checks_that_became_domains_keep_their_names(conn, funded, statement, constraint):
    """Each single-column CHECK moved to a domain still refuses its bad value with SQLSTATE
    23514 and the constraint's old name."""
    user, _ = funded
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute(statement, (user,))
    assert caught.value.diag.constraint_name == constraint


def test_entries_have_one_index_their_primary_key_by_transaction(conn):
    """ledger_entries is indexed once: (transaction_id, id), which serves every lookup by
    transaction."""
    assert conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid = 'ledger_entries'::regclass"
    ).fetchall() == [
        (
            "ledger_entries_pkey",
            "CREATE UNIQUE INDEX ledger_entries_pkey ON public.ledger_entries"
            " USING btree (transaction_id, id)",
        )
    ]


def balance_accounts(conn: psycopg.Connection, user: int, asset: str) -> tuple:
    return conn.execute(
        "SELECT settled_account, unsettled_account, held_account, broker_holds_account,"
        " broker_street_account, broker_fees_account FROM ledger_balances"
        " WHERE user_id = %s AND asset = %s",
        (user, asset),
    ).fetchone()


def account_id(conn: psycopg.Connection, user: int | None, asset: str, kind: str) -> int:
    return conn.execute(
        "SELECT id FROM ledger_accounts WHERE user_id IS NOT DISTINCT FROM %s AND asset = %s"
        " AND kind = %s",
        (user, asset, kind),
    ).fetchone()[0]


def test_each_balance_row_names_its_accounts_whichever_comes_first(conn, new_user):
    """A balance row names the user's settled, unsettled and held accounts of its asset and
    the broker's holds and street accounts of it (fees: USD only): set when the user's accounts
    come first and the broker's later, one by one, as when the broker's came first."""
    first, second = new_user(), new_user()
    insert = "INSERT INTO ledger_accounts (user_id, asset, kind) VALUES (%s, 'NEWCO', %s)"
    for kind in ("position_settled", "position_unsettled", "position_held"):
        conn.execute(insert, (first, kind))
    mine = [
        account_id(conn, first, "NEWCO", f"position_{b}") for b in ("settled", "unsettled", "held")
    ]
    assert balance_accounts(conn, first, "NEWCO") == (*mine, None, None, None)
    conn.execute(insert, (None, "broker_holds"))
    holds = account_id(conn, None, "NEWCO", "broker_holds")
    assert balance_accounts(conn, first, "NEWCO") == (*mine, holds, None, None)
    conn.execute(insert, (None, "broker_street"))
    street = account_id(conn, None, "NEWCO", "broker_street")
    assert balance_accounts(conn, first, "NEWCO") == (*mine, holds, street, None)
    for kind in ("position_held", "position_settled", "position_unsettled"):
        conn.execute(insert, (second, kind))
    theirs = [
        account_id(conn, second, "NEWCO", f"position_{b}") for b in ("settled", "unsettled", "held")
    ]
    assert balance_accounts(conn, second, "NEWCO") == (*theirs, holds, street, None)


def test_the_usd_row_names_the_fees_account(conn, ledger: Ledger, new_user):
    """A user's USD row names their three cash accounts and the broker's USD holds, street
    and fees accounts."""
    user = new_user()
    ledger.deposit(user, 1_000, idempotency_key="d")
    assert balance_accounts(conn, user, "USD") == (
        account_id(conn, user, "USD", "cash_settled"),
        account_id(conn, user, "USD", "cash_unsettled"),
        account_id(conn, user, "USD", "cash_held"),
        account_id(conn, None, "USD", "broker_holds"),
        account_id(conn, None, "USD", "broker_street"),
        account_id(conn, None, "USD", "broker_fees"),
    )


def test_an_update_can_not_point_a_balance_row_at_another_account(conn, funded, new_user):
    """An UPDATE that names an account id column is re-derived from ledger_accounts: pointing
    a user's held account at another user's account (or at nothing) leaves the true id."""
    user, ids = funded
    other = new_user()
    journal.ensure_accounts(conn, other, [Asset("USD")])
    before = balance_accounts(conn, user, "USD")
    with conn.transaction():
        conn.execute(
            "UPDATE ledger_balances SET held_account = %s, broker_fees_account = NULL"
            " WHERE user_id = %s AND asset = 'USD'",
            (account_id(conn, other, "USD", "cash_held"), user),
        )
    assert balance_accounts(conn, user, "USD") == before
    assert before[2] == ids["cash_held"]


def test_users_trading_a_new_symbol_at_once_all_book_and_name_every_account(
    migrated_dsn, conn, new_user
):
    """Twelve users, on their own connections, released at once: each deposits (creating its
    USD accounts, and the broker's, at the same time as the others), holds $10.10 and buys one
    share of a symbol nobody had (its accounts created concurrently too). Balance rows opened
    while another transaction was creating the broker's accounts are derived again by the
    hold or fill that needs them: all twelve book, every row names all of its accounts, and
    the ledger reconciles."""
    users = [new_user() for _ in range(12)]
    conn.commit()

    def trade(ledger: Ledger, i: int) -> Receipt:
        ledger.deposit(users[i], 5_000, idempotency_key="d")
        hold = ledger.place_hold(users[i], asset="USD", amount=1_010, idempotency_key="h")
        return ledger.book_fill(
            users[i], symbol="RACE", side="buy", quantity=1, price_cents=1_000, fee_cents=10,
            executed_at=AT, idempotency_key="f", hold_id=hold.hold_id,
        )  # fmt: skip

    results = concurrently(migrated_dsn, len(users), trade)
    assert [type(r) for r in results] == [Receipt] * len(users), results
    for user in users:
        assert balance_rows(conn, user) == [("RACE", 0, 1, 0), ("USD", 3_990, 0, 0)]
        assert None not in balance_accounts(conn, user, "USD")
        assert balance_accounts(conn, user, "RACE")[:5] == (
            account_id(conn, user, "RACE", "position_settled"),
            account_id(conn, user, "RACE", "position_unsettled"),
            account_id(conn, user, "RACE", "position_held"),
            account_id(conn, None, "RACE", "broker_holds"),
            account_id(conn, None, "RACE", "broker_street"),
        )
    conn.commit()
    assert reconcile(conn).ok
