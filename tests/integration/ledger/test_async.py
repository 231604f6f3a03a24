"""``AsyncLedger`` against the real PostgreSQL: the sync ledger's operations, results and
errors, on psycopg's AsyncConnection (one per test, or a pool for the race)."""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import psycopg
import pyotp
import pytest
from psycopg_pool import AsyncConnectionPool

from ledger import (
    AssetBalances,
    AsyncLedger,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidTotpError,
    Ledger,
    UnknownAccountError,
    UnknownHoldError,
    reconcile,
    verify,
)
from ledger.rules import TransactionKind
from tickerplant.identity import Role, create_user

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

THURSDAY = datetime(2025, 6, 12, 15, tzinfo=UTC)


async def run(result: object) -> object:
    """The value of a sync ledger call, or the awaited value of an async one."""
    return await result if inspect.isawaitable(result) else result


@pytest.fixture
async def aconn(migrated_dsn: str) -> AsyncIterator[psycopg.AsyncConnection]:
    conn = await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def new_user(migrated_dsn: str) -> Callable[[], int]:
    def make() -> int:
        with psycopg.connect(migrated_dsn, autocommit=True) as conn:
            user, _ = create_user(conn, f"a{uuid.uuid4().hex[:10]}", Role.TRADER)
        return int(user.id)

    return make


async def test_each_operation_books_what_the_sync_ledger_books(aconn, new_user, migrated_dsn):
    """Deposit $1,000, hold $101, buy 10 @ $10 + $1 fee against the hold, release the rest,
    sell 4 @ $12 - $1: the balances are exact, and equal a sync run of the same requests."""
    results = {}
    for name in ("async", "sync"):
        user = new_user()
        if name == "async":
            ledger = AsyncLedger.over_connection(aconn)
        else:
            sync_conn = psycopg.connect(migrated_dsn, autocommit=True)
            ledger = Ledger.over_connection(sync_conn)

        deposit = await run(ledger.deposit(user, 100000, idempotency_key="d"))
        hold = await run(ledger.place_hold(user, asset="USD", amount=10100, idempotency_key="h"))
        fill = await run(
            ledger.book_fill(
                user, symbol="AAPL", side="buy", quantity=10, price_cents=1000, fee_cents=100,
                executed_at=THURSDAY, idempotency_key="f", hold_id=hold.hold_id,
            )
        )  # fmt: skip
        await run(ledger.place_hold(user, asset="USD", amount=500, idempotency_key="h2"))
        sale = await run(
            ledger.book_fill(
                user, symbol="AAPL", side="sell", quantity=4, price_cents=1200, fee_cents=100,
                executed_at=THURSDAY, idempotency_key="s",
            )
        )  # fmt: skip
        balances = await run(ledger.balances(user))
        assert deposit.kind is TransactionKind.DEPOSIT
        assert (hold.kind, fill.kind, fill.hold_id) == (
            TransactionKind.HOLD,
            TransactionKind.FILL,
            hold.hold_id,
        )
        assert str(fill.settlement_date) == "2025-06-13"
        assert str(sale.settlement_date) == "2025-06-13"
        results[name] = balances.assets
        if name == "sync":
            sync_conn.close()
    assert results["async"] == results["sync"]
    assert results["async"]["USD"] == AssetBalances(100000 - 10100, 4800 - 100, 500)
    assert results["async"]["AAPL"] == AssetBalances(0, 6, 0)


