"""The PostgreSQL adapter of the ledger: one server-side function call per operation.

Each operation (deposit, withdraw, place/release a hold, book a fill) is a PL/pgSQL function of
migration ``0003_ledger_functions.sql`` that claims the idempotency key, takes the locks, checks
the funds, writes the entries and advances the user's hash chain. The client sends one
statement: on a connection in autocommit mode and outside a transaction that statement is its
own transaction (one round trip); otherwise it runs in a (sub)transaction of the caller's.

Lock order — every ledger transaction takes its locks in this order, so two of them can only
ever wait for each other in one direction and never deadlock:

1. the idempotency row ``(user_id, key)``, for deposits, withdrawals and releases (a concurrent
   request with the same key waits here, then sees the first one's committed result); holds
   and fills keep their key on the journal transaction and check it under lock 2 instead;
2. the user's chain head (``ledger_chains``), which also orders the user's hash chain;
3. the user's balance rows of the assets involved (``ledger_balances``, one row per asset),
   ``SELECT … FOR UPDATE`` in asset order;
4. a hold row, when the operation consumes one;
5. the user's TOTP row, for a withdrawal (the last accepted time step: a code is good once).

Broker accounts are never locked: their balances are not cached (see the migration), and each
entry row is new. Every operation touches one user only, so users never wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, LiteralString

import psycopg
from psycopg import pq
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from ledger.audit import GENESIS
from ledger.errors import (
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidTotpError,
    JournalIntegrityError,
    LedgerError,
    UnknownAccountError,
    UnknownHoldError,
)
from ledger.money import Asset
from ledger.rules import AccountKind, AssetBalances, Posting, broker_kinds, user_kinds

AccountKey = tuple[Asset, AccountKind]

# The operations' functions; each returns the receipt as jsonb (the original one on a replay).
DEPOSIT: LiteralString = "SELECT ledger_deposit(%s, %s, %s, %s, %s, %s)"
WITHDRAW: LiteralString = "SELECT ledger_withdraw(%s, %s, %s, %s, %s, %s, %s, %s)"
PLACE_HOLD: LiteralString = "SELECT ledger_place_hold(%s, %s, %s, %s, %s, %s, %s)"
RELEASE_HOLD: LiteralString = "SELECT ledger_release_hold(%s, %s, %s, %s, %s)"
BOOK_FILL: LiteralString = "SELECT ledger_book_fill(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"

# SQLSTATEs raised by the functions, with a JSON DETAIL of the error class's fields.
_ERRORS: dict[str, type[LedgerError]] = {
    "TPL10": InsufficientFundsError,
    "TPL11": IdempotencyConflictError,
    "TPL12": UnknownHoldError,
    "TPL13": InvalidTotpError,
    "TPL14": InvalidAmountError,
    "TPL15": UnknownAccountError,
}


# A request's hash is stored with its idempotency key and compared on a replay, so its bytes
# never change: SHA-256 of the request as JSON with sorted keys, no spaces, ASCII only (what
# json.dumps(..., sort_keys=True, separators=(",", ":")) writes).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_sha256 = hashlib.sha256
# The string encoder json.dumps uses: a JSON string literal, quotes included, ASCII only.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def request_hash(operation: str, request: dict[str, Any]) -> bytes:
    return _sha256(_CANONICAL_JSON.encode({"op": operation, **request}).encode()).digest()


# The order path's two operations build the same JSON without the encoder: their keys,
# in sorted order, are fixed, and each value is written as json.dumps writes it (an int with
# %d, a string by json's own string encoder, None as null). ``tests/unit/ledger`` compares
# them with request_hash over generated requests.
_PLACE_HOLD_JSON = '{"amount":%d,"asset":%s,"op":"place_hold","order_id":%s}'
_BOOK_FILL_JSON = (
    '{"executed_at":%s,"fee_cents":%d,"hold_id":%s,"op":"book_fill","price_cents":%d,'
    '"quantity":%d,"side":%s,"symbol":%s}'
)


def place_hold_hash(asset: str, amount: int, order_id: str | None) -> bytes:
    """``request_hash("place_hold", {"asset": asset, "amount": amount, "order_id": order_id})``
    for a validated asset and amount."""
    if order_id is None:
        order = "null"
    elif type(order_id) is str:
        order = _json_string(order_id)
    else:  # not an API type, but hashed as it always was
        request = {"asset": asset, "amount": amount, "order_id": order_id}
        return request_hash("place_hold", request)
    body = _PLACE_HOLD_JSON % (amount, _json_string(asset), order)
    return _sha256(body.encode()).digest()


def book_fill_hash(
    symbol: str,
    side: str,
    quantity: int,
    price_cents: int,
    fee_cents: int,
    executed_at: str,
    hold_id: str | None,
) -> bytes:
    """``request_hash("book_fill", {...})`` of a validated fill: ``executed_at`` in ISO 8601
    (UTC), ``hold_id`` as text or ``None``."""
    hold = "null" if hold_id is None else _json_string(hold_id)
    body = _BOOK_FILL_JSON % (
        _json_string(executed_at), fee_cents, hold, price_cents, quantity,
        _json_string(side), _json_string(symbol),
    )  # fmt: skip
    return _sha256(body.encode()).digest()


def translate(exc: psycopg.Error) -> LedgerError | None:
    """The ledger error a function's ``RAISE … USING ERRCODE = 'TPL1x'`` stands for, if any."""
    error_class = _ERRORS.get(exc.sqlstate or "")
    if error_class is None:
        return None
    fields = json.loads(exc.diag.message_detail or "{}")
    if error_class is UnknownHoldError:
        fields["hold_id"] = uuid.UUID(fields["hold_id"])
    return error_class(**fields)


