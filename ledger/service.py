"""``Ledger``: the Python API the OMS and the HTTP router call. Sync psycopg.

The asyncio twin, :class:`ledger.aio.AsyncLedger`, shares everything but the I/O with it:
validation, request hashing and each operation's function call (:class:`LedgerRequests`
builds a :class:`Booking`), the TOTP verdict, and the reads' SQL and result building.

Each operation is one database transaction and one statement: the arguments are validated
here, then its PL/pgSQL function (migration 0003, called through ``ledger.journal.call``) claims
the idempotency key, locks in the order of ``ledger.journal``, checks the funds, writes the
entries and appends them to the user's hash chain. Any error rolls everything back, the key
included, so a refused request can be retried with the same key. On a connection in autocommit
mode that is one round trip per operation; inside a caller's transaction it is a savepoint.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, LiteralString
from zoneinfo import ZoneInfo

import psycopg
import pyotp
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ledger import journal, rules
from ledger.calendar import ExchangeCalendar
from ledger.errors import (
    InvalidAmountError,
    UnknownAccountError,
)
from ledger.money import USD, Asset, UserId, check_asset, check_cents, check_shares
from ledger.rules import AccountKind, AssetBalances, Side, TransactionKind

logger = logging.getLogger(__name__)

EXCHANGE_TZ = ZoneInfo("America/New_York")
_TOTP_CODE = re.compile(r"[0-9]{6}")
_KEY_MAX = 200


# The default clock: a C call, no Python frame (the order path reads it once per hold).
_utcnow: Callable[[], datetime] = functools.partial(datetime.now, UTC)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an operation did: its journal transaction, and the hold it created or used."""

    transaction_id: uuid.UUID
    kind: TransactionKind
    hold_id: uuid.UUID | None = None
    settlement_date: date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_id": str(self.transaction_id),
            "kind": self.kind.value,
            "hold_id": str(self.hold_id) if self.hold_id else None,
            "settlement_date": self.settlement_date.isoformat() if self.settlement_date else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            uuid.UUID(data["transaction_id"]),
            TransactionKind(data["kind"]),
            uuid.UUID(data["hold_id"]) if data.get("hold_id") else None,
            date.fromisoformat(data["settlement_date"]) if data.get("settlement_date") else None,
        )


# A function's receipt as PostgreSQL prints ``ledger_receipt``'s jsonb (migration 0003): keys
# ordered by length, ": " and ", " between, uuid and date in their canonical text. Read by
# this pattern on the order path; any other text goes through json and Receipt.from_json.
_UUID_TEXT = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RECEIPT_JSONB = re.compile(
    rb'\{"kind": "([a-z_]+)", "hold_id": (?:null|"(%s)"), "transaction_id": "(%s)", '
    rb'"settlement_date": (?:null|"([0-9]{4}-[0-9]{2}-[0-9]{2})")\}' % (_UUID_TEXT, _UUID_TEXT)
)
_KINDS = {kind.value.encode(): kind for kind in TransactionKind}


def _uuid(text: bytes) -> uuid.UUID:
    """The uuid of its canonical text (as the pattern matched it)."""
    return uuid.UUID(int=int(text.replace(b"-", b""), 16))


def receipt_from_jsonb(text: bytes) -> Receipt:
    """The :class:`Receipt` of an operation's function result (jsonb text)."""
    match = _RECEIPT_JSONB.fullmatch(text)
    kind = _KINDS.get(match[1]) if match else None
    if match is None or kind is None:
        return Receipt.from_json(json.loads(text))
    _, hold_id, transaction_id, settles = match.groups()
    return Receipt(
        _uuid(transaction_id),
        kind,
        _uuid(hold_id) if hold_id else None,
        date.fromisoformat(settles.decode()) if settles else None,
    )


@dataclass(frozen=True, slots=True)
class Activity:
    """One statement line: a transaction and how it changed the user's own accounts."""

    transaction_id: uuid.UUID
    seq: int
    kind: TransactionKind
    effective_at: datetime
    settlement_date: date | None
    metadata: dict[str, Any]
    changes: dict[str, dict[str, int]]  # asset -> account kind -> amount


