"""The ledger on a real PostgreSQL: races, idempotency, crashes, tampering, settlement."""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import psycopg
import pyotp
import pytest

from ledger import (
    AssetBalances,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidTotpError,
    Ledger,
    reconcile,
    verify,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def concurrently(dsn: str, n: int, work: Callable[[Ledger, int], object]) -> list[object]:
    """Run ``work(ledger, i)`` for i < n on n threads, each with its own connection, all
    released at once by a barrier; return each result or the exception it raised."""
    barrier = threading.Barrier(n)

    def one(i: int) -> object:
        with psycopg.connect(dsn) as c:
            ledger = Ledger.over_connection(c)
            ledger.balances(0)  # connect and warm up before the barrier
            barrier.wait(timeout=60)
            try:
                return work(ledger, i)
            except Exception as exc:
                return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    with conn.transaction():
        return conn.execute(
            "SELECT (SELECT count(*) FROM ledger_transactions),"
            " (SELECT count(*) FROM ledger_entries)"
        ).fetchone()


def test_one_of_a_hundred_concurrent_100_dollar_holds_succeeds_on_100_dollars(
    migrated_dsn, ledger, new_user, conn
):
    """$100 and 100 simultaneous $100 holds on separate connections: exactly one succeeds,
    99 fail with "insufficient buying power", and the balances are exact."""
    user = new_user()
    ledger.deposit(user, 10000, idempotency_key="fund")
    results = concurrently(
        migrated_dsn, 100,
        lambda lg, i: lg.place_hold(user, asset="USD", amount=10000, idempotency_key=f"h{i}"),
    )  # fmt: skip
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(failures) == 1
    assert len(failures) == 99
    assert all(isinstance(f, InsufficientFundsError) for f in failures)
    assert {str(f).split(" in account")[0] for f in failures} == {"insufficient buying power"}
    assert ledger.balances(user).cash == AssetBalances(10000, 0, 10000)
    assert (ledger.buying_power(user), ledger.withdrawable(user)) == (0, 0)
    assert reconcile(conn).ok


def test_one_of_a_hundred_concurrent_withdrawals_succeeds(migrated_dsn, ledger, new_user, conn):
    """$100 and 100 simultaneous $100 withdrawals with a valid code: one succeeds, 99 fail
    with insufficient withdrawable cash; $0 left and $100 went to the bank once."""
    user = new_user()
    ledger.deposit(user, 10000, idempotency_key="fund")
    totp = pyotp.TOTP(ledger.enroll_totp(user).secret)
    results = concurrently(
        migrated_dsn, 100,
        lambda lg, i: lg.withdraw(user, 10000, totp_code=totp.now(), idempotency_key=f"w{i}"),
    )  # fmt: skip
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 99
    assert all(
        isinstance(f, InsufficientFundsError) and f.what == "withdrawable cash" for f in failures
    )
    assert ledger.balances(user).cash == AssetBalances(0, 0, 0)
    with conn.transaction():
        kinds = conn.execute(
            "SELECT kind, count(*) FROM ledger_transactions WHERE user_id = %s GROUP BY kind"
            " ORDER BY kind",
            (user,),
        ).fetchall()
    assert kinds == [("deposit", 1), ("withdrawal", 1)]


def test_interleaved_deposits_and_holds_stay_exact(migrated_dsn, ledger, new_user, conn):
    """$100, then 50 concurrent $1 deposits interleaved with 50 concurrent $100 holds:
    $150 ends settled, exactly one hold of $100 succeeded (two would need $200)."""
    user = new_user()
    ledger.deposit(user, 10000, idempotency_key="fund")

    def work(lg: Ledger, i: int):
        if i % 2:
            return lg.deposit(user, 100, idempotency_key=f"d{i}")
        return lg.place_hold(user, asset="USD", amount=10000, idempotency_key=f"h{i}")

    results = concurrently(migrated_dsn, 100, work)
    holds_ok = [r for i, r in enumerate(results) if i % 2 == 0 and not isinstance(r, Exception)]
    deposit_errors = [r for i, r in enumerate(results) if i % 2 and isinstance(r, Exception)]
    assert (len(holds_ok), deposit_errors) == (1, [])
    assert ledger.balances(user).cash == AssetBalances(15000, 0, 10000)
    assert reconcile(conn).ok


def test_the_same_key_and_request_returns_the_original_receipt_without_a_second_transaction(
    ledger, new_user, conn
):
    """deposit($5, key k) twice: one receipt, one transaction, $5; the same key for $6 is
    refused with a message naming the key."""
    user = new_user()
    first = ledger.deposit(user, 500, idempotency_key="k")
    again = ledger.deposit(user, 500, idempotency_key="k")
    assert first == again
    assert counts(conn) == (1, 2)
    with pytest.raises(IdempotencyConflictError) as caught:
        ledger.deposit(user, 600, idempotency_key="k")
    assert str(caught.value) == (
        "idempotency key 'k' was already used for a different request (deposit); "
        "use a new key for a new deposit"
    )
    with pytest.raises(IdempotencyConflictError):
        ledger.place_hold(user, asset="USD", amount=500, idempotency_key="k")
    assert ledger.balances(user).cash == AssetBalances(500, 0, 0)


def test_concurrent_requests_with_one_key_book_one_transaction(
    migrated_dsn, ledger, new_user, conn
):
    """20 simultaneous deposits of $1 with the same key: all get the same receipt, $1 lands."""
    user = new_user()
    ledger.deposit(user, 1, idempotency_key="warm")
    results = concurrently(
        migrated_dsn, 20, lambda lg, i: lg.deposit(user, 100, idempotency_key="same")
    )
    assert len({r.transaction_id for r in results}) == 1
    assert ledger.balances(user).cash.settled == 101


def test_a_withdrawal_needs_a_valid_code_and_settled_cash_not_held(ledger, new_user):
    """No enrolment, a wrong code, then a held $60 of $100 leaves $40 withdrawable."""
    user = new_user()
    ledger.deposit(user, 10000, idempotency_key="fund")
    with pytest.raises(InvalidTotpError, match="not enrolled"):
        ledger.withdraw(user, 100, totp_code="123456", idempotency_key="w0")
    totp = pyotp.TOTP(ledger.enroll_totp(user).secret)
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    with pytest.raises(InvalidTotpError, match="wrong or expired code"):
        ledger.withdraw(user, 100, totp_code=wrong, idempotency_key="w1")
    ledger.place_hold(user, asset="USD", amount=6000, idempotency_key="h")
    with pytest.raises(InsufficientFundsError) as caught:
        ledger.withdraw(user, 4001, totp_code=totp.now(), idempotency_key="w2")
    assert (caught.value.needed, caught.value.available) == (4001, 4000)
    ledger.withdraw(user, 4000, totp_code=totp.now(), idempotency_key="w3")
    assert ledger.balances(user).cash == AssetBalances(6000, 0, 6000)


def test_a_totp_code_withdraws_once_and_never_again_within_its_window(conn, new_user):
    """$100 at 12:00:10 UTC: a code withdraws $10; the same code with a new key is refused
    "this code was already used" and moves nothing; the previous step's code, still inside
    the drift window, is refused too; the next step's code (30 s later) withdraws $20."""
    now = [datetime(2025, 6, 10, 12, 0, 10, tzinfo=UTC)]
    ledger = Ledger.over_connection(conn, clock=lambda: now[0])
    user = new_user()
    ledger.deposit(user, 10000, idempotency_key="fund")
    totp = pyotp.TOTP(ledger.enroll_totp(user).secret)
    code = totp.at(now[0])
    ledger.withdraw(user, 1000, totp_code=code, idempotency_key="w1")
    for replayed, key in ((code, "w2"), (totp.at(now[0], counter_offset=-1), "w3")):
        with pytest.raises(InvalidTotpError) as caught:
            ledger.withdraw(user, 1000, totp_code=replayed, idempotency_key=key)
        assert (caught.value.user_id, caught.value.reason) == (
            user,
            "this code was already used; wait for the next one",
        )
        assert str(caught.value) == (
            f"two-factor code refused for user {user}: "
            "this code was already used; wait for the next one"
        )
    assert ledger.balances(user).cash.settled == 9000
    now[0] = datetime(2025, 6, 10, 12, 0, 40, tzinfo=UTC)
    ledger.withdraw(user, 2000, totp_code=totp.at(now[0]), idempotency_key="w4")
    assert ledger.balances(user).cash.settled == 7000
    with conn.transaction():
        last_step = conn.execute(
            "SELECT last_step FROM ledger_totp WHERE user_id = %s", (user,)
        ).fetchone()[0]
    assert last_step == totp.timecode(now[0])


def test_a_backend_killed_mid_transaction_leaves_no_partial_entries(migrated_dsn, new_user, conn):
    """A deposit's entries are written inside an open transaction whose backend is then
    terminated: no transaction, entry or balance change survives."""
    user = new_user()
    Ledger.over_connection(conn).deposit(user, 100, idempotency_key="before")
    before = counts(conn)
    victim = psycopg.connect(migrated_dsn)
    with pytest.raises(psycopg.OperationalError), victim.transaction():
        Ledger.over_connection(victim).deposit(user, 999, idempotency_key="doomed")
        pid = victim.info.backend_pid
        with conn.transaction():
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        victim.execute("SELECT 1")
    victim.close()
    assert counts(conn) == before
    assert Ledger.over_connection(conn).balances(user).cash.settled == 100
    assert reconcile(conn).ok and verify(conn).ok


def test_the_database_refuses_unbalanced_entries_and_negative_balances(ledger, new_user, conn):
    """Raw SQL: an entry without its counterpart fails at commit with TPL01; a direct
    overdraft violates the balance CHECK."""
    user = new_user()
    ledger.deposit(user, 100, idempotency_key="fund")
    tx, account = conn.execute(
        "SELECT e.transaction_id, e.account_id FROM ledger_entries e JOIN ledger_accounts a"
        " ON a.id = e.account_id WHERE a.user_id = %s",
        (user,),
    ).fetchone()
    conn.commit()
    with (
        pytest.raises(psycopg.Error, match="is unbalanced: asset USD sums to 5") as caught,
        conn.transaction(),
    ):
        conn.execute(
            "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)"
            " VALUES (%s, %s, 'USD', 5)",
            (tx, account),
        )
    assert caught.value.sqlstate == "TPL01"
    with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
        conn.execute(
            "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)"
            " VALUES (%s, %s, 'USD', -101)",
            (tx, account),
        )
    assert ledger.balances(user).cash.settled == 100


def test_tampering_is_refused_or_named_by_verify(ledger, new_user, conn):
    """UPDATE/DELETE of entries is rejected; with triggers disabled, a changed amount is
    named 'altered', a deleted last transaction 'removed'."""
    user = new_user()
    receipts = [ledger.deposit(user, 100 * (i + 1), idempotency_key=f"d{i}") for i in range(4)]
    assert verify(conn).ok
    for statement in (
        "UPDATE ledger_entries SET amount = amount * 2",
        "DELETE FROM ledger_entries",
    ):
        with pytest.raises(psycopg.Error, match="append-only") as caught, conn.transaction():
            conn.execute(statement)
        assert caught.value.sqlstate == "TPL02"

    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # disables the triggers
        conn.execute(
            "UPDATE ledger_entries SET amount = -amount WHERE transaction_id = %s",
            (receipts[1].transaction_id,),
        )
    report = verify(conn)
    assert [(b.transaction_id, b.chain_seq, b.problem) for b in report.breaks] == [
        (receipts[1].transaction_id, 2, "altered")
    ]


def test_a_removed_or_inserted_transaction_is_named_by_verify(ledger, new_user, conn):
    """Deleting seq 2 of 3 names seq 3 'removed'; deleting the last names the one before it."""
    user = new_user()
    receipts = [ledger.deposit(user, 100, idempotency_key=f"d{i}") for i in range(3)]
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "DELETE FROM ledger_entries WHERE transaction_id = %s", (receipts[1].transaction_id,)
        )
        conn.execute("DELETE FROM ledger_transactions WHERE id = %s", (receipts[1].transaction_id,))
    found = verify(conn).breaks
    assert [(b.transaction_id, b.problem) for b in found] == [
        (receipts[2].transaction_id, "removed")
    ]
    assert found[0].detail == "transaction(s) with sequence 2..2 before it are missing"

    other = new_user()
    kept = ledger.deposit(other, 100, idempotency_key="a")
    # An out-of-band row at the end of the chain, hashed correctly but unknown to the head.
    with conn.transaction():
        row = conn.execute(
            "SELECT effective_at, hash FROM ledger_transactions WHERE id = %s",
            (kept.transaction_id,),
        ).fetchone()
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash) VALUES (%s, %s, 2, 'deposit', %s, %s, %s)",
            (uuid.uuid4(), other, row[0], row[1], bytes(32)),
        )
    problems = {b.user_id: b.problem for b in verify(conn).breaks}
    assert problems[other] in {"inserted", "altered"}


