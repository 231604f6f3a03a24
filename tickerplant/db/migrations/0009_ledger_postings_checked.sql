-- A posting is checked whole by the statement that writes it (issue 6: throughput).
--
-- 0008's order path (ledger_post, called by ledger_place_hold and ledger_book_fill) writes a
-- journal transaction, all of its entries and the balance rows they move in one statement.
-- Its zero-sum check still ran as the deferred constraint trigger, at commit: a trigger call,
-- a row lock on the transaction (its closure to later entries: a WAL record and a dirtied
-- page) and a second read of the entries just written. Measured on one backend, that was
-- ~45 us of ~400 us of server CPU per operation.
--
-- Now a posting checks that its entries sum to zero per asset in the statement that inserts
-- them, from the same rows, and is closed to any later entry from its birth:
--
--   * ledger_post's statement moves the chain head only when no asset of its entries sums to
--     non-zero; otherwise nothing is written and it raises TPL01 (the deferred check's error).
--   * a transaction with a request hash is a posting (only ledger_post writes one, since
--     0008). ledger_apply_entries treats it as closed: no INSERT after the posting's own can
--     add an entry to it (TPL02). A raw INSERT that sets a request hash therefore gets a
--     transaction that can hold no entries at all, which balances.
--   * the deferred constraint trigger fires for every other transaction (WHEN request_hash IS
--     NULL): deposits, withdrawals, releases, settlements, raw SQL, and a posting called
--     with no request hash. Those keep 0007's check and closure unchanged.
--
-- Also (benchmarks/README.md, "Fifth pass"):
--   * ledger_entries keeps one index instead of two: its primary key is (transaction_id, id);
--   * the single-column CHECKs of the tables the order path writes are domains (0008's
--     reason: a table CHECK is read back from text by every statement that writes the table);
--   * ledger_post returns the new chain head, and its callers run it (and set ledger.posting)
--     as plpgsql expressions rather than as statements of their own;
--   * the hold and the fill look their key up inline (ledger_replay only for a key in use),
--     with sequential scans ruled out for their plans;
--   * each balance row names the accounts its postings move, so the hold and the fill take
--     them with the rows they lock instead of a query of ledger_accounts per operation.

-- The journal's entries: one index. The primary key (transaction_id, id) serves every lookup
-- by transaction (the zero-sum check, statements, verify) and keeps id unique (an identity);
-- the separate index on transaction_id was a second index insert per entry.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_pkey,
    ADD CONSTRAINT ledger_entries_pkey PRIMARY KEY (transaction_id, id);
DROP INDEX ledger_entries_transaction_idx;

-- Single-column CHECKs as domains, as 0008 did for the kind and the hashes (same names, same
-- SQLSTATE 23514): a table's CHECKs are read back from their text form by every statement
-- that writes the table; a domain's are cached with the type. What stays a table CHECK spans
-- two columns (ledger_balances_holds_covered, ledger_holds_check); the journal's own tables
-- keep theirs (ledger_transactions', ledger_entries'): a type change would rewrite the journal
-- and its indexes, and an array of a domain reaches clients as a type they do not know.
CREATE DOMAIN ledger_chain_seq AS bigint
    CONSTRAINT ledger_chains_seq_check CHECK (VALUE >= 0);
CREATE DOMAIN ledger_hold_amount AS bigint
    CONSTRAINT ledger_holds_amount_check CHECK (VALUE > 0);
CREATE DOMAIN ledger_settled AS bigint
    CONSTRAINT ledger_balances_settled_nonnegative CHECK (VALUE >= 0);
CREATE DOMAIN ledger_unsettled AS bigint
    CONSTRAINT ledger_balances_unsettled_nonnegative CHECK (VALUE >= 0);
CREATE DOMAIN ledger_held AS bigint
    CONSTRAINT ledger_balances_held_nonnegative CHECK (VALUE >= 0);

ALTER TABLE ledger_chains DROP CONSTRAINT ledger_chains_seq_check;
ALTER TABLE ledger_chains ALTER COLUMN seq TYPE ledger_chain_seq;
ALTER TABLE ledger_holds DROP CONSTRAINT ledger_holds_amount_check;
ALTER TABLE ledger_holds ALTER COLUMN amount TYPE ledger_hold_amount;

-- Each balance row names the accounts a posting of its asset moves: the user's three (settled,
-- unsettled, held) and the broker's holds and street accounts of the asset (fees: USD rows
-- only). The hold and the fill read them with the balance rows they lock, where they ran one
-- aggregate query over ledger_accounts per operation (~29 us of server CPU per operation).
-- The database keeps them true: a BEFORE trigger derives all six from ledger_accounts when a
-- row is inserted or an UPDATE names any of them (whatever value it gives); a new user account
-- re-derives its balance row, a new broker account every row of its asset (once per asset,
-- normally before anyone trades it). Accounts are permanent and immutable (0007), so a
-- derived id stays right. A row opened while another transaction is creating the broker's
-- accounts of its asset can not see them yet, nor that transaction the row: such a row keeps
-- NULL ids until the first hold or fill that needs them derives them again, under its lock.
ALTER TABLE ledger_balances
    ADD COLUMN settled_account bigint,
    ADD COLUMN unsettled_account bigint,
    ADD COLUMN held_account bigint,
    ADD COLUMN broker_holds_account bigint,
    ADD COLUMN broker_street_account bigint,
    ADD COLUMN broker_fees_account bigint;