async def test_the_same_key_replays_the_receipt_and_another_request_is_refused(aconn, new_user):
    """A replayed hold returns the original receipt and books nothing; the key reused for a
    different amount raises IdempotencyConflictError naming key and operation."""
    user = new_user()
    ledger = AsyncLedger.over_connection(aconn)
    await ledger.deposit(user, 5000, idempotency_key="fund")
    first = await ledger.place_hold(user, asset="USD", amount=1000, idempotency_key="k")
    again = await ledger.place_hold(user, asset="USD", amount=1000, idempotency_key="k")
    assert again == first
    with pytest.raises(IdempotencyConflictError) as caught:
        await ledger.place_hold(user, asset="USD", amount=999, idempotency_key="k")
    assert (caught.value.key, caught.value.operation) == ("k", "place_hold")
    assert (await ledger.balances(user)).cash == AssetBalances(5000, 0, 1000)
    assert await ledger.buying_power(user) == 4000
    assert await ledger.withdrawable(user) == 4000


async def test_errors_keep_their_classes_and_fields(aconn, new_user):
    """Validation before any I/O, funds, unknown hold and unknown user: the sync ledger's
    error classes with their fields; nothing is booked by any of them."""
    user = new_user()
    ledger = AsyncLedger.over_connection(aconn)
    await ledger.deposit(user, 1000, idempotency_key="fund")
    with pytest.raises(InvalidAmountError) as bad:
        await ledger.place_hold(user, asset="USD", amount=-5, idempotency_key="x")
    assert bad.value.field == "amount"
    with pytest.raises(InsufficientFundsError) as short:
        await ledger.place_hold(user, asset="USD", amount=1001, idempotency_key="big")
    assert (short.value.needed, short.value.available, short.value.what) == (
        1001,
        1000,
        "buying power",
    )
    missing = uuid.uuid4()
    with pytest.raises(UnknownHoldError) as no_hold:
        await ledger.release_hold(user, missing, idempotency_key="r")
    assert (no_hold.value.hold_id, no_hold.value.user_id) == (missing, user)
    with pytest.raises(UnknownAccountError) as no_user:
        await ledger.deposit(2**40, 100, idempotency_key="ghost")
    assert no_user.value.user_id == 2**40
    assert (await ledger.balances(user)).cash == AssetBalances(1000, 0, 0)
    page = await ledger.activities(user)
    assert [a.kind for a in page.items] == [TransactionKind.DEPOSIT]


async def test_a_withdrawal_needs_a_code_that_is_good_once(aconn, new_user):
    """Enrolled through the async API: a wrong code is refused, the right one withdraws,
    the same code again is refused as used."""
    user = new_user()
    now = [datetime(2025, 6, 12, 15, 0, 10, tzinfo=UTC)]
    ledger = AsyncLedger.over_connection(aconn, clock=lambda: now[0])
    enrollment = await ledger.enroll_totp(user)
    await ledger.deposit(user, 3000, idempotency_key="fund")
    code = pyotp.TOTP(enrollment.secret).at(now[0])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(InvalidTotpError) as refused:
        await ledger.withdraw(user, 1000, totp_code=wrong, idempotency_key="w0")
    assert refused.value.reason == "wrong or expired code"
    await ledger.withdraw(user, 1000, totp_code=code, idempotency_key="w1")
    with pytest.raises(InvalidTotpError) as reused:
        await ledger.withdraw(user, 1000, totp_code=code, idempotency_key="w2")
    assert reused.value.reason == "this code was already used; wait for the next one"
    assert (await ledger.balances(user)).cash == AssetBalances(2000, 0, 0)


async def test_inside_a_callers_transaction_an_operation_is_a_savepoint(migrated_dsn, new_user):
    """On a connection in a transaction: a refused hold rolls back only itself; the
    caller's rollback takes the deposit with it."""
    user = new_user()
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as conn:
        ledger = AsyncLedger.over_connection(conn)
        async with conn.transaction(force_rollback=True):
            await ledger.deposit(user, 700, idempotency_key="d")
            with pytest.raises(InsufficientFundsError):
                await ledger.place_hold(user, asset="USD", amount=701, idempotency_key="h")
            assert (await ledger.balances(user)).cash == AssetBalances(700, 0, 0)
        assert (await ledger.balances(user)).cash == AssetBalances(0, 0, 0)


