"""Migration 0010 on a real PostgreSQL: holds and fills are hashed in form 3, which Python
rebuilds byte for byte and which covers every field; the journal's single-column CHECKs became
domains under their old names, without rewriting the journal; the key lookup is never planned
on the chain-position index; the fill locks its rows in asset order; journal writes commit
durably."""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ledger import Ledger, verify
from ledger.audit import canonical_content, chain_hash
from tickerplant.db import migrate
from tickerplant.identity import Role, create_user

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

EXECUTED = datetime(2025, 6, 13, 19, 59, 59, 999999, tzinfo=UTC)  # a Friday, 15:59:59 NY


def stored(conn: psycopg.Connection, tx: uuid.UUID) -> tuple:
    return conn.execute(
        "SELECT kind, hash_form, chain_seq, prev_hash, hash FROM ledger_transactions"
        " WHERE id = %s",
        (tx,),
    ).fetchone()


def entries_in_id_order(conn: psycopg.Connection, tx: uuid.UUID) -> list[tuple[int, str, int]]:
    return conn.execute(
        "SELECT account_id, asset, amount FROM ledger_entries WHERE transaction_id = %s"
        " ORDER BY id",
        (tx,),
    ).fetchall()


def test_a_hold_is_hashed_in_form_3_as_the_migration_lays_it_out(conn, ledger: Ledger, funded):
    """The stored hash of a hold is SHA-256 over the previous hash and exactly the bytes of
    0010's header, built here field by field (not through ledger.audit), with an idempotency
    key that needs JSON escaping."""
    user, ids = funded
    key = 'h "1"\\\n€'
    receipt = ledger.place_hold(user, asset="USD", amount=2500, idempotency_key=key)
    conn.commit()
    kind, form, seq, prev, digest = stored(conn, receipt.transaction_id)
    assert (kind, form, seq) == ("hold", 3, 2)
    broker_holds = conn.execute(
        "SELECT id FROM ledger_accounts WHERE user_id IS NULL AND asset = 'USD'"
        " AND kind = 'broker_holds'"
    ).fetchone()[0]
    assert entries_in_id_order(conn, receipt.transaction_id) == [
        (ids["cash_held"], "USD", 2500),
        (broker_holds, "USD", -2500),
    ]
    effective_at = conn.execute(
        "SELECT effective_at FROM ledger_transactions WHERE id = %s", (receipt.transaction_id,)
    ).fetchone()[0]
    micros = (effective_at - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    metadata = f'{{"hold_id": "{receipt.hold_id}", "order_id": null}}'
    content = (
        receipt.transaction_id.bytes
        + struct.pack(">qqq", user, 2, micros)
        + b"\x00"
        + f'["hold","h \\"1\\"\\\\\\n€",{metadata}]'.encode()
        + struct.pack(">qq", ids["cash_held"], 2500)
        + b'"USD"'
        + struct.pack(">qq", broker_holds, -2500)
        + b'"USD"'
    )
    assert bytes(digest) == hashlib.sha256(bytes(prev) + content).digest()
    assert verify(conn).ok


def test_a_fill_is_hashed_in_form_3_with_its_settlement_date(conn, ledger: Ledger, funded):
    """A fill's form-3 bytes carry its settlement date (days since 2000-01-01) and its entries
    in id order; canonical_content rebuilds them from the stored row."""
    user, _ = funded
    hold = ledger.place_hold(user, asset="USD", amount=1100, idempotency_key="h")
    fill = ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=2, price_cents=500, fee_cents=100,
        executed_at=EXECUTED, idempotency_key="f", hold_id=hold.hold_id,
    )  # fmt: skip
    conn.commit()
    row = conn.execute(
        "SELECT effective_at, settlement_date, metadata, prev_hash, hash, hash_form"
        " FROM ledger_transactions WHERE id = %s",
        (fill.transaction_id,),
    ).fetchone()
    effective_at, settlement_date, metadata, prev, digest, form = row
    assert (effective_at, settlement_date, form) == (EXECUTED, date(2025, 6, 16), 3)
    content = canonical_content(
        transaction_id=fill.transaction_id, user_id=user, chain_seq=3, kind="fill",
        idempotency_key="f", effective_at=effective_at, settlement_date=settlement_date,
        metadata=metadata, entries=entries_in_id_order(conn, fill.transaction_id), form=3,
    )  # fmt: skip
    assert content[40:45] == b"\x01" + struct.pack(
        ">i", (date(2025, 6, 16) - date(2000, 1, 1)).days
    )
    assert chain_hash(bytes(prev), content) == bytes(digest)
    assert verify(conn).ok


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE ledger_entries SET amount = amount + 1 WHERE id = {first_entry}",
        "UPDATE ledger_entries SET account_id = account_id + 1 WHERE id = {first_entry}",
        "UPDATE ledger_entries SET asset = 'USE' WHERE id = {first_entry}",
        # the first two entries' contents swapped: the same entries, in another id order
        "UPDATE ledger_entries e SET account_id = o.account_id, asset = o.asset,"
        " amount = o.amount FROM ledger_entries o"
        " WHERE (e.id, o.id) IN (({first_entry}, {first_entry} + 1), ({first_entry} + 1,"
        " {first_entry}))",
        "UPDATE ledger_transactions SET metadata = metadata || '{{\"quantity\": 3}}'"
        " WHERE id = '{tx}'",
        "UPDATE ledger_transactions SET effective_at = effective_at + interval '1 microsecond'"
        " WHERE id = '{tx}'",
        "UPDATE ledger_transactions SET settlement_date = settlement_date + 1 WHERE id = '{tx}'",
        "UPDATE ledger_transactions SET settlement_date = NULL WHERE id = '{tx}'",
        "UPDATE ledger_transactions SET idempotency_key = 'g' WHERE id = '{tx}'",
        "UPDATE ledger_transactions SET kind = 'hold' WHERE id = '{tx}'",
    ],
)
def test_every_field_of_a_form_3_fill_is_covered_by_its_hash(
    conn, ledger: Ledger, funded, change: str
):
    """A fill's field changed behind the triggers' back (or its entries reordered) is named
    'altered' by verify, at the fill's sequence number."""
    user, _ = funded
    fill = ledger.book_fill(
        user, symbol="AAPL", side="buy", quantity=2, price_cents=500, fee_cents=100,
        executed_at=EXECUTED, idempotency_key="f",
    )  # fmt: skip
    conn.commit()
    assert verify(conn).ok
    first_entry = conn.execute(
        "SELECT min(id) FROM ledger_entries WHERE transaction_id = %s", (fill.transaction_id,)
    ).fetchone()[0]
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # disables the triggers
        conn.execute(change.format(first_entry=first_entry, tx=fill.transaction_id))
    assert [(b.transaction_id, b.chain_seq, b.problem) for b in verify(conn).breaks] == [
        (fill.transaction_id, 2, "altered")
    ]


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        (
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash) VALUES (gen_random_uuid(), %s, 0, 'deposit', now(),"
            " sha256(''), sha256(''))",
            "ledger_transactions_chain_seq_check",
        ),
        (
            "INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, effective_at,"
            " prev_hash, hash, hash_form) VALUES (gen_random_uuid(), %s, 99, 'deposit', now(),"
            " sha256(''), sha256(''), 4)",
            "ledger_transactions_hash_form_check",
        ),
        (
            "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)"
            " SELECT id, 1, 'USD', 0 FROM ledger_transactions WHERE user_id = %s",
            "ledger_entries_amount_check",
        ),
    ],
)
def test_the_journals_checks_that_became_domains_keep_their_names(
    conn, funded, statement, constraint
):
    """Each of the journal's single-column CHECKs moved to a domain still refuses its bad value
    with SQLSTATE 23514 and the constraint's old name."""
    user, _ = funded
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute(statement, (user,))
    assert caught.value.diag.constraint_name == constraint


