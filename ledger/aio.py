"""``AsyncLedger``: the ledger's Python API for asyncio callers (the order service). psycopg's
``AsyncConnection``.

The same operations, arguments, results and errors as the sync :class:`ledger.Ledger`, and the
same code for everything but the I/O: arguments are validated, requests hashed and each
operation's function call built by :class:`ledger.service.LedgerRequests`, and the reads'
SQL and results come from ``ledger.service`` too. Each operation is one database transaction
and one statement (``ledger.journal.call_async``): on a connection in autocommit mode one round
trip once prepared, inside a caller's transaction a savepoint.

The settlement job (:meth:`ledger.Ledger.settle_due`) stays sync: it is a batch run by the CLI
or a scheduler, not on a request path.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import psycopg
import pyotp
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from ledger import journal
from ledger.calendar import ExchangeCalendar
from ledger.errors import UnknownAccountError
from ledger.money import UserId
from ledger.rules import Side
from ledger.service import (
    ACTIVITIES_SQL,
    BALANCES_SQL,
    ENROLL_TOTP_SQL,
    TOTP_SECRET_SQL,
    ActivityPage,
    Balances,
    Booking,
    LedgerRequests,
    Receipt,
    TotpEnrollment,
    _utcnow,
    activities_from_rows,
    activities_params,
    balances_from_rows,
    receipt_from_jsonb,
    totp_enrollment,
)


class AsyncLedger(LedgerRequests):
    """:class:`ledger.Ledger` for asyncio. Amounts: cents and shares.

    Build it over a psycopg async pool (``AsyncLedger(pool)``) or one connection
    (``AsyncLedger.over_connection(conn)``). Every method that moves money takes an
    ``idempotency_key`` with the sync ledger's meaning: the same key and request return the
    original :class:`Receipt`; the key reused for another request raises
    :class:`IdempotencyConflictError`. A pool's connections should be in autocommit mode for
    the one-round-trip path (``open_async_pool(..., autocommit=True)``).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool | None = None,
        *,
        calendar: ExchangeCalendar | None = None,
        clock: Callable[[], datetime] = _utcnow,
        _connection: psycopg.AsyncConnection | None = None,
    ) -> None:
        if (pool is None) == (_connection is None):
            raise TypeError("pass a pool, or use AsyncLedger.over_connection(conn)")
        super().__init__(calendar, clock)
        self._pool = pool
        self._conn = _connection
        # The connection's prepared calls, looked up once rather than per operation.
        self._statements = (
            journal.prepared_statements(_connection) if _connection is not None else None
        )

    @classmethod
    def over_connection(
        cls,
        conn: psycopg.AsyncConnection,
        *,
        calendar: ExchangeCalendar | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> AsyncLedger:
        return cls(calendar=calendar, clock=clock, _connection=conn)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self._conn is not None:
            yield self._conn
        else:
            assert self._pool is not None
            async with self._pool.connection() as conn:
                yield conn

    # -- the operations (see ledger.Ledger for their rules) -------------------------------

    async def deposit(
        self,
        user_id: UserId | int,
        amount_cents: int,
        *,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> Receipt:
        """External bank → the user's settled cash."""
        return await self._book(self._deposit(user_id, amount_cents, idempotency_key, metadata))

    async def withdraw(
        self,
        user_id: UserId | int,
        amount_cents: int,
        *,
        totp_code: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> Receipt:
        """The user's settled cash not held → external bank, with a valid TOTP code (good
        once; see :meth:`ledger.Ledger.withdraw`)."""
        booking = self._withdraw(user_id, amount_cents, totp_code, idempotency_key, metadata)
        return await self._book(booking)

    async def place_hold(
        self,
        user_id: UserId | int,
        *,
        asset: str,
        amount: int,
        idempotency_key: str,
        order_id: str | None = None,
    ) -> Receipt:
        """Reserve ``amount`` for an open order: cents of USD for a buy, shares for a sell."""
        return await self._book(self._place_hold(user_id, asset, amount, idempotency_key, order_id))

    async def release_hold(
        self,
        user_id: UserId | int,
        hold_id: uuid.UUID,
        *,
        idempotency_key: str,
    ) -> Receipt:
        """Give back what remains of a hold (the order was cancelled or is done)."""
        return await self._book(self._release_hold(user_id, hold_id, idempotency_key))

    async def book_fill(
        self,
        user_id: UserId | int,
        *,
        symbol: str,
        side: Side | str,
        quantity: int,
        price_cents: int,
        fee_cents: int = 0,
        executed_at: datetime,
        idempotency_key: str,
        hold_id: uuid.UUID | None = None,
    ) -> Receipt:
        """An execution: cash ↔ shares into the unsettled accounts, settling T+1 business day."""
        return await self._book(
            self._book_fill(
                user_id, symbol, side, quantity, price_cents, fee_cents, executed_at,
                idempotency_key, hold_id,
            )
        )  # fmt: skip

    # -- reads ----------------------------------------------------------------------------

    async def balances(self, user_id: UserId | int) -> Balances:
        """Cached balances of every asset the user has accounts in (not locked)."""
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(BALANCES_SQL, (int(user_id),))
            rows = await cursor.fetchall()
        return balances_from_rows(int(user_id), rows)

    async def buying_power(self, user_id: UserId | int) -> int:
        """Cents: settled cash + unsettled cash - holds."""
        return (await self.balances(user_id)).cash.buying_power

    async def withdrawable(self, user_id: UserId | int) -> int:
        """Cents: settled cash - holds on settled cash."""
        return (await self.balances(user_id)).cash.withdrawable

    async def activities(
        self, user_id: UserId | int, *, limit: int = 50, before: int | None = None
    ) -> ActivityPage:
        """The user's transactions, newest first, ``limit`` per page."""
        params = activities_params(user_id, limit, before)
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(ACTIVITIES_SQL, params)
            rows = await cursor.fetchall()
        return activities_from_rows(rows, limit)

    async def enroll_totp(
        self, user_id: UserId | int, *, issuer: str = "tickerplant"
    ) -> TotpEnrollment:
        """Create (or replace) the user's TOTP secret; show the URI once as a QR code."""
        secret = pyotp.random_base32()
        async with self._connection() as conn, conn.transaction():
            try:
                await conn.execute(ENROLL_TOTP_SQL, (int(user_id), secret))
            except pg_errors.ForeignKeyViolation as exc:
                raise UnknownAccountError(int(user_id)) from exc
        return totp_enrollment(user_id, secret, issuer)

    # -- machinery ------------------------------------------------------------------------

    async def _book(self, booking: Booking) -> Receipt:
        if self._conn is not None:
            return await self._book_on(self._conn, self._statements, booking)
        assert self._pool is not None
        async with self._pool.connection() as conn:
            return await self._book_on(conn, None, booking)

    async def _book_on(
        self,
        conn: psycopg.AsyncConnection,
        statements: dict[str, bytes] | None,
        booking: Booking,
    ) -> Receipt:
        known = self._known.get(booking.user)
        if known is None or not known.issuperset(booking.assets):
            missing = self._missing(booking.user, booking.assets)
            try:
                await journal.ensure_accounts_async(conn, booking.user, missing)
            except pg_errors.ForeignKeyViolation as exc:
                raise UnknownAccountError(booking.user) from exc
            self._ensured(booking.user, missing)
        params = booking.params
        if booking.needs_totp:
            async with conn.transaction():
                cursor = await conn.execute(TOTP_SECRET_SQL, (booking.user,))
                row = await cursor.fetchone()
            verdict = self._totp_verdict(row[0] if row else None, booking.totp_code)
            params = booking.call_params(verdict)
        result = await journal.call_async(conn, booking.query, params, statements)
        return receipt_from_jsonb(result)