CREATE FUNCTION ledger_derive_balance_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT max(id) FILTER (WHERE user_id IS NOT NULL
                           AND kind IN ('cash_settled', 'position_settled')),
           max(id) FILTER (WHERE user_id IS NOT NULL
                           AND kind IN ('cash_unsettled', 'position_unsettled')),
           max(id) FILTER (WHERE user_id IS NOT NULL AND kind IN ('cash_held', 'position_held')),
           max(id) FILTER (WHERE user_id IS NULL AND kind = 'broker_holds'),
           max(id) FILTER (WHERE user_id IS NULL AND kind = 'broker_street'),
           max(id) FILTER (WHERE user_id IS NULL AND kind = 'broker_fees')
    INTO NEW.settled_account, NEW.unsettled_account, NEW.held_account,
         NEW.broker_holds_account, NEW.broker_street_account, NEW.broker_fees_account
    FROM ledger_accounts
    WHERE (user_id = NEW.user_id OR user_id IS NULL) AND asset = NEW.asset;
    RETURN NEW;
END;
$$;

-- Fires only for an INSERT or an UPDATE that names an id column, never for a balance UPDATE.
CREATE TRIGGER ledger_balances_accounts_derived
    BEFORE INSERT OR UPDATE OF settled_account, unsettled_account, held_account,
        broker_holds_account, broker_street_account, broker_fees_account
    ON ledger_balances FOR EACH ROW EXECUTE FUNCTION ledger_derive_balance_accounts();

-- 0008's trigger opened a user account's balance row; now every new account also re-derives
-- the ids of the rows it belongs on (naming an id column in the UPDATE is what re-derives).
CREATE OR REPLACE FUNCTION ledger_open_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS NULL THEN
        UPDATE ledger_balances SET broker_holds_account = NULL WHERE asset = NEW.asset;
    ELSE
        INSERT INTO ledger_balances (user_id, asset) VALUES (NEW.user_id, NEW.asset)
        ON CONFLICT (user_id, asset) DO UPDATE SET settled_account = NULL;
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER ledger_accounts_open_balance ON ledger_accounts;
CREATE TRIGGER ledger_accounts_open_balance AFTER INSERT ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_open_balance();

UPDATE ledger_balances SET settled_account = NULL;

-- The view over the balance rows names their columns: dropped and made again, unchanged.
DROP VIEW ledger_account_balances;
ALTER TABLE ledger_balances
    DROP CONSTRAINT ledger_balances_settled_nonnegative,
    DROP CONSTRAINT ledger_balances_unsettled_nonnegative,
    DROP CONSTRAINT ledger_balances_held_nonnegative;
ALTER TABLE ledger_balances
    ALTER COLUMN settled TYPE ledger_settled,
    ALTER COLUMN unsettled TYPE ledger_unsettled,
    ALTER COLUMN held TYPE ledger_held;
CREATE VIEW ledger_account_balances AS
SELECT a.id, a.user_id, a.asset, a.kind,
       CASE WHEN a.kind IN ('cash_settled', 'position_settled') THEN b.settled
            WHEN a.kind IN ('cash_unsettled', 'position_unsettled') THEN b.unsettled
            ELSE b.held END AS balance