@dataclass(frozen=True, slots=True)
class ActivityPage:
    items: list[Activity]
    next_before: int | None  # pass as ``before`` for the next (older) page


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    secret: str
    provisioning_uri: str


@dataclass(frozen=True, slots=True)
class SettleReport:
    settled: int
    transactions: int
    already_settled: int


@dataclass(frozen=True, slots=True)
class Balances:
    """A user's balances per asset: USD cash and each position."""

    user_id: int
    assets: dict[str, AssetBalances] = field(default_factory=dict)

    @property
    def cash(self) -> AssetBalances:
        return self.assets.get(USD, AssetBalances())


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= _KEY_MAX:
        raise InvalidAmountError("idempotency_key", key, f"must be 1 to {_KEY_MAX} characters")
    return key


def _check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Metadata is hashed as JSON, so only values that round-trip exactly: no floats."""
    metadata = dict(metadata or {})
    for name, value in metadata.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, str | int | bool)):
            raise InvalidAmountError(f"metadata.{name}", value, "use str, int, bool or null")
    return metadata


@dataclass(slots=True)
class Booking:
    """One money-moving operation, validated and ready to send: its function call and the
    accounts it needs. Built without I/O by :class:`LedgerRequests`; booked by :class:`Ledger`
    (sync) or :class:`ledger.aio.AsyncLedger` (asyncio) in one statement. Not frozen: a
    frozen dataclass pays a call per field to be built, and a booking lives for one call."""

    user: int
    assets: tuple[Asset, ...]  # whose accounts must exist before the call, in asset order
    query: LiteralString
    # (user, idempotency key, the request's hash, the function's other parameters): the
    # hash is compared when the key was used before.
    params: tuple[Any, ...]
    totp_code: Any = None  # a withdrawal's one-time code, judged against the stored secret
    needs_totp: bool = False

    def call_params(self, totp: tuple[str | None, int | None]) -> tuple[Any, ...]:
        """The function's parameters, given the TOTP verdict (a withdrawal's last two)."""
        return self.params + totp if self.needs_totp else self.params


# A side's value by the side or its value (a StrEnum member hashes and compares as its value),
# without the enum's call and value property.
_SIDE_VALUES = {side.value: side.value for side in Side}
_USD_ONLY = (USD,)


class LedgerRequests:
    """What the sync and the async ledger share: argument validation, request hashing and
    the function call of each operation (:class:`Booking`), the TOTP verdict, and how rows
    read back become results. No I/O here."""

    def __init__(self, calendar: ExchangeCalendar | None, clock: Callable[[], datetime]) -> None:
        self.calendar = calendar or ExchangeCalendar()
        self._clock = clock
        self._known: dict[int, set[Asset]] = {}  # user -> assets with accounts ensured

    def _deposit(
        self, user_id: UserId | int, amount_cents: int, key: str, metadata: dict[str, Any] | None
    ) -> Booking:
        amount = check_cents("amount", amount_cents)
        metadata = _check_metadata(metadata)
        user, key = int(user_id), _check_key(key)
        digest = journal.request_hash("deposit", {"amount": amount, "metadata": metadata})
        params = (user, key, digest, amount, Jsonb(metadata), self._clock())
        return Booking(user, _USD_ONLY, journal.DEPOSIT, params)

    def _withdraw(
        self,
        user_id: UserId | int,
        amount_cents: int,
        totp_code: str,
        key: str,
        metadata: dict[str, Any] | None,
    ) -> Booking:
        amount = check_cents("amount", amount_cents)
        metadata = _check_metadata(metadata)
        user, key = int(user_id), _check_key(key)
        digest = journal.request_hash("withdraw", {"amount": amount, "metadata": metadata})
        params = (user, key, digest, amount, Jsonb(metadata), self._clock())
        return Booking(user, _USD_ONLY, journal.WITHDRAW, params, totp_code, needs_totp=True)

    def _place_hold(
        self, user_id: UserId | int, asset: str, amount: int, key: str, order_id: str | None
    ) -> Booking:
        asset = check_asset("asset", asset)
        amount = check_cents("amount", amount) if asset == USD else check_shares("amount", amount)
        user, key = int(user_id), _check_key(key)
        digest = journal.place_hold_hash(asset, amount, order_id)
        params = (user, key, digest, asset, amount, order_id, self._clock())
        return Booking(user, (asset,), journal.PLACE_HOLD, params)

    def _release_hold(self, user_id: UserId | int, hold_id: uuid.UUID, key: str) -> Booking:
        user, key = int(user_id), _check_key(key)
        digest = journal.request_hash("release_hold", {"hold_id": str(hold_id)})
        # No accounts to ensure: a hold exists only where its accounts do.
        params = (user, key, digest, hold_id, self._clock())
        return Booking(user, (), journal.RELEASE_HOLD, params)

    def _book_fill(
        self,
        user_id: UserId | int,
        symbol: str,
        side: Side | str,
        quantity: int,
        price_cents: int,
        fee_cents: int,
        executed_at: datetime,
        key: str,
        hold_id: uuid.UUID | None,
    ) -> Booking:
        symbol = check_asset("symbol", symbol)
        if symbol == USD:
            raise InvalidAmountError("symbol", symbol, "a security symbol, not USD")
        try:
            side_value = _SIDE_VALUES[side]
        except (KeyError, TypeError):
            side_value = Side(side).value  # not a side: the enum's ValueError
        quantity = check_shares("quantity", quantity)
        price = check_cents("price_cents", price_cents)
        fee = check_cents("fee_cents", fee_cents, allow_zero=True)
        if executed_at.tzinfo is None:
            raise InvalidAmountError("executed_at", executed_at, "must be timezone-aware")
        trade_date, settles = self.calendar.trade_and_settlement_dates(
            executed_at.astimezone(EXCHANGE_TZ).date()
        )
        user, key = int(user_id), _check_key(key)
        # The instant and the hold as the request hash writes them, sent as they are: text the
        # function reads as the same timestamptz and uuid (rendered once, not twice).
        executed = executed_at.astimezone(UTC).isoformat()
        hold = str(hold_id) if hold_id else None
        digest = journal.book_fill_hash(symbol, side_value, quantity, price, fee, executed, hold)
        params = (
            user, key, digest, symbol, side_value, quantity, price, fee, executed,
            trade_date, settles, hold,
        )  # fmt: skip
        assets = (symbol, USD) if symbol < USD else (USD, symbol)  # in asset order
        return Booking(user, assets, journal.BOOK_FILL, params)

    def _totp_verdict(self, secret: str | None, code: Any) -> tuple[str | None, int | None]:
        """Why ``code`` is refused (the withdrawal function raises the reason), or ``None`` and
        the time step it matched, which the function accepts only once per user. ``secret``
        is the user's stored one, ``None`` when not enrolled."""
        if not isinstance(code, str) or not _TOTP_CODE.fullmatch(code):
            return "expected a 6-digit code", None
        if secret is None:
            return "two-factor authentication is not enrolled", None
        totp = pyotp.TOTP(secret)
        step = totp.timecode(self._clock())
        # One step of drift either way: a code typed just as it rolled over still counts.
        # The latest matching step is the one recorded, so a code is never good twice.
        for candidate in (step + 1, step, step - 1):
            if hmac.compare_digest(totp.generate_otp(candidate), code):
                return None, candidate
        return "wrong or expired code", None

    def _missing(self, user: int, assets: Sequence[Asset]) -> list[Asset]:
        """Those of ``assets`` whose accounts this ledger has not ensured for the user yet."""
        known = self._known.get(user)
        if known is not None and known.issuperset(assets):
            return []
        return [asset for asset in assets if known is None or asset not in known]

    def _ensured(self, user: int, assets: Sequence[Asset]) -> None:
        self._known.setdefault(user, set()).update(assets)