def call(
    conn: psycopg.Connection,
    query: LiteralString,
    params: Sequence[Any],
    statements: dict[str, bytes] | None = None,
) -> bytes:
    """Run one operation's function, as one transaction, and return its jsonb result as text.

    In autocommit mode outside a transaction the statement is its own transaction, with the
    deferred checks at its end: one round trip, sent by :func:`_call_prepared`. Otherwise a
    transaction (or a savepoint in the caller's) wraps it, through psycopg's cursor.
    ``statements`` is :func:`prepared_statements` of ``conn``, for a caller that keeps it.
    """
    pgconn = conn.pgconn
    try:
        if (
            conn.autocommit
            and pgconn.transaction_status == _IDLE
            and pgconn.pipeline_status == _PIPELINE_OFF
        ):
            if statements is None:
                statements = prepared_statements(conn)
            return _call_prepared(conn, query, params, statements)
        with conn.transaction(), conn.cursor() as cursor:
            cursor.adapters.register_loader("jsonb", _JsonbText)
            row = cursor.execute(query, params, prepare=True).fetchone()
    except psycopg.Error as exc:
        raise ledger_error(exc, params) from exc
    assert row is not None
    return row[0]


async def call_async(
    conn: psycopg.AsyncConnection,
    query: LiteralString,
    params: Sequence[Any],
    statements: dict[str, bytes] | None = None,
) -> bytes:
    """:func:`call` on an asyncio connection: the same statement, transaction and errors.

    In autocommit mode outside a transaction the statement is its own transaction: one round
    trip, sent by :func:`_call_prepared_async` (libpq's asynchronous calls, waiting for the
    socket on the running event loop). Otherwise a transaction or savepoint wraps it, through
    psycopg's async cursor.
    """
    pgconn = conn.pgconn
    try:
        if (
            conn.autocommit
            and pgconn.transaction_status == _IDLE
            and pgconn.pipeline_status == _PIPELINE_OFF
        ):
            if statements is None:
                statements = prepared_statements(conn)
            return await _call_prepared_async(conn, query, params, statements)
        async with conn.transaction(), conn.cursor() as cursor:
            cursor.adapters.register_loader("jsonb", _JsonbText)
            await cursor.execute(query, params, prepare=True)
            row = await cursor.fetchone()
    except psycopg.Error as exc:
        raise ledger_error(exc, params) from exc
    assert row is not None
    return row[0]