@pytest.fixture
def trader_with_shares(ledger, new_user):
    """A user with $1,000 who bought 10 AAPL at $10 on Thursday 12 June 2025."""
    user = new_user()
    ledger.deposit(user, 100000, idempotency_key="fund")
    return user


def at(day: date, hour_utc: int = 15) -> datetime:
    return datetime(day.year, day.month, day.day, hour_utc, tzinfo=UTC)


def test_a_friday_fill_settles_on_monday_and_settling_twice_changes_nothing(
    ledger, trader_with_shares, conn
):
    """Buy 10 @ $10 on Friday 13 June 2025: unsettled until Monday 16th; settle on Sunday
    moves nothing, on Monday moves the shares; a second run settles 0."""
    user = trader_with_shares
    hold = ledger.place_hold(user, asset="USD", amount=10100, idempotency_key="h")
    fill = ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=10, price_cents=1000, fee_cents=100,
        executed_at=at(date(2025, 6, 13)), idempotency_key="f", hold_id=hold.hold_id,
    )  # fmt: skip
    assert fill.settlement_date == date(2025, 6, 16)
    assert ledger.settle_due(date(2025, 6, 15)).settled == 0
    assert ledger.balances(user).assets["AAPL"] == AssetBalances(0, 10, 0)
    report = ledger.settle_due(date(2025, 6, 16))
    assert (report.settled, report.transactions) == (1, 1)
    snapshot = (counts(conn), ledger.balances(user))
    assert ledger.settle_due(date(2025, 6, 16)).settled == 0
    assert (counts(conn), ledger.balances(user)) == snapshot
    assert ledger.balances(user).assets["AAPL"] == AssetBalances(10, 0, 0)
    assert ledger.balances(user).cash == AssetBalances(89900, 0, 0)


