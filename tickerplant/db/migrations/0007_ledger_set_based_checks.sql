-- Set-based integrity checks (issue 6: throughput). The same invariants as 0002, checked once
-- per statement or once per journal transaction instead of once per entry:
--
--   * zero-sum per asset: one deferred constraint trigger per journal *transaction* (on
--     ledger_transactions) instead of one per entry. Entries may only join a transaction while
--     that check is still ahead: in the database transaction that created it, and before the
--     check ran (it runs at commit, or earlier under SET CONSTRAINTS ... IMMEDIATE). So no
--     entry can reach a transaction after its check, and every transaction is checked once
--     after its last entry.
--   * referential integrity of entries (account and asset, transaction): one query per INSERT
--     statement over the inserted rows, in the statement trigger that already moves the cached
--     balances, instead of two foreign-key lookups per entry. Foreign keys also lock the row
--     they find (FOR KEY SHARE); every fill and hold names the broker's shared accounts, so
--     those locks made multixacts on a handful of hot rows. The lookups need no lock because
--     what they find cannot go away: accounts are now permanent (no DELETE or TRUNCATE, their
--     id, owner, asset and kind fixed), transactions were append-only already.
--   * the CHECKs on an account's owner, asset and kind (which never change) run when the row
--     is inserted, by a trigger, instead of being planned and evaluated again on every
--     balance UPDATE; the balance CHECKs (>= 0, cached iff user) stay CHECKs.
--   * also: the entry trigger moves balances and checks in one statement, planned without
--     sequential scans; the index on entries' account_id (the foreign key's) is dropped;
--     balance and chain rows get room for HOT updates (fillfactor).
--
-- Errors: as before, 23503 for an entry naming no account/transaction, 23514 for a bad new
-- account, TPL01 for an unbalanced transaction, TPL02 for a change the journal refuses (now
-- also: an entry for a closed transaction, a change of an account's identity or existence).

-- Accounts are permanent and keep their identity: what an entry names stays what it named.
CREATE FUNCTION ledger_reject_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger accounts are permanent: % of % on ledger_accounts is not allowed',
        TG_OP, CASE WHEN TG_OP = 'UPDATE' THEN 'id, user_id, asset or kind' ELSE 'rows' END
        USING ERRCODE = 'TPL02';
END;
$$;

CREATE TRIGGER ledger_accounts_permanent BEFORE DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_account_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_account_change();
-- Fires only for an UPDATE that names one of these columns, never for a balance UPDATE.
CREATE TRIGGER ledger_accounts_identity_fixed BEFORE UPDATE OF id, user_id, asset, kind
    ON ledger_accounts FOR EACH ROW EXECUTE FUNCTION ledger_reject_account_change();

-- 0002's CHECKs on owner, asset and kind, now only where those can be set: on INSERT. The
-- same conditions, the same SQLSTATE (23514) and constraint names. A CHECK is re-planned by
-- every statement that writes the table, and the cached-balance UPDATE is one per entry
-- statement; these columns cannot change after the INSERT (ledger_accounts_identity_fixed).
CREATE FUNCTION ledger_check_new_account() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_failed text;
BEGIN
    v_failed := CASE
        WHEN NOT NEW.asset ~ '^[A-Z][A-Z0-9.]{0,11}$' THEN 'ledger_accounts_asset_check'
        WHEN NOT NEW.kind IN ('cash_settled', 'cash_unsettled', 'cash_held',
                              'position_settled', 'position_unsettled', 'position_held',
                              'broker_bank', 'broker_street', 'broker_fees', 'broker_holds')
            THEN 'ledger_accounts_kind_check'
        WHEN NOT (NEW.user_id IS NULL) = (NEW.kind LIKE 'broker\_%')
            THEN 'ledger_accounts_owner_kind'
        WHEN NOT (NEW.kind NOT LIKE 'cash\_%' OR NEW.asset = 'USD')
            THEN 'ledger_accounts_cash_is_usd'
        WHEN NOT (NEW.kind NOT LIKE 'position\_%' OR NEW.asset <> 'USD')
            THEN 'ledger_accounts_position_not_usd'
    END;
    IF v_failed IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = v_failed,
            TABLE = 'ledger_accounts',
            MESSAGE = format('new row for relation "ledger_accounts" violates check'
                             ' constraint "%s"', v_failed),
            DETAIL = format('user_id %s, asset %s, kind %s', NEW.user_id, NEW.asset, NEW.kind);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_accounts_new_checked BEFORE INSERT ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_check_new_account();

ALTER TABLE ledger_accounts
    DROP CONSTRAINT ledger_accounts_asset_check,
    DROP CONSTRAINT ledger_accounts_kind_check,
    DROP CONSTRAINT ledger_accounts_owner_kind,
    DROP CONSTRAINT ledger_accounts_cash_is_usd,
    DROP CONSTRAINT ledger_accounts_position_not_usd;

-- Which database transaction created each journal transaction (the top-level one, also from a
-- savepoint). Rows from before this migration get 0, which is no transaction's id: they are
-- closed. A raw INSERT that sets another value only closes its own transaction to entries.
ALTER TABLE ledger_transactions ADD COLUMN created_xact xid8 NOT NULL DEFAULT '0';
ALTER TABLE ledger_transactions ALTER COLUMN created_xact SET DEFAULT pg_current_xact_id();

-- The zero-sum check, once per journal transaction, deferred to commit. It first locks the
-- transaction's own row (FOR KEY SHARE): that sets the row's xmax, which ledger_apply_entries
-- reads as "checked, closed to entries". A row lock cannot be given back before the database
-- transaction ends (only a rolled-back savepoint undoes it, and that also puts the check back
-- in the queue), so nothing between the check and the commit can slip an entry in.
-- The first asset whose entries in a transaction do not sum to zero, if any (a plain SQL
-- function: inlined into the statement that calls it), and the error that reports it.
CREATE FUNCTION ledger_unbalanced_asset(p_transaction_id uuid)
RETURNS TABLE (asset text, total numeric) LANGUAGE sql STABLE AS $$
    SELECT e.asset, sum(e.amount) FROM ledger_entries e
    WHERE e.transaction_id = p_transaction_id
    GROUP BY e.asset HAVING sum(e.amount) <> 0 LIMIT 1
$$;

CREATE FUNCTION ledger_raise_unbalanced(p_transaction_id uuid, p_asset text, p_total numeric)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger transaction % is unbalanced: asset % sums to %',
        p_transaction_id, p_asset, p_total
        USING ERRCODE = 'TPL01';
END;
$$;

CREATE FUNCTION ledger_check_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    PERFORM FROM ledger_transactions WHERE id = NEW.id FOR KEY SHARE;
    SELECT u.asset, u.total INTO unbalanced FROM ledger_unbalanced_asset(NEW.id) u;
    IF FOUND THEN
        PERFORM ledger_raise_unbalanced(NEW.id, unbalanced.asset, unbalanced.total);
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_balanced();

DROP TRIGGER ledger_entries_balanced ON ledger_entries;
DROP FUNCTION ledger_check_balanced();

-- After each INSERT statement on ledger_entries: move the cached balances (as 0006), then
-- check the inserted rows as a set. The balances move first so that an overdraft is reported
-- as the balance CHECK it violates, as before.
--   * each (account_id, asset) is an account of that asset     (was a foreign key, 23503)
--   * each transaction_id is a journal transaction             (was a foreign key, 23503)
--   * that transaction is open: created by this database transaction and not yet checked.
--     Entries for a closed one are refused: TPL01 when they unbalance it, else TPL02.
CREATE OR REPLACE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    unbalanced record;
BEGIN
    -- One statement: the UPDATE runs (a data-modifying CTE always runs to completion), and
    -- the SELECT's snapshot does not see its changes, which it does not need.
    WITH moved AS (
        UPDATE ledger_accounts a SET balance = a.balance + d.amount
        FROM (SELECT account_id, sum(amount)::bigint AS amount
              FROM ledger_new_entries GROUP BY account_id HAVING sum(amount) <> 0) d
        WHERE a.id = d.account_id AND a.balance IS NOT NULL
    )
    SELECT n.transaction_id, n.account_id, n.asset,
           a.id IS NULL AS no_account, t.id IS NULL AS no_transaction
    INTO bad
    FROM (SELECT DISTINCT transaction_id, account_id, asset FROM ledger_new_entries) n
    LEFT JOIN ledger_accounts a ON a.id = n.account_id AND a.asset = n.asset
    LEFT JOIN ledger_transactions t ON t.id = n.transaction_id
    WHERE a.id IS NULL OR t.id IS NULL
       OR t.created_xact <> pg_current_xact_id() OR t.xmax <> '0'::xid
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF bad.no_account THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('insert into ledger_entries names no account %s of asset %s',
                             bad.account_id, bad.asset);
    ELSIF bad.no_transaction THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('insert into ledger_entries names no transaction %s',
                             bad.transaction_id);
    END IF;
    SELECT u.asset, u.total INTO unbalanced FROM ledger_unbalanced_asset(bad.transaction_id) u;
    IF FOUND THEN
        PERFORM ledger_raise_unbalanced(bad.transaction_id, unbalanced.asset, unbalanced.total);
    END IF;
    RAISE EXCEPTION 'the ledger journal is append-only: transaction % is closed to new entries'
        ' (they join a transaction only in the database transaction that created it, before'
        ' its balance check)', bad.transaction_id
        USING ERRCODE = 'TPL02';
END;
$$;

-- The trigger's plans are made once per session, often while the journal is still small, when
-- a hash join over a sequential scan of ledger_transactions looks cheaper than one index
-- lookup per inserted row; that plan is then kept while the table grows (it did, in the
-- benchmark). Every lookup here goes by a unique index, so sequential scans are ruled out.
ALTER FUNCTION ledger_apply_entries() SET enable_seqscan = off;

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_id_asset_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_transaction_id_fkey;

-- The index on entries' account_id served the foreign key (finding an account's entries before
-- deleting the account); accounts are never deleted now, and no query of the ledger looks
-- entries up by account (statements go by transaction, reconcile scans). Every fill and hold
-- inserted into it at the few keys of the broker's accounts.
DROP INDEX ledger_entries_account_idx;

-- Every operation rewrites its user's chain head and two to four of the user's balance rows.
-- Full pages (fillfactor 100) leave no room for those new row versions beside the old ones,
-- so updates stop being HOT (new index entries for every balance change) and every user's
-- rows share the same few hot pages. Rows inserted from now on fill pages only partly.
ALTER TABLE ledger_accounts SET (fillfactor = 20);
ALTER TABLE ledger_chains SET (fillfactor = 20);