class _JsonbText(Loader):
    """jsonb loaded as its text, as the one-round-trip path returns it."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def ledger_error(exc: psycopg.Error, params: Sequence[Any]) -> Exception:
    """The exception to raise for a failed operation call (``params[0]`` is the user id):
    the ledger error it stands for, or ``exc`` itself."""
    translated = translate(exc)
    if translated is not None:
        return translated
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return UnknownAccountError(int(params[0]))
    if isinstance(exc, psycopg.errors.CheckViolation) or (exc.sqlstate or "").startswith("TPL"):
        return JournalIntegrityError(exc.sqlstate, str(exc).strip())
    return exc


# The order path's hot loop is a few of these calls per order, so the autocommit case skips
# psycopg's cursor machinery (about as much client CPU as the rest of an operation): the
# function call is prepared once per connection under its own name and run with libpq's
# PQexecPrepared, parameters sent as text. Each function returns jsonb, returned as its text.
# A connection that lost the statement (DISCARD ALL, DEALLOCATE) prepares it again.
_IDLE = TransactionStatus.IDLE
_PIPELINE_OFF = pq.PipelineStatus.OFF
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_STATEMENT_LOST = b"26000"  # invalid_sql_statement_name: not prepared on this connection
_PREPARED: weakref.WeakKeyDictionary[psycopg.BaseConnection[Any], dict[str, bytes]] = (
    weakref.WeakKeyDictionary()
)


def prepared_statements(conn: psycopg.BaseConnection[Any]) -> dict[str, bytes]:
    """The operations' calls prepared on ``conn`` (query -> statement name), shared by every
    ledger over it: a ledger over one connection keeps this and passes it to :func:`call`."""
    return _PREPARED.setdefault(conn, {})  # one dict per connection, even across threads


def _call_prepared(
    conn: psycopg.Connection, query: str, params: Sequence[Any], statements: dict[str, bytes]
) -> bytes:
    values = [_TEXT_FORMS[type(p)](p) for p in params]
    with conn.lock:
        pgconn = conn.pgconn
        name = statements.get(query)
        if name is None:
            name = statements[query] = _prepare(conn, query)
        result = pgconn.exec_prepared(name, values)
        if result.status == _TUPLES_OK:
            return result.get_value(0, 0)  # type: ignore[return-value]  # a receipt, never NULL
        if result.error_field(_SQLSTATE) == _STATEMENT_LOST:
            del statements[query]
            name = statements[query] = _prepare(conn, query)
            result = pgconn.exec_prepared(name, values)
        return _value_or_raise(result, conn)


def _prepare(conn: psycopg.Connection, query: str) -> bytes:
    name = _statement_name(query)
    _check_prepared(conn.pgconn.prepare(name, _numbered(query).encode()), conn)
    return name


# The same for asyncio: the statement is sent with libpq's asynchronous calls and the result
# awaited on the socket, without psycopg's generators and cursor (measured: the single-process
# asyncio client did about a quarter fewer operations per second through them).
async def _call_prepared_async(
    conn: psycopg.AsyncConnection,
    query: str,
    params: Sequence[Any],
    statements: dict[str, bytes],
) -> bytes:
    values = [_TEXT_FORMS[type(p)](p) for p in params]
    async with conn.lock:
        pgconn = conn.pgconn
        try:
            name = statements.get(query)
            if name is None:
                name = statements[query] = await _prepare_async(conn, query)
            pgconn.send_query_prepared(name, values)
            result = await _result(pgconn)
            if result.status != _TUPLES_OK and result.error_field(_SQLSTATE) == _STATEMENT_LOST:
                del statements[query]
                name = statements[query] = await _prepare_async(conn, query)
                pgconn.send_query_prepared(name, values)
                result = await _result(pgconn)
        except asyncio.CancelledError:
            # Cancelled mid-command: ask the server to cancel the statement (a blocking
            # request, one short loopback connection), then close this connection rather than
            # leave it owing a result to the next caller (a pool discards a closed one). A
            # statement that finished first has committed: a retry with the same idempotency
            # key then returns its receipt.
            with contextlib.suppress(psycopg.Error):
                pgconn.get_cancel().cancel()
            pgconn.finish()
            raise
        return _value_or_raise(result, conn)


async def _prepare_async(conn: psycopg.AsyncConnection, query: str) -> bytes:
    name = _statement_name(query)
    conn.pgconn.send_prepare(name, _numbered(query).encode())
    _check_prepared(await _result(conn.pgconn), conn)
    return name


async def _result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    """The last result of the command just sent on ``pgconn``, waiting for its socket on the
    running event loop (one statement: its result, then the end of results)."""
    loop = asyncio.get_running_loop()
    while pgconn.flush():  # 1: part of the command still waits to be sent
        await _ready(loop, pgconn.socket, writable=True)
    results: list[pq.abc.PGresult] = []
    while True:
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                return results[-1]
            results.append(result)
        await _ready(loop, pgconn.socket, writable=False)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, writable: bool) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


_SQLSTATE = pq.DiagnosticField.SQLSTATE


def _statement_name(query: str) -> bytes:
    return b"tp_ledger_" + hashlib.sha256(query.encode()).hexdigest()[:16].encode()


def _check_prepared(result: pq.abc.PGresult, conn: psycopg.BaseConnection[Any]) -> None:
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(result, conn.info.encoding)


def _value(result: pq.abc.PGresult) -> bytes:
    """The function's result (jsonb text) from its successful result."""
    value = result.get_value(0, 0)
    assert value is not None, "the operations' functions return a receipt"
    return value