def test_a_fill_before_a_holiday_settles_the_next_business_day(ledger, trader_with_shares):
    """A fill on Thursday 3 July 2025 settles Monday 7 July (4 July is a holiday)."""
    fill = ledger.book_fill(
        trader_with_shares, symbol="MSFT", side="buy", quantity=1, price_cents=100,
        executed_at=at(date(2025, 7, 3)), idempotency_key="f",
    )  # fmt: skip
    assert fill.settlement_date == date(2025, 7, 7)


def test_sale_proceeds_are_buying_power_but_not_withdrawable_until_settled(
    migrated_dsn, ledger, trader_with_shares, conn
):
    """Sell 10 settled shares for $50 (fee $1): buying power +$49, withdrawable unchanged;
    concurrent settle jobs settle it exactly once."""
    user = trader_with_shares
    ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=10, price_cents=1000,
        executed_at=at(date(2025, 6, 12)), idempotency_key="b",
    )  # fmt: skip
    ledger.settle_due(date(2025, 6, 13))
    sell_hold = ledger.place_hold(user, asset="AAPL", amount=10, idempotency_key="sh")
    with pytest.raises(InsufficientFundsError, match="insufficient position"):
        ledger.place_hold(user, asset="AAPL", amount=1, idempotency_key="sh2")
    ledger.book_fill(
        user, symbol="AAPL", side="sell", quantity=10, price_cents=500, fee_cents=100,
        executed_at=at(date(2025, 6, 13)), idempotency_key="s", hold_id=sell_hold.hold_id,
    )  # fmt: skip
    assert ledger.balances(user).cash == AssetBalances(90000, 4900, 0)
    assert (ledger.buying_power(user), ledger.withdrawable(user)) == (94900, 90000)
    reports = concurrently(migrated_dsn, 4, lambda lg, i: lg.settle_due(date(2025, 6, 16)))
    assert sum(r.settled for r in reports) == 1
    assert ledger.balances(user).cash == AssetBalances(94900, 0, 0)
    assert ledger.balances(user).assets["AAPL"] == AssetBalances(0, 0, 0)
    assert reconcile(conn).ok and verify(conn).ok