# Reads, shared by both ledgers: the SQL and how its rows become results.
BALANCES_SQL: LiteralString = (
    "SELECT asset, kind, balance FROM ledger_account_balances WHERE user_id = %s"
)
TOTP_SECRET_SQL: LiteralString = "SELECT secret FROM ledger_totp WHERE user_id = %s"
ENROLL_TOTP_SQL: LiteralString = (
    "INSERT INTO ledger_totp (user_id, secret) VALUES (%s, %s) ON CONFLICT"
    " (user_id) DO UPDATE SET secret = EXCLUDED.secret, enrolled_at = now(),"
    " last_step = NULL"
)
ACTIVITIES_SQL: LiteralString = """
    SELECT t.id, t.chain_seq, t.kind, t.effective_at, t.settlement_date, t.metadata,
           coalesce(json_agg(json_build_array(a.asset, a.kind, e.amount)
                    ORDER BY e.id) FILTER (WHERE a.user_id IS NOT NULL), '[]')
    FROM ledger_transactions t
    JOIN ledger_entries e ON e.transaction_id = t.id
    JOIN ledger_accounts a ON a.id = e.account_id
    WHERE t.user_id = %s AND t.chain_seq < %s AND t.chain_seq > 0
    GROUP BY t.id ORDER BY t.chain_seq DESC LIMIT %s
"""  # chain_seq > 0: always true, the predicate of the chain-position index (migration 0010)