def _value_or_raise(result: pq.abc.PGresult, conn: psycopg.BaseConnection[Any]) -> bytes:
    """The function's result (jsonb text), or the error it raised."""
    if result.status == _TUPLES_OK:
        return _value(result)
    raise psycopg.errors.error_from_result(result, conn.info.encoding)


def _numbered(query: str) -> str:
    """``%s`` placeholders as ``$1, $2, …`` (the ledger's queries have no other ``%``)."""
    parts = query.split("%s")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


# A parameter in PostgreSQL's text input format (the function's signature types it), by the
# exact type of the value: one lookup per parameter on the hot path. Subclasses (an IntEnum,
# a datetime subclass) are resolved by ``__missing__``; a float or a bool is refused.
def _null(value: None) -> None:
    return None


def _bytea(value: bytes) -> bytes:
    return b"\\x" + value.hex().encode()


def _iso(value: date) -> bytes:  # a date or a datetime (with its offset)
    return value.isoformat().encode()


def _str(value: object) -> bytes:
    return str(value).encode()


def _jsonb(value: Jsonb) -> bytes:
    return json.dumps(value.obj).encode()


class _TextForms(dict[type, Callable[[Any], bytes | None]]):
    def __missing__(self, kind: type) -> Callable[[Any], bytes | None]:
        if issubclass(kind, date):
            return _iso
        if issubclass(kind, bool) or not issubclass(kind, int | str | uuid.UUID):
            raise TypeError(f"no text form for a ledger function parameter of {kind}")
        return _str