async def test_one_of_a_hundred_concurrent_100_dollar_holds_succeeds(migrated_dsn, new_user):
    """The interview's race on asyncio: $100, 100 concurrent $100 holds over 20 pooled
    connections in one event loop: exactly one succeeds, 99 are short of buying power."""
    user = new_user()
    async with AsyncConnectionPool(
        migrated_dsn, min_size=20, max_size=20, kwargs={"autocommit": True}
    ) as pool:
        ledger = AsyncLedger(pool)
        await ledger.deposit(user, 10000, idempotency_key="fund")
        outcomes = await asyncio.gather(
            *(
                ledger.place_hold(user, asset="USD", amount=10000, idempotency_key=f"h{i}")
                for i in range(100)
            ),
            return_exceptions=True,
        )
        short = [o for o in outcomes if isinstance(o, InsufficientFundsError)]
        assert len(short) == 99 and len(outcomes) == 100
        assert {o.what for o in short} == {"buying power"}
        assert (await ledger.balances(user)).cash == AssetBalances(10000, 0, 10000)
    with psycopg.connect(migrated_dsn) as conn:
        assert reconcile(conn).ok and verify(conn).ok


async def test_each_operation_is_one_statement_and_survives_a_lost_prepared_statement(
    aconn, new_user
):
    """On an autocommit connection each operation sends one statement (libpq trace); after
    DISCARD ALL drops the prepared calls, the next operation prepares again and books."""
    from tests.integration.ledger.test_ledger_pg import statements_sent

    user = new_user()
    ledger = AsyncLedger.over_connection(aconn)
    await ledger.deposit(user, 100000, idempotency_key="warm")
    await ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=1, price_cents=100,
        executed_at=THURSDAY, idempotency_key="warm-fill",
    )  # fmt: skip
    with tempfile.TemporaryFile("w+") as trace:
        aconn.pgconn.trace(trace.fileno())
        aconn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        hold = await ledger.place_hold(user, asset="USD", amount=10200, idempotency_key="h")
        await ledger.book_fill(
            user, symbol="AAPL", side="buy", quantity=10, price_cents=1000, fee_cents=100,
            executed_at=THURSDAY, idempotency_key="f", hold_id=hold.hold_id,
        )  # fmt: skip
        await ledger.release_hold(user, hold.hold_id, idempotency_key="r")
        aconn.pgconn.untrace()
        trace.seek(0)
        assert statements_sent(trace.read()) == 3
    await aconn.execute("DISCARD ALL")
    await ledger.place_hold(user, asset="USD", amount=50, idempotency_key="h2")
    assert aconn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert (await ledger.balances(user)).cash == AssetBalances(100000 - 100 - 10100, 0, 50)


async def test_an_operation_cancelled_mid_call_closes_its_connection(migrated_dsn, new_user):
    """A task cancelled while its call waits for the server (held up by another session's
    lock on the user's chain): the statement is cancelled on the server and the connection
    closed, so nothing half-read is left behind and the hold is never booked."""
    user = new_user()
    ledger_conn = await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True)
    ledger = AsyncLedger.over_connection(ledger_conn)
    await ledger.deposit(user, 1000, idempotency_key="fund")
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as blocker:
        await blocker.execute("SELECT 1 FROM ledger_chains WHERE user_id = %s FOR UPDATE", (user,))
        task = asyncio.create_task(
            ledger.place_hold(user, asset="USD", amount=100, idempotency_key="stuck")
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ledger_conn.closed
        for _ in range(100):  # the cancelled backend stops waiting for the chain lock
            cursor = await blocker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            if (await cursor.fetchone())[0] == 0:
                break
            await asyncio.sleep(0.05)
        await blocker.rollback()
        await asyncio.sleep(0.2)
    with psycopg.connect(migrated_dsn) as conn:
        assert Ledger.over_connection(conn).balances(user).cash == AssetBalances(1000, 0, 0)
