"""The PostgreSQL adapter of the ledger: accounts, locks, idempotency keys, the hash chain.

Lock order — every ledger transaction takes its locks in this order, so two of them can only
ever wait for each other in one direction and never deadlock:

1. the idempotency row ``(user_id, key)`` (a concurrent request with the same key waits here,
   then sees the first one's committed result);
2. the user's chain head (``ledger_chains``), which also orders the user's hash chain;
3. the user's balance rows of the assets involved, ``SELECT … FOR UPDATE ORDER BY id``;
4. a hold row, when the operation consumes one.

Broker accounts are never locked: their balances are not cached (see the migration), and each
entry row is new. Every operation touches one user only, so users never wait for each other.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ledger.audit import GENESIS, canonical_content, chain_hash
from ledger.errors import IdempotencyConflictError
from ledger.money import Asset
from ledger.rules import AccountKind, AssetBalances, Posting, broker_kinds, user_kinds

AccountKey = tuple[Asset, AccountKind]


def request_hash(operation: str, request: dict[str, Any]) -> bytes:
    body = json.dumps({"op": operation, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).digest()


def ensure_accounts(conn: psycopg.Connection, user_id: int, assets: Sequence[Asset]) -> None:
    """Create the user's and the broker's accounts of ``assets`` and the user's chain, if new.

    Runs in its own (sub)transaction: creating rows takes no lock on existing balances.
    """
    user_rows = [(user_id, a, k.value, 0) for a in assets for k in user_kinds(a)]
    broker_rows = [(None, a, k.value, None) for a in assets for k in broker_kinds(a)]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ledger_accounts (user_id, asset, kind, balance) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT ON CONSTRAINT ledger_accounts_one_per_kind DO NOTHING",
            user_rows + broker_rows,
        )
        cur.execute(
            "INSERT INTO ledger_chains (user_id, seq, head) VALUES (%s, 0, %s)"
            " ON CONFLICT (user_id) DO NOTHING",
            (user_id, GENESIS),
        )


def broker_account_ids(conn: psycopg.Connection, assets: Sequence[Asset]) -> dict[AccountKey, int]:
    rows = conn.execute(
        "SELECT asset, kind, id FROM ledger_accounts WHERE user_id IS NULL AND asset = ANY(%s)",
        (list(assets),),
    ).fetchall()
    return {(Asset(a), AccountKind(k)): i for a, k, i in rows}


def claim_key(
    conn: psycopg.Connection,
    user_id: int,
    key: str,
    operation: str,
    digest: bytes,
) -> dict[str, Any] | None:
    """Claim ``key`` for this request; ``None`` when new, else the original request's result.

    A concurrent request with the same key blocks on the unique index until the first commits
    (then it reads that result) or rolls back (then it claims the key itself).
    """
    claimed = conn.execute(
        "INSERT INTO ledger_idempotency (user_id, key, operation, request_hash)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (user_id, key, operation, digest),
    ).fetchone()
    if claimed is not None:
        return None
    row = conn.execute(
        "SELECT operation, request_hash, result FROM ledger_idempotency"
        " WHERE user_id = %s AND key = %s",
        (user_id, key),
    ).fetchone()
    assert row is not None  # committed rows are never deleted
    original_operation, original_digest, result = row
    if original_operation != operation or bytes(original_digest) != digest:
        raise IdempotencyConflictError(key, operation, original_operation)
    return result


def record_result(conn: psycopg.Connection, user_id: int, key: str, result: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE ledger_idempotency SET result = %s WHERE user_id = %s AND key = %s",
        (Jsonb(result), user_id, key),
    )


@dataclass(slots=True)
class Chain:
    user_id: int
    seq: int
    head: bytes


def lock_chain(conn: psycopg.Connection, user_id: int) -> Chain:
    row = conn.execute(
        "SELECT seq, head FROM ledger_chains WHERE user_id = %s FOR UPDATE", (user_id,)
    ).fetchone()
    assert row is not None, "ensure_accounts creates the chain"
    return Chain(user_id, row[0], bytes(row[1]))


@dataclass(slots=True)
class LockedAccounts:
    """The user's locked balance rows of some assets, and account ids for postings."""

    ids: dict[AccountKey, int]
    balances: dict[AccountKey, int]

    def of(self, asset: Asset) -> AssetBalances:
        settled, unsettled, held = (self.balances[(asset, kind)] for kind in user_kinds(asset))
        return AssetBalances(settled, unsettled, held)

    def id_of(self, asset: Asset) -> int:
        """The settled account of ``asset``: the id errors name for this user and asset."""
        return self.ids[(asset, user_kinds(asset)[0])]


def lock_accounts(
    conn: psycopg.Connection, user_id: int, assets: Sequence[Asset]
) -> LockedAccounts:
    """``SELECT … FOR UPDATE`` on the user's balance rows of ``assets``, in account-id order."""
    rows = conn.execute(
        "SELECT id, asset, kind, balance FROM ledger_accounts"
        " WHERE user_id = %s AND asset = ANY(%s) ORDER BY id FOR UPDATE",
        (user_id, list(assets)),
    ).fetchall()
    ids = {(Asset(a), AccountKind(k)): i for i, a, k, _ in rows}
    balances = {(Asset(a), AccountKind(k)): b for _, a, k, b in rows}
    return LockedAccounts(ids, balances)


def append(
    conn: psycopg.Connection,
    chain: Chain,
    *,
    kind: str,
    postings: Sequence[Posting],
    user_ids: dict[AccountKey, int],
    broker_ids: dict[AccountKey, int],
    effective_at: datetime,
    idempotency_key: str | None = None,
    settlement_date: date | None = None,
    metadata: dict[str, Any] | None = None,
    transaction_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Insert one balanced transaction with its entries and advance the user's chain.

    The caller holds the chain and balance locks. The entry trigger moves cached balances; the
    CHECK on them and the deferred zero-sum trigger are the database's own guarantees.
    """
    transaction_id = transaction_id or uuid.uuid4()
    metadata = metadata or {}
    entries = [
        (
            (user_ids if p.kind.is_user else broker_ids)[(p.asset, p.kind)],
            str(p.asset),
            p.amount,
        )
        for p in postings
    ]
    seq = chain.seq + 1
    content = canonical_content(
        transaction_id=transaction_id,
        user_id=chain.user_id,
        chain_seq=seq,
        kind=kind,
        idempotency_key=idempotency_key,
        effective_at=effective_at,
        settlement_date=settlement_date,
        metadata=metadata,
        entries=entries,
    )
    digest = chain_hash(chain.head, content)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, idempotency_key,"
            " effective_at, settlement_date, metadata, prev_hash, hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                transaction_id,
                chain.user_id,
                seq,
                kind,
                idempotency_key,
                effective_at,
                settlement_date,
                Jsonb(metadata),
                chain.head,
                digest,
            ),
        )
        cur.executemany(
            "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)"
            " VALUES (%s, %s, %s, %s)",
            [(transaction_id, *entry) for entry in entries],
        )
        cur.execute(
            "UPDATE ledger_chains SET seq = %s, head = %s WHERE user_id = %s",
            (seq, digest, chain.user_id),
        )
    chain.seq, chain.head = seq, digest
    return transaction_id