_TEXT_FORMS = _TextForms(
    {
        str: str.encode,
        int: b"%d".__mod__,
        type(None): _null,
        bytes: _bytea,
        datetime: _iso,
        # A day's fills share their trade and settlement dates: their text is remembered.
        date: functools.lru_cache(maxsize=64)(_iso),
        uuid.UUID: _str,
        Jsonb: _jsonb,
    }
)


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text input format (what :func:`_call_prepared` sends)."""
    return _TEXT_FORMS[type(value)](value)


_ACCOUNT_INSERT: LiteralString = (
    "INSERT INTO ledger_accounts (user_id, asset, kind) VALUES (%s, %s, %s)"
    " ON CONFLICT ON CONSTRAINT ledger_accounts_one_per_kind DO NOTHING"
)
_CHAIN_INSERT: LiteralString = (
    "INSERT INTO ledger_chains (user_id, seq, head) VALUES (%s, 0, %s)"
    " ON CONFLICT (user_id) DO NOTHING"
)


def _account_rows(user_id: int, assets: Sequence[Asset]) -> list[tuple[Any, ...]]:
    user_rows = [(user_id, a, k.value) for a in assets for k in user_kinds(a)]
    broker_rows = [(None, a, k.value) for a in assets for k in broker_kinds(a)]
    return user_rows + broker_rows


def ensure_accounts(conn: psycopg.Connection, user_id: int, assets: Sequence[Asset]) -> None:
    """Create the user's and the broker's accounts of ``assets`` and the user's chain, if new.

    Runs in its own (sub)transaction: creating rows takes no lock on existing balances.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_ACCOUNT_INSERT, _account_rows(user_id, assets))
        cur.execute(_CHAIN_INSERT, (user_id, GENESIS))


async def ensure_accounts_async(
    conn: psycopg.AsyncConnection, user_id: int, assets: Sequence[Asset]
) -> None:
    """:func:`ensure_accounts` on an asyncio connection."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_ACCOUNT_INSERT, _account_rows(user_id, assets))
        await cur.execute(_CHAIN_INSERT, (user_id, GENESIS))


def lock_chain(conn: psycopg.Connection, user_id: int) -> None:
    row = conn.execute(
        "SELECT 1 FROM ledger_chains WHERE user_id = %s FOR UPDATE", (user_id,)
    ).fetchone()
    assert row is not None, "ensure_accounts creates the chain"


@dataclass(slots=True)
class LockedAccounts:
    """The user's locked balance rows of some assets, and account ids for postings."""

    ids: dict[AccountKey, int]
    balances: dict[AccountKey, int]

    def of(self, asset: Asset) -> AssetBalances:
        settled, unsettled, held = (self.balances[(asset, kind)] for kind in user_kinds(asset))
        return AssetBalances(settled, unsettled, held)


def lock_accounts(
    conn: psycopg.Connection, user_id: int, assets: Sequence[Asset]
) -> LockedAccounts:
    """``SELECT … FOR UPDATE`` on the user's balance rows of ``assets`` (one per asset, in
    asset order), with the ids of the accounts they hold the balances of."""
    rows = conn.execute(
        "SELECT a.id, a.asset, a.kind, CASE"
        " WHEN a.kind IN ('cash_settled', 'position_settled') THEN b.settled"
        " WHEN a.kind IN ('cash_unsettled', 'position_unsettled') THEN b.unsettled"
        " ELSE b.held END"
        " FROM (SELECT * FROM ledger_balances WHERE user_id = %s AND asset = ANY(%s)"
        '       ORDER BY asset COLLATE "C" FOR UPDATE) b'
        " JOIN ledger_accounts a ON a.user_id = b.user_id AND a.asset = b.asset",
        (user_id, list(assets)),
    ).fetchall()
    ids = {(Asset(a), AccountKind(k)): i for i, a, k, _ in rows}
    balances = {(Asset(a), AccountKind(k)): b for _, a, k, b in rows}
    return LockedAccounts(ids, balances)


def append(
    conn: psycopg.Connection,
    user_id: int,
    *,
    kind: str,
    postings: Sequence[Posting],
    account_ids: dict[AccountKey, int],
    effective_at: datetime,
    idempotency_key: str | None = None,
    settlement_date: date | None = None,
    metadata: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Insert one balanced transaction with its entries and advance the user's chain, hashed
    server-side (``ledger_append``). The caller holds the chain and balance locks."""
    transaction_id = uuid.uuid4()
    conn.execute(
        "SELECT ledger_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            transaction_id,
            user_id,
            kind,
            idempotency_key,
            effective_at,
            settlement_date,
            Jsonb(metadata or {}),
            [account_ids[(p.asset, p.kind)] for p in postings],
            [str(p.asset) for p in postings],
            [p.amount for p in postings],
        ),
        prepare=True,
    )
    return transaction_id