def test_activities_page_newest_first(ledger, new_user):
    """Five deposits, pages of two: seqs 5,4 then 3,2 then 1, each with its cash change."""
    user = new_user()
    for i in range(5):
        ledger.deposit(user, 100 + i, idempotency_key=f"d{i}")
    pages, before = [], None
    while True:
        page = ledger.activities(user, limit=2, before=before)
        pages.append([(a.seq, a.changes) for a in page.items])
        if page.next_before is None:
            break
        before = page.next_before
    assert pages == [
        [(5, {"USD": {"cash_settled": 104}}), (4, {"USD": {"cash_settled": 103}})],
        [(3, {"USD": {"cash_settled": 102}}), (2, {"USD": {"cash_settled": 101}})],
        [(1, {"USD": {"cash_settled": 100}})],
    ]


def test_reconcile_reports_a_cached_balance_changed_behind_the_ledgers_back(ledger, new_user, conn):
    """Setting a cached balance directly is reported with cached and recomputed values."""
    user = new_user()
    ledger.deposit(user, 700, idempotency_key="d")
    with conn.transaction():
        conn.execute(
            "UPDATE ledger_balances SET settled = 9999 WHERE user_id = %s AND asset = 'USD'",
            (user,),
        )
    report = reconcile(conn)
    assert [(d.user_id, d.kind, d.cached, d.recomputed) for d in report.differences] == [
        (user, "cash_settled", 9999, 700)
    ]