FROM ledger_accounts a
JOIN ledger_balances b ON b.user_id = a.user_id AND b.asset = a.asset;

-- 0008's lock, its balances cast from their domains to the row type's bigint.
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
                AND kind IN ('cash_settled', 'position_settled')), b.settled::bigint,
           (SELECT id FROM ledger_accounts WHERE user_id = p_user_id AND asset = b.asset
                AND kind IN ('cash_unsettled', 'position_unsettled')), b.unsettled::bigint,
           (SELECT id FROM ledger_accounts WHERE user_id = p_user_id AND asset = b.asset
                AND kind IN ('cash_held', 'position_held')), b.held::bigint
    FROM (SELECT * FROM ledger_balances
          WHERE user_id = p_user_id AND asset = ANY(p_assets)
          ORDER BY asset COLLATE "C" FOR UPDATE) b;
END;
$$;

DROP FUNCTION ledger_post(uuid, bigint, bigint, bytea, text, text, bytea, timestamptz, date,
    jsonb, bigint[], text[], bigint[], text[]);

-- 0008's posting (same arguments, same rows written), checked whole: the chain moves only
-- when every asset's entries sum to zero. Returns the new chain head.
CREATE FUNCTION ledger_post(
    p_id uuid, p_user_id bigint, p_seq bigint, p_prev bytea, p_kind text, p_key text,
    p_request_hash bytea, p_effective_at timestamptz, p_settlement_date date, p_metadata jsonb,
    p_account_ids bigint[], p_assets text[], p_amounts bigint[], p_buckets text[]
) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
    v_head bytea;
    v_setting text;
    unbalanced record;
BEGIN
    v_setting := set_config('ledger.posting', 'on', true);
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
    ), d AS (
        -- Per asset: what the entries move in each user balance, and their sum (zero when
        -- the posting balances). Computed once, for the balance rows and the check.
        SELECT e.asset, sum(e.amount) AS total, bool_or(e.bucket IS NOT NULL) AS moves_user,
               coalesce(sum(e.amount) FILTER (WHERE e.bucket = 'settled'), 0) AS settled,
               coalesce(sum(e.amount) FILTER (WHERE e.bucket = 'unsettled'), 0) AS unsettled,
               coalesce(sum(e.amount) FILTER (WHERE e.bucket = 'held'), 0) AS held
        FROM e GROUP BY e.asset
    ), b AS (
        UPDATE ledger_balances b
        SET settled = b.settled + d.settled, unsettled = b.unsettled + d.unsettled,
            held = b.held + d.held
        FROM d
        WHERE b.user_id = p_user_id AND b.asset = d.asset AND d.moves_user
    )
    UPDATE ledger_chains SET seq = p_seq, head = (SELECT hash FROM t)
    WHERE user_id = p_user_id AND seq = p_seq - 1 AND head = p_prev
      AND NOT EXISTS (SELECT FROM d WHERE d.total <> 0)
    RETURNING head INTO v_head;
    IF v_head IS NULL THEN
        -- The rows written above go with the error (the statement's transaction aborts).
        SELECT x.asset, sum(x.amount) AS total INTO unbalanced
        FROM unnest(p_assets, p_amounts) AS x (asset, amount)
        GROUP BY x.asset HAVING sum(x.amount) <> 0 LIMIT 1;
        IF FOUND THEN
            PERFORM ledger_raise_unbalanced(p_id, unbalanced.asset, unbalanced.total);
        END IF;
        RAISE EXCEPTION 'ledger chain of user % moved under a caller that held its lock', p_user_id;
    END IF;
    v_setting := set_config('ledger.posting', '', true);
    RETURN v_head;
END;
$$;
ALTER FUNCTION ledger_post(uuid, bigint, bigint, bytea, text, text, bytea, timestamptz, date,
    jsonb, bigint[], text[], bigint[], text[]) SET enable_seqscan = off;

DROP TRIGGER ledger_transactions_balanced ON ledger_transactions;
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.request_hash IS NULL)
    EXECUTE FUNCTION ledger_check_transaction_balanced();