def balances_from_rows(user_id: int, rows: list[tuple[str, str, int]]) -> Balances:
    per_asset: dict[str, dict[AccountKind, int]] = {}
    for asset, kind, balance in rows:
        per_asset.setdefault(asset, {})[AccountKind(kind)] = balance
    assets = {
        asset: AssetBalances(*(kinds.get(k, 0) for k in rules.user_kinds(Asset(asset))))
        for asset, kinds in sorted(per_asset.items())
    }
    return Balances(user_id, assets)


def activities_params(
    user_id: UserId | int, limit: int, before: int | None
) -> tuple[int, int, int]:
    if not 1 <= limit <= 500:
        raise InvalidAmountError("limit", limit, "must be between 1 and 500")
    return int(user_id), before if before is not None else 2**62, limit + 1


def activities_from_rows(rows: list[tuple[Any, ...]], limit: int) -> ActivityPage:
    items = []
    for tx_id, seq, kind, at, settles, metadata, changes in rows[:limit]:
        per_asset: dict[str, dict[str, int]] = {}
        for asset, account_kind, amount in changes:
            per_asset.setdefault(asset, {})[account_kind] = (
                per_asset.get(asset, {}).get(account_kind, 0) + amount
            )
        items.append(Activity(tx_id, seq, TransactionKind(kind), at, settles, metadata, per_asset))
    next_before = items[-1].seq if len(rows) > limit else None
    return ActivityPage(items, next_before)


def totp_enrollment(user_id: UserId | int, secret: str, issuer: str) -> TotpEnrollment:
    uri = pyotp.TOTP(secret).provisioning_uri(name=f"user-{int(user_id)}", issuer_name=issuer)
    return TotpEnrollment(secret, uri)