def test_verify_rebuilds_the_servers_hash_of_awkward_metadata(ledger, new_user, conn):
    """Metadata with quotes, backslashes, control characters, non-ASCII text and keys of
    several lengths is hashed by the database and verified by Python's rebuild of it."""
    user = new_user()
    metadata = {
        "note": 'say "hi"\\ \n\t\x01 é € 𝄞',
        "a": 1,
        "zz": True,
        "bb": None,
        "reference": -(2**62),
        "é": "",
    }
    receipt = ledger.deposit(user, 100, idempotency_key="odd", metadata=metadata)
    with conn.transaction():
        stored, form = conn.execute(
            "SELECT metadata, hash_form FROM ledger_transactions WHERE id = %s",
            (receipt.transaction_id,),
        ).fetchone()
    assert (stored, form) == (metadata, 2)
    assert verify(conn).ok


def test_a_chain_hashed_before_migration_3_still_verifies(ledger, new_user, conn):
    """A transaction booked with hash form 1 (Python's compact JSON), followed by form-2 ones,
    verifies; changing the form-1 row's amount is named 'altered'."""
    from ledger.audit import GENESIS, canonical_content, chain_hash

    user = new_user()
    ledger.deposit(user, 1, idempotency_key="accounts")  # creates the accounts and chain
    tx_id, at = uuid.uuid4(), datetime(2025, 1, 2, 15, tzinfo=UTC)
    with conn.transaction():
        # Rebuild the chain from scratch with a legacy row first.
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "DELETE FROM ledger_entries WHERE transaction_id IN"
            " (SELECT id FROM ledger_transactions WHERE user_id = %s)",
            (user,),
        )
        conn.execute("DELETE FROM ledger_transactions WHERE user_id = %s", (user,))
        ids = dict(
            conn.execute(
                "SELECT kind, id FROM ledger_accounts WHERE (user_id = %s AND kind ="
                " 'cash_settled') OR (user_id IS NULL AND asset = 'USD' AND kind = 'broker_bank')",
                (user,),
            ).fetchall()
        )
        entries = [(ids["broker_bank"], "USD", -500), (ids["cash_settled"], "USD", 500)]
        content = canonical_content(
            transaction_id=tx_id, user_id=user, chain_seq=1, kind="deposit",
            idempotency_key=None, effective_at=at, settlement_date=None, metadata={},
            entries=entries, form=1,
        )  # fmt: skip
        digest = chain_hash(GENESIS, content)
        conn.execute(
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash, hash_form) VALUES (%s, %s, 1, 'deposit', %s, %s, %s, 1)",
            (tx_id, user, at, GENESIS, digest),
        )
        for account, asset, amount in entries:
            conn.execute(
                "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)"
                " VALUES (%s, %s, %s, %s)",
                (tx_id, account, asset, amount),
            )
        conn.execute(
            "UPDATE ledger_chains SET seq = 1, head = %s WHERE user_id = %s", (digest, user)
        )
        conn.execute(
            "UPDATE ledger_balances SET settled = 500 WHERE user_id = %s AND asset = 'USD'", (user,)
        )
    ledger.deposit(user, 200, idempotency_key="after")
    assert verify(conn).ok
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "UPDATE ledger_entries SET amount = 600 WHERE transaction_id = %s AND amount = 500",
            (tx_id,),
        )
    assert [(b.transaction_id, b.problem) for b in verify(conn).breaks] == [(tx_id, "altered")]


