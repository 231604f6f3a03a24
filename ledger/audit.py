"""The audit trail: each user's transactions form a hash chain; ``verify`` walks it.

A transaction's hash is SHA-256 over the previous transaction's hash and the canonical bytes of
its content: id, user, sequence number, kind, idempotency key, effective time (UTC), settlement
date, metadata and its entries. The database computes it when it books the transaction, and the
row names the form it used; :func:`canonical_content` rebuilds each form byte for byte here, so
the check does not trust the server's functions:

- form 3 (holds and fills, since migration 0010): fixed-width binary fields, JSON strings and
  the metadata's jsonb text, the entries in id order (the layout is in that migration's
  header);
- form 2 (every other transaction since 0003, holds and fills before 0010): PostgreSQL's jsonb
  text of a document, entries sorted by account, rebuilt by :func:`jsonb_text`;
- form 1 (before 0003): Python's compact ``json.dumps`` of the same document.

There is one chain per user, whose head (``ledger_chains``) records the last sequence number
and hash; a chain per user rather than one global chain keeps unrelated users from serialising
on one row, and every transaction belongs to exactly one user. Changing any stored field,
deleting a transaction or adding one out of band breaks the chain at that transaction, and
:func:`verify` names the first such one per chain.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg

GENESIS = bytes(32)


def jsonb_text(value: Any) -> str:
    """PostgreSQL's text output of ``value`` as jsonb: object keys ordered by their UTF-8
    length and then bytes, ``", "`` and ``": "`` between items, strings escaped as
    ``json.dumps(ensure_ascii=False)`` escapes them (``"``, ``\\``, control characters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{jsonb_text(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    # int; anything else (a float in a row changed out of band) never matches a stored hash.
    return json.dumps(value)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's, for its binary dates and times
_MICROSECOND = timedelta(microseconds=1)


def canonical_content(
    *,
    transaction_id: UUID,
    user_id: int,
    chain_seq: int,
    kind: str,
    idempotency_key: str | None,
    effective_at: datetime,
    settlement_date: date | None,
    metadata: dict[str, Any],
    entries: Iterable[tuple[int, str, int]],
    form: int = 2,
) -> bytes:
    """The bytes a transaction's hash covers; identical when rebuilt from the stored row.
    ``entries`` are (account, asset, amount) in id order."""
    if form == 3:
        # Migration 0010's layout: what uuid_send, int8send, timestamptz_send and date_send
        # write, then JSON text, then each entry.
        micros = (effective_at - _EPOCH) // _MICROSECOND
        parts = [transaction_id.bytes, struct.pack(">qqq", user_id, chain_seq, micros)]
        if settlement_date is None:
            parts.append(b"\x00")
        else:
            parts.append(b"\x01" + struct.pack(">i", (settlement_date - _EPOCH.date()).days))
        text = f"[{jsonb_text(kind)},{jsonb_text(idempotency_key)},{jsonb_text(metadata)}]"
        parts.append(text.encode())
        for account, asset, amount in entries:
            parts.append(struct.pack(">qq", int(account), int(amount)) + jsonb_text(asset).encode())
        return b"".join(parts)
    document = {
        "id": str(transaction_id),
        "user_id": user_id,
        "seq": chain_seq,
        "kind": kind,
        "idempotency_key": idempotency_key,
        "effective_at": effective_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "settlement_date": settlement_date.isoformat() if settlement_date else None,
        "metadata": metadata,
        "entries": sorted([int(a), str(s), int(m)] for a, s, m in entries),
    }
    if form == 1:
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return jsonb_text(document).encode()


def chain_hash(prev_hash: bytes, content: bytes) -> bytes:
    return hashlib.sha256(prev_hash + content).digest()


Problem = Literal["altered", "removed", "inserted"]


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first transaction of a user's chain that does not check out, and why."""

    user_id: int
    transaction_id: UUID | None
    chain_seq: int
    problem: Problem
    detail: str

    def __str__(self) -> str:
        return (
            f"user {self.user_id}: transaction {self.transaction_id} (seq {self.chain_seq}) "
            f"{self.problem}: {self.detail}"
        )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    chains: int
    transactions: int
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


# The amounts cast to bigint: ledger_entries.amount is a domain (0010), and an array of a
# domain reaches psycopg as a type it does not know.
_CHAIN_ROWS = """
SELECT t.id, t.user_id, t.chain_seq, t.kind, t.idempotency_key, t.effective_at,
       t.settlement_date, t.metadata, t.prev_hash, t.hash,
       coalesce(array_agg(e.account_id ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL), '{}'),
       coalesce(array_agg(e.asset ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL), '{}'),
       coalesce(array_agg(e.amount::bigint ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL), '{}'),
       t.hash_form
FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
WHERE t.user_id = %s
GROUP BY t.id
ORDER BY t.chain_seq
"""


def verify_chain(
    user_id: int, head_seq: int, head: bytes, rows: Sequence[tuple]
) -> ChainBreak | None:
    """The first break in one user's chain (rows ordered by sequence), or ``None``."""
    expected_seq, prev = 1, GENESIS
    last_id: UUID | None = None
    for row in rows:
        tx_id, _, seq, kind, key, effective_at, settle, metadata, prev_hash, stored = row[:10]
        content = canonical_content(
            transaction_id=tx_id,
            user_id=user_id,
            chain_seq=seq,
            kind=kind,
            idempotency_key=key,
            effective_at=effective_at,
            settlement_date=settle,
            metadata=metadata,
            entries=zip(row[10], row[11], row[12], strict=True),
            form=row[13],
        )
        if chain_hash(bytes(prev_hash), content) != bytes(stored):
            return ChainBreak(
                user_id, tx_id, seq, "altered", "its content no longer matches its hash"
            )
        if seq > expected_seq:
            return ChainBreak(
                user_id,
                tx_id,
                seq,
                "removed",
                f"transaction(s) with sequence {expected_seq}..{seq - 1} before it are missing",
            )
        if bytes(prev_hash) != prev:
            return ChainBreak(
                user_id,
                tx_id,
                seq,
                "inserted",
                "it does not chain to the transaction before it",
            )
        expected_seq, prev, last_id = seq + 1, bytes(stored), tx_id
    last_seq = expected_seq - 1
    if head_seq > last_seq:
        return ChainBreak(
            user_id,
            last_id,
            last_seq,
            "removed",
            f"transaction(s) with sequence {last_seq + 1}..{head_seq} after it are missing",
        )
    if head_seq < last_seq or head != prev:
        beyond = next((r for r in rows if r[2] > head_seq), rows[-1])
        return ChainBreak(
            user_id,
            beyond[0],
            beyond[2],
            "inserted",
            f"the chain head records sequence {head_seq}; this transaction was added out of band",
        )
    return None


def verify(conn: psycopg.Connection) -> VerifyReport:
    """Walk every user's chain; report the first altered, removed or inserted transaction."""
    breaks: list[ChainBreak] = []
    transactions = 0
    with conn.transaction():
        chains = conn.execute(
            "SELECT user_id, seq, head FROM ledger_chains ORDER BY user_id"
        ).fetchall()
        orphans = conn.execute(
            "SELECT DISTINCT user_id FROM ledger_transactions"
            " WHERE user_id NOT IN (SELECT user_id FROM ledger_chains)"
        ).fetchall()
        for user_id, head_seq, head in [*chains, *((u, 0, GENESIS) for (u,) in orphans)]:
            rows = conn.execute(_CHAIN_ROWS, (user_id,)).fetchall()
            transactions += len(rows)
            found = verify_chain(user_id, head_seq, bytes(head), rows)
            if found is not None:
                breaks.append(found)
    return VerifyReport(len(chains) + len(orphans), transactions, breaks)


@dataclass(frozen=True, slots=True)
class BalanceDifference:
    account_id: int
    user_id: int
    asset: str
    kind: str
    cached: int
    recomputed: int


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """Cached balances that differ from the sum of their entries, assets whose entries do not
    sum to zero across the ledger, and holds whose open remainders differ from the held balance.
    """

    accounts: int
    differences: list[BalanceDifference]
    unbalanced_assets: dict[str, int]
    hold_mismatches: list[tuple[int, str, int, int]]

    @property
    def ok(self) -> bool:
        return not (self.differences or self.unbalanced_assets or self.hold_mismatches)


def reconcile(conn: psycopg.Connection) -> ReconcileReport:
    """Recompute every cached balance from the entries; report, never repair."""
    with conn.transaction():
        # REPEATABLE READ is not needed: a read-only pass over one statement per check.
        rows = conn.execute(
            """
            SELECT a.id, a.user_id, a.asset, a.kind, a.balance, coalesce(sum(e.amount), 0)
            FROM ledger_account_balances a LEFT JOIN ledger_entries e ON e.account_id = a.id
            GROUP BY a.id, a.user_id, a.asset, a.kind, a.balance ORDER BY a.id
            """
        ).fetchall()
        unbalanced = conn.execute(
            "SELECT asset, sum(amount) FROM ledger_entries GROUP BY asset HAVING sum(amount) <> 0"
        ).fetchall()
        holds = conn.execute(
            """
            SELECT a.user_id, a.asset, a.balance, coalesce(h.open, 0)
            FROM ledger_account_balances a
            LEFT JOIN (SELECT user_id, asset, sum(remaining) AS open FROM ledger_holds
                       GROUP BY user_id, asset) h ON (h.user_id, h.asset) = (a.user_id, a.asset)
            WHERE a.kind IN ('cash_held', 'position_held') AND a.balance <> coalesce(h.open, 0)
            ORDER BY a.user_id, a.asset
            """
        ).fetchall()
    differences = [BalanceDifference(*row) for row in rows if row[4] != row[5]]
    return ReconcileReport(
        len(rows),
        differences,
        {asset: int(total) for asset, total in unbalanced},
        [(u, a, int(b), int(o)) for u, a, b, o in holds],
    )