-- After each INSERT statement on ledger_entries that is not a posting's own: 0008's function,
-- with a posting's transaction (it has a request hash) closed to every later entry.

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
               t.created_xact <> pg_current_xact_id() OR t.xmax <> '0'::xid
                   OR t.request_hash IS NOT NULL AS closed
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
-- 0008's hold: the same locks, checks, entries and receipt; the accounts named by the balance
-- row, the key's lookup inline, the posting run as an expression.
CREATE OR REPLACE FUNCTION ledger_place_hold(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_asset text, p_amount bigint, p_order_id text, p_effective_at timestamptz
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_hold uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'hold', v_hold, NULL);
    v_head bytea;
    v_seq bigint;
    v_prev bytea;
    v_power bigint;
    v_settled_account bigint;
    v_held_account bigint;
    v_broker_account bigint;
BEGIN
    -- Locks 2 and 3: the chain head, then the balance row (one row: one asset), which names
    -- the accounts of the posting.
    SELECT c.seq, c.head, b.settled + b.unsettled - b.held, b.settled_account, b.held_account,
           b.broker_holds_account
    INTO v_seq, v_prev, v_power, v_settled_account, v_held_account, v_broker_account
    FROM ledger_chains c JOIN ledger_balances b ON b.user_id = c.user_id AND b.asset = p_asset
    WHERE c.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledger_unknown_user(p_user_id);
    END IF;
    IF num_nulls(v_settled_account, v_held_account, v_broker_account) > 0 THEN
        -- Opened while another transaction was creating the broker's accounts of the asset:
        -- derived again, now, under the row's lock (see ledger_derive_balance_accounts).
        UPDATE ledger_balances SET settled_account = NULL
        WHERE user_id = p_user_id AND asset = p_asset
        RETURNING settled_account, held_account, broker_holds_account
        INTO v_settled_account, v_held_account, v_broker_account;
    END IF;
    -- ledger_replay's lookup, inline for the usual new key. The ORDER BY is the key index's
    -- own order: on a small journal the planner costs that index and the chain-position one
    -- (user_id, chain_seq) alike, and took the latter in a benchmark session, filtering all of
    -- the user's transactions per call; with it, only the key index needs no sort.
    PERFORM FROM ledger_transactions WHERE user_id = p_user_id AND idempotency_key = p_key
    ORDER BY user_id, idempotency_key;
    IF FOUND THEN
        RETURN ledger_replay(p_user_id, p_key, 'place_hold', p_request_hash);
    END IF;
    IF p_amount > v_power THEN
        PERFORM ledger_raise_insufficient(v_settled_account, p_amount, v_power,
            CASE WHEN p_asset = 'USD' THEN 'buying power' ELSE 'position' END);
    END IF;
    INSERT INTO ledger_holds (id, user_id, asset, amount, remaining, order_id)
    VALUES (v_hold, p_user_id, p_asset, p_amount, p_amount, p_order_id);
    v_head := ledger_post(v_tx, p_user_id, v_seq + 1, v_prev, 'hold', p_key, p_request_hash,
        p_effective_at, NULL,
        jsonb_build_object('hold_id', v_hold::text, 'order_id', p_order_id),
        ARRAY[v_held_account, v_broker_account], ARRAY[p_asset, p_asset],
        ARRAY[p_amount, -p_amount],
        ARRAY['held', NULL]);
    RETURN v_receipt;
END;
$$;

-- 0008's fill: the same locks, checks, entries and receipt; the accounts named by the balance
-- rows, the key's lookup inline, the posting run as an expression.
CREATE OR REPLACE FUNCTION ledger_book_fill(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_symbol text, p_side text, p_quantity bigint, p_price bigint, p_fee bigint,
    p_executed_at timestamptz, p_trade_date date, p_settlement_date date, p_hold_id uuid
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'fill', p_hold_id, p_settlement_date);
    v_head bytea;
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
    v_rows int;
    v_derived boolean := false;
    v_ids bigint[];
    v_assets text[];
    v_amounts bigint[];
    v_buckets text[];