_FILES = ("ledger_transactions", "ledger_entries")


def test_0010_keeps_the_journals_files_and_its_form_2_rows_verify(pg_dsn: str, tmp_path: Path):
    """A ledger at 0009 with holds and fills booked (form 2), brought to 0010: the journal's
    tables and indexes keep their files (no rewrite) but the chain-position index, built
    again as a partial index; the old rows keep form 2, new postings take form 3 on the same
    chains, and verify passes over the mix."""
    from tests.integration.db.test_migrate import copy_shipped_migrations

    old = copy_shipped_migrations(tmp_path / "m")
    for path in old.glob("*.sql"):
        if int(path.name[:4]) > 9:
            path.unlink()
    migrate(pg_dsn, directory=old)
    files = (
        "SELECT c.relname, c.relfilenode FROM pg_class c"
        " WHERE c.relname = ANY(%s) OR c.oid IN (SELECT indexrelid FROM pg_index"
        "   WHERE indrelid::regclass::text = ANY(%s)) ORDER BY c.relname"
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        user = int(create_user(conn, "before10", Role.TRADER)[0].id)
        ledger = Ledger.over_connection(conn)
        ledger.deposit(user, 10_000, idempotency_key="d")
        hold = ledger.place_hold(user, asset="USD", amount=1100, idempotency_key="h1")
        ledger.book_fill(
            user, symbol="AAPL", side="buy", quantity=2, price_cents=500, fee_cents=100,
            executed_at=EXECUTED, idempotency_key="f1", hold_id=hold.hold_id,
        )  # fmt: skip
        before = conn.execute(files, (list(_FILES), list(_FILES))).fetchall()
    assert len(before) == 7  # two tables, five indexes
    assert [m.version for m in migrate(pg_dsn)] == [10]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        after = conn.execute(files, (list(_FILES), list(_FILES))).fetchall()
        rebuilt = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert [(a[0], b[0]) for a, b in rebuilt] == [("ledger_transactions_chain_position",) * 2]
        ledger = Ledger.over_connection(conn)
        hold = ledger.place_hold(user, asset="USD", amount=1100, idempotency_key="h2")
        ledger.book_fill(
            user, symbol="AAPL", side="sell", quantity=1, price_cents=500, fee_cents=10,
            executed_at=EXECUTED, idempotency_key="f2",
        )  # fmt: skip
        forms = conn.execute(
            "SELECT chain_seq, kind, hash_form FROM ledger_transactions WHERE user_id = %s"
            " ORDER BY chain_seq",
            (user,),
        ).fetchall()
        assert forms == [
            (1, "deposit", 2),
            (2, "hold", 2),
            (3, "fill", 2),
            (4, "hold", 3),
            (5, "fill", 3),
        ]
        report = verify(conn)
        assert (report.ok, report.transactions) == (True, 5)


def generic_plan(conn: psycopg.Connection, query: str, types: str, args: str) -> list[str]:
    """The index names in the generic plan PostgreSQL keeps for ``query`` in a session."""
    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute("SET LOCAL enable_seqscan = off")  # as the hold and the fill run
        conn.execute(f"PREPARE q ({types}) AS {query}")
        try:
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE q ({args})").fetchone()[0]
        finally:
            conn.execute("DEALLOCATE q")
    names: list[str] = []
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        names += [node["Index Name"]] if "Index Name" in node else []
        nodes += node.get("Plans", [])
    return names


def test_the_key_lookup_is_planned_on_the_key_index_even_on_an_empty_journal(pg_dsn: str):
    """On a fresh, never-analysed journal, the generic plan of the hold's and fill's key lookup
    uses the key index, not the chain-position one (with it, every lookup filtered all of the
    user's transactions for as long as the session kept the plan); a statement's query by
    chain position still uses its index."""
    migrate(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(
            "SELECT reltuples FROM pg_class WHERE relname = 'ledger_transactions'"
        ).fetchone() == (-1,)
        assert generic_plan(
            conn,
            "SELECT FROM ledger_transactions WHERE user_id = $1 AND idempotency_key = $2",
            "bigint, text",
            "1, 'k'",
        ) == ["ledger_transactions_key"]
        assert generic_plan(
            conn,
            "SELECT id FROM ledger_transactions t WHERE t.user_id = $1 AND t.chain_seq < $2"
            " AND t.chain_seq > 0 ORDER BY t.chain_seq DESC LIMIT 10",
            "bigint, bigint",
            "1, 100",
        ) == ["ledger_transactions_chain_position"]


@pytest.mark.parametrize(("symbol", "first"), [("AAPL", "AAPL"), ("ZM", "USD")])
def test_a_fill_locks_its_balance_rows_in_asset_order(
    migrated_dsn: str, conn, ledger: Ledger, funded, symbol: str, first: str
):
    """The fill locks the chain, then its two balance rows in asset order (C collation):
    with the second row held by another transaction, the fill waits holding the first."""
    user, _ = funded
    ledger.book_fill(
        user, symbol=symbol, side="buy", quantity=1, price_cents=100, fee_cents=0,
        executed_at=EXECUTED, idempotency_key="open",
    )  # fmt: skip
    conn.commit()
    second = "USD" if first != "USD" else symbol
    lock = "SELECT FROM ledger_balances WHERE user_id = %s AND asset = %s FOR UPDATE NOWAIT"
    with (
        ThreadPoolExecutor(1) as pool,  # exits last: the holder's lock is gone by then
        psycopg.connect(migrated_dsn) as holder,
        psycopg.connect(migrated_dsn, autocommit=True) as filler,
        psycopg.connect(migrated_dsn, autocommit=True) as probe,
    ):
        holder.execute(lock, (user, second))
        try:
            waiting = pool.submit(
                Ledger.over_connection(filler).book_fill,
                user, symbol=symbol, side="buy", quantity=1, price_cents=100, fee_cents=0,
                executed_at=EXECUTED, idempotency_key="f",
            )  # fmt: skip
            wait = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
            deadline = time.monotonic() + 10
            while probe.execute(wait, (filler.info.backend_pid,)).fetchone() != ("Lock",):
                assert time.monotonic() < deadline, "the fill never waited for a lock"
                time.sleep(0.01)
            with pytest.raises(psycopg.errors.LockNotAvailable), probe.transaction():
                probe.execute(lock, (user, first))
        finally:
            holder.rollback()  # whatever happened, the fill can finish
        assert waiting.result(timeout=10).kind == "fill"


@pytest.mark.parametrize("operation", ["deposit", "place_hold", "book_fill", "release_hold"])
def test_a_journal_write_makes_its_transaction_commit_durably(
    conn, ledger: Ledger, funded, operation: str
):
    """Whatever the session's synchronous_commit, a database transaction that wrote to the
    journal (through ledger_post or ledger_append) commits with synchronous_commit on; the
    session's own setting is back after it."""
    user, _ = funded
    hold = ledger.place_hold(user, asset="USD", amount=100, idempotency_key="open")
    conn.execute("SET synchronous_commit = off")
    conn.commit()
    calls = {
        "deposit": lambda: ledger.deposit(user, 100, idempotency_key="d"),
        "place_hold": lambda: ledger.place_hold(user, asset="USD", amount=1, idempotency_key="h"),
        "book_fill": lambda: ledger.book_fill(
            user,
            symbol="AAPL",
            side="buy",
            quantity=1,
            price_cents=10,
            fee_cents=0,
            executed_at=EXECUTED,
            idempotency_key="f",
        ),  # fmt: skip
        "release_hold": lambda: ledger.release_hold(user, hold.hold_id, idempotency_key="r"),
    }
    with conn.transaction():
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        calls[operation]()
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
