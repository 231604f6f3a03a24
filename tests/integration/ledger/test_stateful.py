"""A hypothesis state machine of random ledger operations on several users, some run by
concurrent workers; after every step the ledger's invariants are checked in SQL."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger import InsufficientFundsError, InvalidAmountError, Ledger, UnknownHoldError, reconcile
from tickerplant.identity import Role, create_user

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]
SYMBOLS = ("AAPL", "MSFT")
EXPECTED = (InsufficientFundsError, UnknownHoldError)


def run_machine(dsn: str) -> None:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.conn = psycopg.connect(dsn)
            self.ledger = Ledger.over_connection(self.conn)
            self.users = [
                int(create_user(self.conn, f"s{uuid.uuid4().hex[:10]}", Role.TRADER)[0].id)
                for _ in range(3)
            ]
            self.holds: list[tuple[int, uuid.UUID]] = []
            self.day = date(2025, 6, 2)

        def key(self) -> str:
            return uuid.uuid4().hex

        @rule(who=st.integers(0, 2), cents=st.integers(1, 50_000))
        def deposit(self, who: int, cents: int) -> None:
            self.ledger.deposit(self.users[who], cents, idempotency_key=self.key())

        @rule(
            who=st.integers(0, 2),
            cents=st.integers(1, 50_000),
            asset=st.sampled_from(("USD", *SYMBOLS)),
        )
        def hold(self, who: int, cents: int, asset: str) -> None:
            amount = cents if asset == "USD" else cents % 20 + 1
            try:
                receipt = self.ledger.place_hold(
                    self.users[who], asset=asset, amount=amount, idempotency_key=self.key()
                )
                self.holds.append((self.users[who], receipt.hold_id))
            except EXPECTED:
                pass

        @rule(index=st.integers(0, 50))
        def release(self, index: int) -> None:
            if self.holds:
                user, hold_id = self.holds.pop(index % len(self.holds))
                with contextlib.suppress(EXPECTED):
                    self.ledger.release_hold(user, hold_id, idempotency_key=self.key())

        @rule(
            who=st.integers(0, 2), side=st.sampled_from(("buy", "sell")), qty=st.integers(1, 20),
            price=st.integers(1, 5_000), fee=st.integers(0, 50), symbol=st.sampled_from(SYMBOLS),
            use_hold=st.booleans(),
        )  # fmt: skip
        def fill(self, who, side, qty, price, fee, symbol, use_hold) -> None:
            user = self.users[who]
            hold_id = next((h for u, h in self.holds if u == user), None) if use_hold else None
            try:
                self.ledger.book_fill(
                    user, symbol=symbol, side=side, quantity=qty, price_cents=price,
                    fee_cents=fee, executed_at=datetime(2025, 6, 2, 15, tzinfo=UTC)
                    + timedelta(days=(self.day - date(2025, 6, 2)).days),
                    idempotency_key=self.key(), hold_id=hold_id,
                )  # fmt: skip
            except (*EXPECTED, InvalidAmountError):  # InvalidAmount: a fee above the proceeds
                pass

        @rule(days=st.integers(0, 3))
        def settle(self, days: int) -> None:
            self.day += timedelta(days=days)
            self.ledger.settle_due(self.day)

        @rule(who=st.integers(0, 2), cents=st.integers(1, 30_000))
        def concurrent_holds_and_deposits(self, who: int, cents: int) -> None:
            user = self.users[who]

            def work(i: int) -> None:
                with psycopg.connect(dsn) as c:
                    lg = Ledger.over_connection(c)
                    try:
                        if i % 2:
                            lg.deposit(user, cents // 4 + 1, idempotency_key=uuid.uuid4().hex)
                        else:
                            lg.place_hold(
                                user, asset="USD", amount=cents, idempotency_key=uuid.uuid4().hex
                            )
                    except EXPECTED:
                        pass

            with ThreadPoolExecutor(6) as pool:
                list(pool.map(work, range(6)))

        @invariant()
        def ledger_invariants_hold(self) -> None:
            if not hasattr(self, "conn"):
                return
            report = reconcile(self.conn)
            assert report.ok, report
            with self.conn.transaction():
                negative = self.conn.execute(
                    "SELECT count(*) FROM ledger_account_balances WHERE balance < 0"
                ).fetchone()[0]
                uncovered = self.conn.execute(
                    "SELECT count(*) FROM (SELECT user_id, asset FROM ledger_account_balances"
                    " GROUP BY user_id, asset HAVING"
                    " sum(balance) FILTER (WHERE kind LIKE '%%held')"
                    " > sum(balance) FILTER (WHERE kind NOT LIKE '%%held')) x"
                ).fetchone()[0]
            assert (negative, uncovered) == (0, 0)

        def teardown(self) -> None:
            if hasattr(self, "conn"):
                self.conn.close()

    LedgerMachine.TestCase.settings = settings(
        max_examples=8, stateful_step_count=25, deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    LedgerMachine.TestCase().runTest()


def test_random_operations_keep_every_ledger_invariant(migrated_dsn):
    """Random deposits, holds, releases, fills, settlements and concurrent bursts on three
    users: after each step entries sum to zero per asset, no balance is negative, holds are
    covered, cached balances equal recomputed ones and open holds equal held balances."""
    run_machine(migrated_dsn)