BEGIN
    -- Locks 2 and 3: the chain head, then the balance rows of cash and the symbol, in asset
    -- order (the join yields the chain row first, with the first balance row). They name the
    -- accounts of the posting; a row opened while another transaction was creating the
    -- broker's accounts of its asset misses some, and is derived again under its lock.
    LOOP
        v_rows := 0;
        FOR r IN
            SELECT c.seq, c.head, b.asset, b.settled, b.unsettled, b.held, b.settled_account,
                   b.unsettled_account, b.held_account, b.broker_holds_account,
                   b.broker_street_account, b.broker_fees_account
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
        EXIT WHEN v_derived OR num_nulls(cash.settled_account, cash.unsettled_account,
            cash.held_account, cash.broker_holds_account, cash.broker_street_account,
            cash.broker_fees_account, pos.settled_account, pos.unsettled_account,
            pos.held_account, pos.broker_holds_account, pos.broker_street_account) = 0;
        UPDATE ledger_balances SET settled_account = NULL
        WHERE user_id = p_user_id AND asset IN ('USD', p_symbol);
        v_derived := true;
    END LOOP;
    -- The key, as in ledger_place_hold.
    PERFORM FROM ledger_transactions WHERE user_id = p_user_id AND idempotency_key = p_key
    ORDER BY user_id, idempotency_key;
    IF FOUND THEN
        RETURN ledger_replay(p_user_id, p_key, 'book_fill', p_request_hash);
    END IF;
    IF p_hold_id IS NOT NULL THEN
        SELECT remaining INTO v_remaining FROM ledger_holds
        WHERE id = p_hold_id AND user_id = p_user_id AND asset = v_hold_asset FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM ledger_unknown_hold(p_hold_id, p_user_id);
        END IF;
    END IF;
    IF p_side = 'buy' THEN
        v_total := v_notional + p_fee;
        v_consumed := least(v_remaining, v_total);
        v_free := cash.settled + cash.unsettled - cash.held + v_consumed;
        IF v_total > v_free THEN
            PERFORM ledger_raise_insufficient(cash.settled_account, v_total, v_free,
                'buying power');
        END IF;
        v_from_settled := least(v_total, cash.settled);
        v_ids := ARRAY[cash.held_account, cash.broker_holds_account, cash.settled_account,
                       cash.unsettled_account, cash.broker_street_account,
                       cash.broker_fees_account, pos.broker_street_account, pos.unsettled_account];
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
            PERFORM ledger_raise_insufficient(pos.settled_account, p_quantity, v_free, 'position');
        END IF;
        v_from_settled := least(p_quantity, pos.settled);
        v_ids := ARRAY[pos.held_account, pos.broker_holds_account, pos.settled_account,
                       pos.unsettled_account, pos.broker_street_account,
                       cash.broker_street_account, cash.unsettled_account,
                       cash.broker_fees_account];
        v_assets := ARRAY[p_symbol, p_symbol, p_symbol, p_symbol, p_symbol, 'USD', 'USD', 'USD'];
        v_amounts := ARRAY[-v_consumed, v_consumed, -v_from_settled,
                           -(p_quantity - v_from_settled), p_quantity, -v_notional,
                           v_notional - p_fee, p_fee];
        v_buckets := ARRAY['held', NULL, 'settled', 'unsettled', NULL, NULL, 'unsettled', NULL];
    END IF;
    IF v_consumed > 0 THEN
        UPDATE ledger_holds SET remaining = remaining - v_consumed WHERE id = p_hold_id;
    END IF;
    v_head := ledger_post(v_tx, p_user_id, v_seq + 1, v_prev, 'fill', p_key, p_request_hash,
        p_executed_at, p_settlement_date,
        jsonb_build_object('symbol', p_symbol, 'side', p_side, 'quantity', p_quantity,
                           'price_cents', p_price, 'fee_cents', p_fee,
                           'trade_date', to_char(p_trade_date, 'YYYY-MM-DD'),
                           'hold_id', p_hold_id::text),
        v_ids, v_assets, v_amounts, v_buckets);
    RETURN v_receipt;
END;
$$;


-- Every lookup of the order path goes by a unique index. Plans are made once per session,
-- often while the journal is still small, when a sequential scan of ledger_transactions looks
-- cheaper than the index; that plan was then kept while the table grew (the key lookup took
-- ~300 us per call in a benchmark session). Sequential scans are ruled out for these two.
ALTER FUNCTION ledger_place_hold(bigint, text, bytea, text, bigint, text, timestamptz)
    SET enable_seqscan = off;
ALTER FUNCTION ledger_book_fill(bigint, text, bytea, text, text, bigint, bigint, bigint,
    timestamptz, date, date, uuid) SET enable_seqscan = off;