class Ledger(LedgerRequests):
    """Double-entry bookkeeping for users' cash and positions. Amounts: cents and shares.

    Build it over a psycopg pool (``Ledger(pool)``, the OMS) or one connection
    (``Ledger.over_connection(conn)``, a request or a test). Every method that moves money
    takes an ``idempotency_key``: repeating a request with the same key returns the original
    :class:`Receipt` and books nothing; reusing the key for another request raises
    :class:`IdempotencyConflictError`.
    """

    def __init__(
        self,
        pool: ConnectionPool | None = None,
        *,
        calendar: ExchangeCalendar | None = None,
        clock: Callable[[], datetime] = _utcnow,
        _connection: psycopg.Connection | None = None,
    ) -> None:
        if (pool is None) == (_connection is None):
            raise TypeError("pass a pool, or use Ledger.over_connection(conn)")
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
        conn: psycopg.Connection,
        *,
        calendar: ExchangeCalendar | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Ledger:
        return cls(calendar=calendar, clock=clock, _connection=conn)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            assert self._pool is not None
            with self._pool.connection() as conn:
                yield conn

    # -- the operations -------------------------------------------------------------------
    #
    # Each validates its arguments here, then books in one call of its server-side function
    # (``ledger.journal``): key, locks, checks, entries and hash chain in one statement.

    def deposit(
        self,
        user_id: UserId | int,
        amount_cents: int,
        *,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> Receipt:
        """External bank → the user's settled cash."""
        return self._book(self._deposit(user_id, amount_cents, idempotency_key, metadata))

    def withdraw(
        self,
        user_id: UserId | int,
        amount_cents: int,
        *,
        totp_code: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> Receipt:
        """The user's settled cash not held → external bank, with a valid TOTP code.

        The code's verdict is raised after the funds check under the locks, and the code is
        not part of the request compared for idempotency: a retry carries a fresh code. A code
        is good once: one of the time step of the last accepted code, or an earlier one, is
        refused ("this code was already used"), checked under the user's TOTP row lock.
        """
        booking = self._withdraw(user_id, amount_cents, totp_code, idempotency_key, metadata)
        return self._book(booking)

    def place_hold(
        self,
        user_id: UserId | int,
        *,
        asset: str,
        amount: int,
        idempotency_key: str,
        order_id: str | None = None,
    ) -> Receipt:
        """Reserve ``amount`` for an open order: cents of USD for a buy, shares for a sell.

        Refused with :class:`InsufficientFundsError` ("insufficient buying power", or
        "insufficient position" for a sell) beyond settled + unsettled - existing holds.
        """
        return self._book(self._place_hold(user_id, asset, amount, idempotency_key, order_id))

    def release_hold(
        self,
        user_id: UserId | int,
        hold_id: uuid.UUID,
        *,
        idempotency_key: str,
    ) -> Receipt:
        """Give back what remains of a hold (the order was cancelled or is done)."""
        return self._book(self._release_hold(user_id, hold_id, idempotency_key))

    def book_fill(
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
        """An execution: cash ↔ shares into the unsettled accounts, settling T+1 business day.

        The order's hold (if any) is consumed first; what it does not cover must fit in
        buying power. ``executed_at`` must be timezone-aware; its New York date is the trade
        date (a weekend or holiday fill trades on the next business day).
        """
        return self._book(
            self._book_fill(
                user_id, symbol, side, quantity, price_cents, fee_cents, executed_at,
                idempotency_key, hold_id,
            )
        )  # fmt: skip

    def settle_due(self, as_of: date | None = None) -> SettleReport:
        """Move every fill due on or before ``as_of`` (default: today in New York) from
        unsettled to settled. Idempotent, and safe to run twice or concurrently: each fill is
        settled under its user's chain lock, after checking it was not settled already, and
        ``ledger_settlements``' primary key backs that check up.
        """
        as_of = as_of or self._clock().astimezone(EXCHANGE_TZ).date()
        settled = transactions = already = 0
        with self._connection() as conn:
            with conn.transaction():
                due = conn.execute(
                    "SELECT t.id, t.user_id, t.settlement_date FROM ledger_transactions t"
                    " WHERE t.kind = 'fill' AND t.settlement_date <= %s AND NOT EXISTS"
                    " (SELECT 1 FROM ledger_settlements s WHERE s.fill_id = t.id)"
                    " ORDER BY t.settlement_date, t.user_id, t.chain_seq",
                    (as_of,),
                ).fetchall()
            for fill_id, user_id, settles in due:
                try:
                    with conn.transaction():
                        moved = self._settle_one(conn, fill_id, user_id, settles)
                except pg_errors.UniqueViolation:
                    moved = None  # a concurrent job settled it between our check and insert
                if moved is None:
                    already += 1
                else:
                    settled += 1
                    transactions += moved
        logger.info("settled %d fills due by %s (%d already settled)", settled, as_of, already)
        return SettleReport(settled, transactions, already)

    # -- reads ----------------------------------------------------------------------------

    def balances(self, user_id: UserId | int) -> Balances:
        """Cached balances of every asset the user has accounts in (not locked)."""
        with self._connection() as conn, conn.transaction():
            rows = conn.execute(BALANCES_SQL, (int(user_id),)).fetchall()
        return balances_from_rows(int(user_id), rows)

    def buying_power(self, user_id: UserId | int) -> int:
        """Cents: settled cash + unsettled cash - holds."""
        return self.balances(user_id).cash.buying_power

    def withdrawable(self, user_id: UserId | int) -> int:
        """Cents: settled cash - holds on settled cash."""
        return self.balances(user_id).cash.withdrawable

    def activities(
        self, user_id: UserId | int, *, limit: int = 50, before: int | None = None
    ) -> ActivityPage:
        """The user's transactions, newest first, ``limit`` per page."""
        params = activities_params(user_id, limit, before)
        with self._connection() as conn, conn.transaction():
            rows = conn.execute(ACTIVITIES_SQL, params).fetchall()
        return activities_from_rows(rows, limit)

    def enroll_totp(self, user_id: UserId | int, *, issuer: str = "tickerplant") -> TotpEnrollment:
        """Create (or replace) the user's TOTP secret; show the URI once as a QR code.

        The secret is stored as is: PostgreSQL access already implies access to the money.
        """
        secret = pyotp.random_base32()
        with self._connection() as conn, conn.transaction():
            try:
                conn.execute(ENROLL_TOTP_SQL, (int(user_id), secret))
            except pg_errors.ForeignKeyViolation as exc:
                raise UnknownAccountError(int(user_id)) from exc
        return totp_enrollment(user_id, secret, issuer)

    # -- machinery ------------------------------------------------------------------------

    def _book(self, booking: Booking) -> Receipt:
        if self._conn is not None:
            return self._book_on(self._conn, self._statements, booking)
        assert self._pool is not None
        with self._pool.connection() as conn:
            return self._book_on(conn, None, booking)

    def _book_on(
        self, conn: psycopg.Connection, statements: dict[str, bytes] | None, booking: Booking
    ) -> Receipt:
        known = self._known.get(booking.user)
        if known is None or not known.issuperset(booking.assets):
            try:
                self._ensure(conn, booking.user, booking.assets)
            except pg_errors.ForeignKeyViolation as exc:
                raise UnknownAccountError(booking.user) from exc
        params = booking.params
        if booking.needs_totp:
            with conn.transaction():
                row = conn.execute(TOTP_SECRET_SQL, (booking.user,)).fetchone()
            verdict = self._totp_verdict(row[0] if row else None, booking.totp_code)
            params = booking.call_params(verdict)
        return receipt_from_jsonb(journal.call(conn, booking.query, params, statements))

    def _ensure(self, conn: psycopg.Connection, user_id: int, assets: Sequence[Asset]) -> None:
        missing = self._missing(user_id, assets)
        if missing:
            journal.ensure_accounts(conn, user_id, missing)
            self._ensured(user_id, missing)

    def _settle_one(
        self, conn: psycopg.Connection, fill_id: uuid.UUID, user_id: int, settles: date
    ) -> int | None:
        """Settle one fill in the caller's transaction: 1 if a transaction was booked, 0 if
        nothing remained unsettled, ``None`` if it was settled already."""
        journal.lock_chain(conn, user_id)
        # Under the chain lock: a concurrent job settling this fill has committed or not begun.
        if conn.execute(
            "SELECT 1 FROM ledger_settlements WHERE fill_id = %s", (fill_id,)
        ).fetchone():
            return None
        credited = [
            rules.Posting(Asset(asset), AccountKind(kind), amount)
            for asset, kind, amount in conn.execute(
                "SELECT a.asset, a.kind, e.amount FROM ledger_entries e"
                " JOIN ledger_accounts a ON a.id = e.account_id WHERE e.transaction_id = %s"
                " AND a.kind IN ('cash_unsettled', 'position_unsettled') AND e.amount > 0"
                " ORDER BY e.id",
                (fill_id,),
            ).fetchall()
        ]
        assets = sorted({p.asset for p in credited})
        settlement_id = None
        if assets:
            self._ensure(conn, user_id, assets)
            locked = journal.lock_accounts(conn, user_id, assets)
            unsettled = {a: locked.of(a).unsettled for a in assets}
            postings = rules.settlement(credited, unsettled)
            if postings:
                settlement_id = journal.append(
                    conn,
                    user_id,
                    kind=TransactionKind.SETTLEMENT.value,
                    postings=postings,
                    account_ids=locked.ids,
                    effective_at=self._clock(),
                    settlement_date=settles,
                    metadata={"fill_id": str(fill_id)},
                )
        conn.execute(
            "INSERT INTO ledger_settlements (fill_id, settlement_id) VALUES (%s, %s)",
            (fill_id, settlement_id),
        )
        return 1 if settlement_id else 0