def test_hold_errors_from_the_database_keep_their_classes_and_fields(ledger, new_user, conn):
    """Releasing an unknown hold, or one already released, raises UnknownHoldError with its
    id; a sell fee above the proceeds names the field; nothing is booked by either."""
    from ledger import InvalidAmountError, UnknownHoldError

    user = new_user()
    ledger.deposit(user, 1000, idempotency_key="fund")
    missing = uuid.uuid4()
    with pytest.raises(UnknownHoldError) as caught:
        ledger.release_hold(user, missing, idempotency_key="r0")
    assert (caught.value.hold_id, caught.value.user_id) == (missing, user)
    assert str(caught.value) == f"no open hold {missing} for user {user}"
    hold = ledger.place_hold(user, asset="USD", amount=400, idempotency_key="h")
    assert ledger.release_hold(user, hold.hold_id, idempotency_key="r1").hold_id == hold.hold_id
    with pytest.raises(UnknownHoldError):
        ledger.release_hold(user, hold.hold_id, idempotency_key="r2")
    with pytest.raises(InvalidAmountError) as bad_fee:
        ledger.book_fill(
            user, symbol="AAPL", side="sell", quantity=1, price_cents=100, fee_cents=100,
            executed_at=at(date(2025, 6, 12)), idempotency_key="s",
        )  # fmt: skip
    assert (bad_fee.value.field, bad_fee.value.reason) == (
        "fee",
        "must be less than the proceeds 100",
    )
    assert counts(conn) == (3, 6)
    assert ledger.balances(user).cash == AssetBalances(1000, 0, 0)


def statements_sent(trace: str) -> int:
    """Statements a libpq trace shows the client sending: simple queries and executions of
    prepared ones (each the ledger's one round trip, whichever path psycopg or libpq took)."""
    return sum(
        line.split("\t")[2] in ("Query", "Execute")
        for line in trace.splitlines()
        if line.startswith("F\t")
    )


def test_each_operation_is_one_statement_on_an_autocommit_connection(migrated_dsn, new_user):
    """Once a user's accounts exist, deposit, hold, fill and release each send one statement
    (their own transaction in autocommit mode) and book exactly what they did before."""
    user = new_user()
    with psycopg.connect(migrated_dsn, autocommit=True) as c, tempfile.TemporaryFile("w+") as t:
        ledger = Ledger.over_connection(c)
        ledger.deposit(user, 100000, idempotency_key="warm")
        ledger.book_fill(
            user, symbol="AAPL", side="buy", quantity=1, price_cents=100,
            executed_at=at(date(2025, 6, 12)), idempotency_key="warm-fill",
        )  # fmt: skip
        c.pgconn.trace(t.fileno())
        c.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        ledger.deposit(user, 100, idempotency_key="d")
        hold = ledger.place_hold(user, asset="USD", amount=10100, idempotency_key="h")
        ledger.book_fill(
            user, symbol="AAPL", side="buy", quantity=10, price_cents=1000, fee_cents=100,
            executed_at=at(date(2025, 6, 12)), idempotency_key="f", hold_id=hold.hold_id,
        )  # fmt: skip
        ledger.place_hold(user, asset="USD", amount=50, idempotency_key="h2")
        again = ledger.place_hold(user, asset="USD", amount=50, idempotency_key="h2")
        c.pgconn.untrace()
        t.seek(0)
        assert statements_sent(t.read()) == 5
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert ledger.balances(user).cash == AssetBalances(89900, 0, 50)
        assert again.hold_id is not None
        assert reconcile(c).ok and verify(c).ok
