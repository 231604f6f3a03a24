-- One balance row per user and asset, moved by the posting itself (issue 6: throughput).
-- The same invariants as 0002/0007, with less work per operation:
--
--   * cached balances: one row per (user, asset) in ledger_balances, with the three user
--     balances (settled, unsettled, held) as columns, instead of one cached column per account.
--     "Holds never exceed settled + unsettled" becomes a CHECK on that row, evaluated with every
--     change, instead of a deferred constraint trigger firing for every balance UPDATE. An
--     operation locks one row per asset (FOR UPDATE) instead of three.
--   * the order path's postings (ledger_post, called by ledger_place_hold and ledger_book_fill)
--     move the balance rows in the same statement that writes the transaction and its entries,
--     from the same rows: an UPDATE by primary key. Measured at 8 clients, the entries'
--     statement trigger cost ~80 us per operation doing the same UPDATE, a direct one ~15.
--     Every other INSERT into ledger_entries (the other operations, the settle job, raw SQL)
--     still goes through that trigger, which checks the rows and moves the balances as before.
--     The trigger knows a posting's own INSERT by the transaction-local setting ledger.posting,
--     which ledger_post sets around that one statement only.
--   * CHECKs whose expressions carry constants (a transaction's kind, the 32-byte hashes) are
--     domains: PostgreSQL re-reads a table CHECK's expression from its text form in every
--     statement that writes the table, and caches a domain's.
--   * the journal's and holds' user_id reference the user's chain head instead of users: the
--     posting already holds that row FOR UPDATE, so the foreign key's FOR KEY SHARE lock costs
--     nothing more, where the users row was locked (and written) again by every operation.
--
--   * the order path's idempotency keys live on the journal transaction they booked (a unique
--     index on (user_id, idempotency_key) and the request's hash on the row), looked up under
--     the chain lock, instead of a separate ledger_idempotency row claimed first: one index
--     probe instead of a row, its index and its foreign key. The other operations still claim
--     their keys in ledger_idempotency (and also find the order path's there: ledger_claim_key
--     looks at both), so one key is one request across all operations.
--
-- Lock order (as 0003, with the balance rows now one per asset):
--   1. the idempotency row (user_id, key), for the operations that claim one (not holds or
--      fills: their key is checked under lock 2, and a concurrent request with the same key
--      waits there, then sees the first one's committed transaction);
--   2. the user's chain head (ledger_chains);
--   3. the user's balance rows of the assets involved, FOR UPDATE in asset order;
--   4. the hold row, when the operation consumes one;
--   5. the user's TOTP row, for a withdrawal.

CREATE TABLE ledger_balances (
    user_id    bigint NOT NULL REFERENCES users (id),
    asset      text NOT NULL,
    settled    bigint NOT NULL DEFAULT 0,
    unsettled  bigint NOT NULL DEFAULT 0,
    held       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, asset),
    CONSTRAINT ledger_balances_settled_nonnegative CHECK (settled >= 0),
    CONSTRAINT ledger_balances_unsettled_nonnegative CHECK (unsettled >= 0),
    CONSTRAINT ledger_balances_held_nonnegative CHECK (held >= 0),
    CONSTRAINT ledger_balances_holds_covered CHECK (held <= settled + unsettled)
) WITH (fillfactor = 20);

INSERT INTO ledger_balances (user_id, asset, settled, unsettled, held)
SELECT user_id, asset,
       coalesce(sum(balance) FILTER (WHERE kind IN ('cash_settled', 'position_settled')), 0),
       coalesce(sum(balance) FILTER (WHERE kind IN ('cash_unsettled', 'position_unsettled')), 0),
       coalesce(sum(balance) FILTER (WHERE kind IN ('cash_held', 'position_held')), 0)
FROM ledger_accounts WHERE user_id IS NOT NULL
GROUP BY user_id, asset;

DROP TRIGGER ledger_accounts_holds_covered ON ledger_accounts;
DROP FUNCTION ledger_check_holds_covered();
ALTER TABLE ledger_accounts
    DROP CONSTRAINT ledger_accounts_cached_iff_user,
    DROP CONSTRAINT ledger_accounts_balance_nonnegative,
    DROP COLUMN balance;

-- Accounts hold no balance any more: nothing about one may change after its INSERT.
DROP TRIGGER ledger_accounts_identity_fixed ON ledger_accounts;
CREATE TRIGGER ledger_accounts_identity_fixed BEFORE UPDATE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_account_change();

-- Every user account has its balance row: opened with the account.
CREATE FUNCTION ledger_open_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_balances (user_id, asset) VALUES (NEW.user_id, NEW.asset)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_accounts_open_balance AFTER INSERT ON ledger_accounts
    FOR EACH ROW WHEN (NEW.user_id IS NOT NULL) EXECUTE FUNCTION ledger_open_balance();

-- A user account's balance, read from its balance row (reads, statements, reconcile).
CREATE VIEW ledger_account_balances AS
SELECT a.id, a.user_id, a.asset, a.kind,
       CASE WHEN a.kind IN ('cash_settled', 'position_settled') THEN b.settled
            WHEN a.kind IN ('cash_unsettled', 'position_unsettled') THEN b.unsettled
            ELSE b.held END AS balance
FROM ledger_accounts a
JOIN ledger_balances b ON b.user_id = a.user_id AND b.asset = a.asset;

-- The CHECKs with constants, as domains (same names, same SQLSTATE 23514).
CREATE DOMAIN ledger_sha256 AS bytea
    CONSTRAINT ledger_sha256_length CHECK (length(VALUE) = 32);
CREATE DOMAIN ledger_transaction_kind AS text
    CONSTRAINT ledger_transactions_kind_check CHECK (VALUE IN (
        'deposit', 'withdrawal', 'hold', 'hold_release', 'fill', 'settlement'));

ALTER TABLE ledger_transactions
    DROP CONSTRAINT ledger_transactions_kind_check,
    DROP CONSTRAINT ledger_transactions_prev_hash_check,
    DROP CONSTRAINT ledger_transactions_hash_check,
    DROP CONSTRAINT ledger_transactions_hash_form_check;
ALTER TABLE ledger_transactions
    ALTER COLUMN kind TYPE ledger_transaction_kind,
    ALTER COLUMN prev_hash TYPE ledger_sha256,
    ALTER COLUMN hash TYPE ledger_sha256,
    ADD CONSTRAINT ledger_transactions_hash_form_check CHECK (hash_form BETWEEN 1 AND 2);
ALTER TABLE ledger_chains DROP CONSTRAINT ledger_chains_head_check;
ALTER TABLE ledger_chains ALTER COLUMN head TYPE ledger_sha256;

-- No query reads open holds by user (they are found by id, and reconcile sums them all), and
-- this partial index made every fill's UPDATE of a hold's remainder a non-HOT update (its
-- predicate reads the column). Holds leave room on their page for that update.
DROP INDEX ledger_holds_open_idx;
ALTER TABLE ledger_holds SET (fillfactor = 50);

-- The journal's and holds' users are ledger users: those with a chain (whose user_id
-- references users). A posting holds that row FOR UPDATE already.
ALTER TABLE ledger_transactions
    DROP CONSTRAINT ledger_transactions_user_id_fkey,
    ADD CONSTRAINT ledger_transactions_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES ledger_chains (user_id);
ALTER TABLE ledger_holds
    DROP CONSTRAINT ledger_holds_user_id_fkey,
    ADD CONSTRAINT ledger_holds_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES ledger_chains (user_id);

-- After each INSERT statement on ledger_entries that is not a posting's own (see ledger_post):
-- check the inserted rows as a set (0007's checks, unchanged) and move the balance rows.
CREATE OR REPLACE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    v_bad boolean;
    unbalanced record;
    v_seqscan text;
BEGIN
    IF current_setting('ledger.posting', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- The plan is made once per session, often while the journal is small, and every lookup
    -- here goes by a unique index: sequential scans are ruled out for this statement.
    v_seqscan := current_setting('enable_seqscan');
    PERFORM set_config('enable_seqscan', 'off', true);
    WITH j AS MATERIALIZED (
        SELECT n.transaction_id, n.account_id, n.asset, n.amount, a.user_id, a.kind,
               a.id IS NULL AS no_account, t.id IS NULL AS no_transaction,
               t.created_xact <> pg_current_xact_id() OR t.xmax <> '0'::xid AS closed
        FROM (SELECT transaction_id, account_id, asset, sum(amount) AS amount
              FROM ledger_new_entries GROUP BY transaction_id, account_id, asset) n
        LEFT JOIN ledger_accounts a ON a.id = n.account_id AND a.asset = n.asset
        LEFT JOIN ledger_transactions t ON t.id = n.transaction_id
    ), moved AS (
        UPDATE ledger_balances b
        SET settled = b.settled + d.settled, unsettled = b.unsettled + d.unsettled,
            held = b.held + d.held
        FROM (SELECT j.user_id, j.asset,
                     coalesce(sum(j.amount) FILTER (
                         WHERE j.kind IN ('cash_settled', 'position_settled')), 0) AS settled,
                     coalesce(sum(j.amount) FILTER (
                         WHERE j.kind IN ('cash_unsettled', 'position_unsettled')), 0) AS unsettled,
                     coalesce(sum(j.amount) FILTER (
                         WHERE j.kind IN ('cash_held', 'position_held')), 0) AS held
              FROM j WHERE j.user_id IS NOT NULL AND NOT j.no_account
              GROUP BY j.user_id, j.asset) d
        WHERE b.user_id = d.user_id AND b.asset = d.asset
    )
    SELECT j.transaction_id, j.account_id, j.asset, j.no_account, j.no_transaction
    INTO bad
    FROM j WHERE j.no_account OR j.no_transaction OR j.closed
    LIMIT 1;
    v_bad := FOUND;
    PERFORM set_config('enable_seqscan', v_seqscan, true);
    IF NOT v_bad THEN
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
ALTER FUNCTION ledger_apply_entries() RESET enable_seqscan;

-- 0007's zero-sum check in one statement: lock the transaction's own row (which closes it to
-- more entries), then look for an asset whose entries do not sum to zero. Planned without
-- sequential scans, for the same reason as ledger_apply_entries (its plan on a fresh
-- database scanned the whole journal at every commit).
CREATE OR REPLACE FUNCTION ledger_check_transaction_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT u.asset, u.total INTO unbalanced
    FROM (SELECT id FROM ledger_transactions WHERE id = NEW.id FOR KEY SHARE) t,
         LATERAL ledger_unbalanced_asset(t.id) u;
    IF FOUND THEN
        PERFORM ledger_raise_unbalanced(NEW.id, unbalanced.asset, unbalanced.total);
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION ledger_check_transaction_balanced() SET enable_seqscan = off;

-- 0003's lock over the balance rows: the chain head, then the user's balance rows of
-- p_assets FOR UPDATE in asset order, returned with the accounts' ids per asset.
CREATE OR REPLACE FUNCTION ledger_lock(p_user_id bigint, p_assets text[])
RETURNS SETOF ledger_balance LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM ledger_chains WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledger_unknown_user(p_user_id);
    END IF;
    RETURN QUERY
    SELECT b.asset,
           (SELECT id FROM ledger_accounts WHERE user_id = p_user_id AND asset = b.asset
                AND kind IN ('cash_settled', 'position_settled')), b.settled,
           (SELECT id FROM ledger_accounts WHERE user_id = p_user_id AND asset = b.asset
                AND kind IN ('cash_unsettled', 'position_unsettled')), b.unsettled,
           (SELECT id FROM ledger_accounts WHERE user_id = p_user_id AND asset = b.asset
                AND kind IN ('cash_held', 'position_held')), b.held
    FROM (SELECT * FROM ledger_balances
          WHERE user_id = p_user_id AND asset = ANY(p_assets)
          ORDER BY asset COLLATE "C" FOR UPDATE) b;
END;
$$;

-- The order path's keys, on the transactions they booked. Every key claimed before 0008 was
-- written on its transaction too, and claims are unique per user, so the index builds; rows
-- without a request hash (older ones, the other operations') have theirs in ledger_idempotency.
ALTER TABLE ledger_transactions ADD COLUMN request_hash bytea;
CREATE UNIQUE INDEX ledger_transactions_key ON ledger_transactions (user_id, idempotency_key);

-- The operation that books a transaction of each kind (as named in ledger_idempotency).
CREATE FUNCTION ledger_operation(p_kind text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_kind WHEN 'hold' THEN 'place_hold' WHEN 'fill' THEN 'book_fill'
        WHEN 'hold_release' THEN 'release_hold' WHEN 'withdrawal' THEN 'withdraw'
        ELSE p_kind END
$$;

-- TPL11: the key was used for another request (0003's error, message and DETAIL).
CREATE FUNCTION ledger_raise_key_conflict(p_key text, p_operation text, p_original text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TPL11',
        MESSAGE = format('idempotency key %L was already used for a different request (%s);'
                         ' use a new key for a new %s', p_key, p_original, p_operation),
        DETAIL = jsonb_build_object('key', p_key, 'operation', p_operation,
                                    'original_operation', p_original)::text;
END;
$$;

-- For a caller holding the user's chain lock: NULL when the key is new; the original receipt
-- when the same request was booked with it; TPL11 when another request was (ledger_claim_key's
-- error). A concurrent request with the key waited on the chain lock and is seen committed.
CREATE FUNCTION ledger_replay(
    p_user_id bigint, p_key text, p_operation text, p_request_hash bytea
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    t record;
    v_operation text;
    v_hash bytea;
    v_result jsonb;
BEGIN
    SELECT id, kind::text AS kind, request_hash, metadata, settlement_date INTO t
    FROM ledger_transactions WHERE user_id = p_user_id AND idempotency_key = p_key;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF t.request_hash IS NULL THEN
        SELECT operation, request_hash, result INTO v_operation, v_hash, v_result
        FROM ledger_idempotency WHERE user_id = p_user_id AND key = p_key;
    ELSE
        v_operation := ledger_operation(t.kind);
        v_hash := t.request_hash;
        v_result := ledger_receipt(t.id, t.kind, (t.metadata->>'hold_id')::uuid,
                                   t.settlement_date);
    END IF;
    IF v_operation IS DISTINCT FROM p_operation OR v_hash IS DISTINCT FROM p_request_hash THEN
        PERFORM ledger_raise_key_conflict(p_key, p_operation, v_operation);
    END IF;
    RETURN v_result;
END;
$$;

-- 0003's claim for the other operations, which also finds a key the order path booked.
CREATE OR REPLACE FUNCTION ledger_claim_key(
    p_user_id bigint, p_key text, p_operation text, p_request_hash bytea, p_receipt jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
BEGIN
    INSERT INTO ledger_idempotency (user_id, key, operation, request_hash, result)
    VALUES (p_user_id, p_key, p_operation, p_request_hash, p_receipt)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        -- New here; a hold or fill may have booked it (such rows carry their request hash).
        PERFORM FROM ledger_transactions
        WHERE user_id = p_user_id AND idempotency_key = p_key AND request_hash IS NOT NULL;
        IF FOUND THEN
            RETURN ledger_replay(p_user_id, p_key, p_operation, p_request_hash);
        END IF;
        RETURN NULL;
    END IF;
    -- A new snapshot (READ COMMITTED, volatile function): sees the winner's committed row.
    SELECT operation, request_hash, result INTO v_row
    FROM ledger_idempotency WHERE user_id = p_user_id AND key = p_key;
    IF v_row.operation <> p_operation OR v_row.request_hash <> p_request_hash THEN
        PERFORM ledger_raise_key_conflict(p_key, p_operation, v_row.operation);
    END IF;
    RETURN v_row.result;
END;
$$;

-- A posting of the order path: the transaction (hashed into the user's chain), its entries
-- (zero amounts dropped) and the balance rows they move, in one statement, for a caller that
-- holds the chain lock (it read p_seq - 1 and p_prev under it) and the balance rows' locks.
-- p_buckets names, per entry, the user balance it moves ('settled', 'unsettled', 'held'), or
-- NULL for a broker account; the caller takes both from the same account lookup.
CREATE FUNCTION ledger_post(
    p_id uuid, p_user_id bigint, p_seq bigint, p_prev bytea, p_kind text, p_key text,
    p_request_hash bytea, p_effective_at timestamptz, p_settlement_date date, p_metadata jsonb,
    p_account_ids bigint[], p_assets text[], p_amounts bigint[], p_buckets text[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('ledger.posting', 'on', true);
    WITH e AS (
        SELECT x.account_id, x.asset, x.amount, x.bucket, x.ord
        FROM unnest(p_account_ids, p_assets, p_amounts, p_buckets) WITH ORDINALITY
            AS x (account_id, asset, amount, bucket, ord)
        WHERE x.amount <> 0
    ), h AS (
        -- The entries go in as a column, not a subquery argument, so that ledger_canonical
        -- is inlined into this plan rather than parsed and planned on every call.
        SELECT sha256(p_prev || ledger_canonical(p_id, p_user_id, p_seq, p_kind, p_key,
            p_effective_at, p_settlement_date, p_metadata, j.entries)) AS hash
        FROM (SELECT coalesce(jsonb_agg(jsonb_build_array(e.account_id, e.asset, e.amount)
                                        ORDER BY e.account_id, e.asset COLLATE "C", e.amount),
                              '[]') AS entries FROM e) j
    ), t AS (
        INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, idempotency_key,
            effective_at, settlement_date, metadata, prev_hash, hash, hash_form, request_hash)
        SELECT p_id, p_user_id, p_seq, p_kind, p_key, p_effective_at, p_settlement_date,
            p_metadata, p_prev, h.hash, 2, p_request_hash FROM h
        RETURNING hash
    ), n AS (
        INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)
        SELECT p_id, e.account_id, e.asset, e.amount FROM e ORDER BY e.ord
    ), b AS (
        UPDATE ledger_balances b
        SET settled = b.settled + d.settled, unsettled = b.unsettled + d.unsettled,
            held = b.held + d.held
        FROM (SELECT e.asset,
                     coalesce(sum(e.amount) FILTER (WHERE e.bucket = 'settled'), 0) AS settled,
                     coalesce(sum(e.amount) FILTER (WHERE e.bucket = 'unsettled'), 0)
                         AS unsettled,
                     coalesce(sum(e.amount) FILTER (WHERE e.bucket = 'held'), 0) AS held
              FROM e WHERE e.bucket IS NOT NULL GROUP BY e.asset) d
        WHERE b.user_id = p_user_id AND b.asset = d.asset
    )
    UPDATE ledger_chains SET seq = p_seq, head = (SELECT hash FROM t)
    WHERE user_id = p_user_id AND seq = p_seq - 1 AND head = p_prev;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger chain of user % moved under a caller that held its lock', p_user_id;
    END IF;
    PERFORM set_config('ledger.posting', '', true);
END;
$$;
ALTER FUNCTION ledger_post(uuid, bigint, bigint, bytea, text, text, bytea, timestamptz, date,
    jsonb, bigint[], text[], bigint[], text[]) SET enable_seqscan = off;

DROP FUNCTION ledger_append_at(uuid, bigint, bigint, bytea, text, text, timestamptz, date, jsonb,
    bigint[], text[], bigint[]);

-- 0006's hold, over the balance row: the same checks, entries and receipt; the key checked
-- under the chain lock (ledger_replay) and kept on the transaction.
CREATE OR REPLACE FUNCTION ledger_place_hold(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_asset text, p_amount bigint, p_order_id text, p_effective_at timestamptz
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_hold uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'hold', v_hold, NULL);
    v_original jsonb;
    v_seq bigint;
    v_prev bytea;
    v_power bigint;
    a record;
BEGIN
    -- Locks 2 and 3: the chain head, then the balance row (one row: one asset).
    SELECT c.seq, c.head, b.settled + b.unsettled - b.held INTO v_seq, v_prev, v_power
    FROM ledger_chains c JOIN ledger_balances b ON b.user_id = c.user_id AND b.asset = p_asset
    WHERE c.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledger_unknown_user(p_user_id);
    END IF;
    v_original := ledger_replay(p_user_id, p_key, 'place_hold', p_request_hash);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    -- Accounts never change: read unlocked.
    SELECT max(id) FILTER (WHERE user_id IS NOT NULL AND kind IN ('cash_held', 'position_held'))
               AS held,
           max(id) FILTER (WHERE user_id IS NOT NULL
                           AND kind IN ('cash_settled', 'position_settled')) AS settled,
           max(id) FILTER (WHERE user_id IS NULL AND kind = 'broker_holds') AS broker
    INTO a
    FROM ledger_accounts WHERE (user_id = p_user_id OR user_id IS NULL) AND asset = p_asset;
    IF p_amount > v_power THEN
        PERFORM ledger_raise_insufficient(a.settled, p_amount, v_power,
            CASE WHEN p_asset = 'USD' THEN 'buying power' ELSE 'position' END);
    END IF;
    INSERT INTO ledger_holds (id, user_id, asset, amount, remaining, order_id)
    VALUES (v_hold, p_user_id, p_asset, p_amount, p_amount, p_order_id);
    PERFORM ledger_post(v_tx, p_user_id, v_seq + 1, v_prev, 'hold', p_key, p_request_hash,
        p_effective_at, NULL,
        jsonb_build_object('hold_id', v_hold::text, 'order_id', p_order_id),
        ARRAY[a.held, a.broker], ARRAY[p_asset, p_asset], ARRAY[p_amount, -p_amount],
        ARRAY['held', NULL]);
    RETURN v_receipt;
END;
$$;

-- 0006's fill, over the balance rows: the same checks, entries and receipt; the key checked
-- under the chain lock (ledger_replay) and kept on the transaction.
CREATE OR REPLACE FUNCTION ledger_book_fill(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_symbol text, p_side text, p_quantity bigint, p_price bigint, p_fee bigint,
    p_executed_at timestamptz, p_trade_date date, p_settlement_date date, p_hold_id uuid
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'fill', p_hold_id, p_settlement_date);
    v_original jsonb;
    v_seq bigint;
    v_prev bytea;
    v_hold_asset text := CASE WHEN p_side = 'buy' THEN 'USD' ELSE p_symbol END;
    v_remaining bigint := 0;
    v_notional bigint := p_quantity * p_price;
    v_total bigint;
    v_consumed bigint;
    v_free bigint;
    v_from_settled bigint;
    r record;
    cash record;
    pos record;
    v_rows int := 0;
    a record;
    v_ids bigint[];
    v_assets text[];
    v_amounts bigint[];
    v_buckets text[];
BEGIN
    -- Locks 2 and 3: the chain head, then the balance rows of cash and the symbol, in asset
    -- order (the join yields the chain row first, with the first balance row).
    FOR r IN
        SELECT c.seq, c.head, b.asset, b.settled, b.unsettled, b.held
        FROM ledger_chains c JOIN ledger_balances b ON b.user_id = c.user_id
        WHERE c.user_id = p_user_id AND b.asset IN ('USD', p_symbol)
        ORDER BY b.asset COLLATE "C" FOR UPDATE
    LOOP
        v_seq := r.seq;
        v_prev := r.head;
        v_rows := v_rows + 1;
        IF r.asset = 'USD' THEN cash := r; ELSE pos := r; END IF;
    END LOOP;
    IF v_rows < 2 THEN
        PERFORM ledger_unknown_user(p_user_id);
    END IF;
    v_original := ledger_replay(p_user_id, p_key, 'book_fill', p_request_hash);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    IF p_hold_id IS NOT NULL THEN
        SELECT remaining INTO v_remaining FROM ledger_holds
        WHERE id = p_hold_id AND user_id = p_user_id AND asset = v_hold_asset FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM ledger_unknown_hold(p_hold_id, p_user_id);
        END IF;
    END IF;
    -- Accounts never change: read unlocked. Cash accounts are USD and positions never are.
    SELECT max(id) FILTER (WHERE kind = 'cash_settled') AS cash_settled,
           max(id) FILTER (WHERE kind = 'cash_unsettled') AS cash_unsettled,
           max(id) FILTER (WHERE kind = 'cash_held') AS cash_held,
           max(id) FILTER (WHERE kind = 'position_settled') AS pos_settled,
           max(id) FILTER (WHERE kind = 'position_unsettled') AS pos_unsettled,
           max(id) FILTER (WHERE kind = 'position_held') AS pos_held,
           max(id) FILTER (WHERE asset = 'USD' AND kind = 'broker_holds') AS usd_holds,
           max(id) FILTER (WHERE asset = 'USD' AND kind = 'broker_street') AS usd_street,
           max(id) FILTER (WHERE asset = 'USD' AND kind = 'broker_fees') AS usd_fees,
           max(id) FILTER (WHERE asset <> 'USD' AND kind = 'broker_holds') AS sym_holds,
           max(id) FILTER (WHERE asset <> 'USD' AND kind = 'broker_street') AS sym_street
    INTO a
    FROM ledger_accounts
    WHERE (user_id = p_user_id OR user_id IS NULL) AND asset IN ('USD', p_symbol);
    IF p_side = 'buy' THEN
        v_total := v_notional + p_fee;
        v_consumed := least(v_remaining, v_total);
        v_free := cash.settled + cash.unsettled - cash.held + v_consumed;
        IF v_total > v_free THEN
            PERFORM ledger_raise_insufficient(a.cash_settled, v_total, v_free, 'buying power');
        END IF;
        v_from_settled := least(v_total, cash.settled);
        v_ids := ARRAY[a.cash_held, a.usd_holds, a.cash_settled, a.cash_unsettled,
                       a.usd_street, a.usd_fees, a.sym_street, a.pos_unsettled];
        v_assets := ARRAY['USD', 'USD', 'USD', 'USD', 'USD', 'USD', p_symbol, p_symbol];
        v_amounts := ARRAY[-v_consumed, v_consumed, -v_from_settled, -(v_total - v_from_settled),
                           v_notional, p_fee, -p_quantity, p_quantity];
        v_buckets := ARRAY['held', NULL, 'settled', 'unsettled', NULL, NULL, NULL, 'unsettled'];
    ELSE
        IF p_fee >= v_notional THEN
            RAISE EXCEPTION USING ERRCODE = 'TPL14',
                MESSAGE = format('fee=%s is invalid: must be less than the proceeds %s',
                                 p_fee, v_notional),
                DETAIL = jsonb_build_object('field', 'fee', 'value', p_fee, 'reason',
                    format('must be less than the proceeds %s', v_notional))::text;
        END IF;
        v_consumed := least(v_remaining, p_quantity);
        v_free := pos.settled + pos.unsettled - pos.held + v_consumed;
        IF p_quantity > v_free THEN
            PERFORM ledger_raise_insufficient(a.pos_settled, p_quantity, v_free, 'position');
        END IF;
        v_from_settled := least(p_quantity, pos.settled);
        v_ids := ARRAY[a.pos_held, a.sym_holds, a.pos_settled, a.pos_unsettled,
                       a.sym_street, a.usd_street, a.cash_unsettled, a.usd_fees];
        v_assets := ARRAY[p_symbol, p_symbol, p_symbol, p_symbol, p_symbol, 'USD', 'USD', 'USD'];
        v_amounts := ARRAY[-v_consumed, v_consumed, -v_from_settled,
                           -(p_quantity - v_from_settled), p_quantity, -v_notional,
                           v_notional - p_fee, p_fee];
        v_buckets := ARRAY['held', NULL, 'settled', 'unsettled', NULL, NULL, 'unsettled', NULL];
    END IF;
    IF v_consumed > 0 THEN
        UPDATE ledger_holds SET remaining = remaining - v_consumed WHERE id = p_hold_id;
    END IF;
    PERFORM ledger_post(v_tx, p_user_id, v_seq + 1, v_prev, 'fill', p_key, p_request_hash,
        p_executed_at, p_settlement_date,
        jsonb_build_object('symbol', p_symbol, 'side', p_side, 'quantity', p_quantity,
                           'price_cents', p_price, 'fee_cents', p_fee,
                           'trade_date', to_char(p_trade_date, 'YYYY-MM-DD'),
                           'hold_id', p_hold_id::text),
        v_ids, v_assets, v_amounts, v_buckets);
    RETURN v_receipt;
END;
$$;
