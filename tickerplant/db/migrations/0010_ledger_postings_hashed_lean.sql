-- Cheaper postings with the same guarantees, and durable commits for money (issue 6;
-- benchmarks/README.md, "Sixth pass"). Measured on one backend, server CPU per hold or fill:
--
--   * Hash form 3 for postings. 0008's form 2 hashes PostgreSQL's jsonb text of a document
--     built per posting (jsonb_build_object of nine keys, a jsonb_agg of the entries sorted by
--     account, asset and amount): ~44 us of ~350. Form 3 hashes the same fields, most in
--     their binary send forms, the entries in their posting order (~20 us less). Every other
--     transaction (deposits, withdrawals, releases, settlements) keeps form 2; a chain may mix
--     them, each row naming its own form. ledger.audit.canonical_content rebuilds both.
--   * The journal's single-column CHECKs become domains, like the order path's in 0009: a
--     table's CHECKs are read back from their text (stringToNode) by every statement that
--     writes the table. Done without rewriting the journal: each column is retyped to a domain
--     with no constraint yet (binary coercible: no rewrite, the indexes are kept), then the
--     domain gets the constraint under the same name, which checks the existing rows once.
--   * Money is committed durably. The two functions that write journal transactions
--     (ledger_post for holds and fills, ledger_append for every other operation and the
--     settle job) set synchronous_commit = on for their database transaction (SET LOCAL), so
--     a ledger transaction is on disk (and on synchronous standbys) when its caller hears of
--     it, whatever the server's or the session's default: a server tuned with
--     synchronous_commit = off for market data must not lose an acknowledged deposit, hold or
--     fill in a crash. (With fsync off, as on the test server, this is also cheaper: the
--     committing backend writes its WAL itself instead of signalling the WAL writer.)
--   * The fill locks its chain and balance rows with one SELECT INTO (the statement is
--     written once per lock order) instead of a loop over a sorted query (a cursor).
--   * The chain-position index becomes partial so the key lookup is never planned on it
--     (see below).
--
-- Form 3, the bytes hashed after the previous hash (integers big-endian, as PostgreSQL's
-- binary send functions write them):
--
--   id (16 bytes) | user_id (int64) | chain_seq (int64)
--   | effective_at (int64, microseconds since 2000-01-01 00:00 UTC)
--   | settlement_date (0x00 when NULL, else 0x01 and int32 days since 2000-01-01)
--   | UTF-8 of '[' kind ',' idempotency key ',' metadata ']', kind and key as JSON strings
--     (the key JSON null when NULL), the metadata as its jsonb text
--   | each entry, in id order: account_id (int64) | amount (int64) | UTF-8 JSON string of
--     its asset
--
-- Every field is fixed-width or self-delimiting, so two different contents never give the
-- same bytes.

CREATE DOMAIN ledger_chain_position AS bigint;
CREATE DOMAIN ledger_hash_form AS smallint;
CREATE DOMAIN ledger_entry_amount AS bigint;
ALTER TABLE ledger_transactions
    DROP CONSTRAINT ledger_transactions_chain_seq_check,
    DROP CONSTRAINT ledger_transactions_hash_form_check,
    ALTER COLUMN chain_seq TYPE ledger_chain_position,
    ALTER COLUMN hash_form TYPE ledger_hash_form;
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_amount_check,
    ALTER COLUMN amount TYPE ledger_entry_amount;
ALTER DOMAIN ledger_chain_position
    ADD CONSTRAINT ledger_transactions_chain_seq_check CHECK (VALUE > 0);
ALTER DOMAIN ledger_hash_form
    ADD CONSTRAINT ledger_transactions_hash_form_check CHECK (VALUE BETWEEN 1 AND 3);
ALTER DOMAIN ledger_entry_amount
    ADD CONSTRAINT ledger_entries_amount_check CHECK (VALUE <> 0);

-- 0009's posting (same arguments, rows, checks and result), hashed in form 3, committed
-- durably.
CREATE OR REPLACE FUNCTION ledger_post(
    p_id uuid, p_user_id bigint, p_seq bigint, p_prev bytea, p_kind text, p_key text,
    p_request_hash bytea, p_effective_at timestamptz, p_settlement_date date, p_metadata jsonb,
    p_account_ids bigint[], p_assets text[], p_amounts bigint[], p_buckets text[]
) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
    v_head bytea;
    v_setting text;
    unbalanced record;
BEGIN
    -- Durable commits for money (see ledger_append below).
    v_setting := set_config('synchronous_commit', 'on', true);
    v_setting := set_config('ledger.posting', 'on', true);
    WITH e AS (
        SELECT x.account_id, x.asset, x.amount, x.bucket, x.ord
        FROM unnest(p_account_ids, p_assets, p_amounts, p_buckets) WITH ORDINALITY
            AS x (account_id, asset, amount, bucket, ord)
        WHERE x.amount <> 0
    ), h AS (
        -- Hash form 3 (see the header): the entries in their posting order, which is also
        -- the order of their ids (the INSERT below takes them ORDER BY e.ord).
        SELECT sha256(p_prev || uuid_send(p_id) || int8send(p_user_id) || int8send(p_seq)
            || timestamptz_send(p_effective_at)
            || coalesce('\x01'::bytea || date_send(p_settlement_date), '\x00')
            || convert_to('[' || to_json(p_kind)::text || ','
                          || coalesce(to_json(p_key)::text, 'null') || ','
                          || p_metadata::text || ']', 'UTF8')
            || j.entries) AS hash
        FROM (SELECT coalesce(string_agg(int8send(e.account_id) || int8send(e.amount)
                                         || convert_to(to_json(e.asset)::text, 'UTF8'),
                                         '\x' ORDER BY e.ord), '\x') AS entries
              FROM e) j
    ), t AS (
        INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, idempotency_key,
            effective_at, settlement_date, metadata, prev_hash, hash, hash_form, request_hash)
        SELECT p_id, p_user_id, p_seq, p_kind, p_key, p_effective_at, p_settlement_date,
            p_metadata, p_prev, h.hash, 3, p_request_hash FROM h
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

-- The chain-position index becomes a partial index whose predicate always holds (chain_seq > 0
-- is the domain's own check), so it still covers and keeps unique every row. Its predicate is
-- there for the planner: a partial index serves only queries whose WHERE implies it, and the
-- idempotency-key lookup (user_id, idempotency_key) does not. Both indexes lead with user_id,
-- and on a small or never-analysed journal the planner costs them alike: sessions that planned
-- the key lookup early took this one, filtering every transaction of the user per lookup
-- (~150 us per operation after 10 s of one client), and kept that plan until autovacuum's
-- ANALYZE. 0009's ORDER BY did not prevent it: the planner drops an ORDER BY on columns fixed
-- by equalities. Queries by chain position (verify, statements) say chain_seq > 0.
CREATE UNIQUE INDEX ledger_transactions_chain_position_new ON ledger_transactions
    (user_id, chain_seq) WHERE chain_seq > 0;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_chain_position;
ALTER INDEX ledger_transactions_chain_position_new RENAME TO ledger_transactions_chain_position;

-- 0009's hold: the same locks, checks, entries and receipt; the key's lookup without 0009's
-- ORDER BY (see the index above).
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
    -- ledger_replay's lookup, inline for the usual new key (only the key index can serve it:
    -- see ledger_transactions_chain_position above).
    PERFORM FROM ledger_transactions WHERE user_id = p_user_id AND idempotency_key = p_key;
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

-- 0009's fill: the same locks, checks, entries and receipt. The chain and both balance rows
-- are locked by one SELECT INTO rather than a loop over a sorted query (a cursor: ~15 us of
-- server CPU per fill); the key's lookup as in the hold.
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
    cash ledger_balances;
    pos ledger_balances;
    v_derived boolean := false;
    v_ids bigint[];
    v_assets text[];
    v_amounts bigint[];
    v_buckets text[];
BEGIN
    -- Locks 2 and 3: the chain head, then the balance rows of cash and the symbol, in asset
    -- order. One row of the three joined, locked in the order of the FROM list, which is
    -- why the statement is written twice. They name the accounts of the posting; a row
    -- opened while another transaction was creating the broker's accounts of its asset
    -- misses some, and is derived again under its lock.
    LOOP
        IF p_symbol COLLATE "C" < 'USD' THEN
            SELECT c.seq, c.head,
                   u.settled, u.unsettled, u.held, u.settled_account, u.unsettled_account,
                   u.held_account, u.broker_holds_account, u.broker_street_account,
                   u.broker_fees_account,
                   p.settled, p.unsettled, p.held, p.settled_account, p.unsettled_account,
                   p.held_account, p.broker_holds_account, p.broker_street_account
            INTO v_seq, v_prev,
                 cash.settled, cash.unsettled, cash.held, cash.settled_account,
                 cash.unsettled_account, cash.held_account, cash.broker_holds_account,
                 cash.broker_street_account, cash.broker_fees_account,
                 pos.settled, pos.unsettled, pos.held, pos.settled_account,
                 pos.unsettled_account, pos.held_account, pos.broker_holds_account,
                 pos.broker_street_account
            FROM ledger_chains c
            JOIN ledger_balances p ON p.user_id = c.user_id AND p.asset = p_symbol
            JOIN ledger_balances u ON u.user_id = c.user_id AND u.asset = 'USD'
            WHERE c.user_id = p_user_id FOR UPDATE;
        ELSE
            SELECT c.seq, c.head,
                   u.settled, u.unsettled, u.held, u.settled_account, u.unsettled_account,
                   u.held_account, u.broker_holds_account, u.broker_street_account,
                   u.broker_fees_account,
                   p.settled, p.unsettled, p.held, p.settled_account, p.unsettled_account,
                   p.held_account, p.broker_holds_account, p.broker_street_account
            INTO v_seq, v_prev,
                 cash.settled, cash.unsettled, cash.held, cash.settled_account,
                 cash.unsettled_account, cash.held_account, cash.broker_holds_account,
                 cash.broker_street_account, cash.broker_fees_account,
                 pos.settled, pos.unsettled, pos.held, pos.settled_account,
                 pos.unsettled_account, pos.held_account, pos.broker_holds_account,
                 pos.broker_street_account
            FROM ledger_chains c
            JOIN ledger_balances u ON u.user_id = c.user_id AND u.asset = 'USD'
            JOIN ledger_balances p ON p.user_id = c.user_id AND p.asset = p_symbol
            WHERE c.user_id = p_user_id FOR UPDATE;
        END IF;
        IF NOT FOUND OR p_symbol = 'USD' THEN
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
    PERFORM FROM ledger_transactions WHERE user_id = p_user_id AND idempotency_key = p_key;
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

ALTER FUNCTION ledger_place_hold(bigint, text, bytea, text, bigint, text, timestamptz)
    SET enable_seqscan = off;
ALTER FUNCTION ledger_book_fill(bigint, text, bytea, text, text, bigint, bigint, bigint,
    timestamptz, date, date, uuid) SET enable_seqscan = off;

-- 0003's ledger_append (deposits, withdrawals, releases, settlements), unchanged but for its
-- durable commit.
CREATE OR REPLACE FUNCTION ledger_append(
    p_id uuid, p_user_id bigint, p_kind text, p_key text, p_effective_at timestamptz,
    p_settlement_date date, p_metadata jsonb,
    p_account_ids bigint[], p_assets text[], p_amounts bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_prev bytea;
    v_entries jsonb;
    v_hash bytea;
BEGIN
    -- Its database transaction commits durably, whatever synchronous_commit says outside.
    PERFORM set_config('synchronous_commit', 'on', true);
    SELECT seq + 1, head INTO v_seq, v_prev
    FROM ledger_chains WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'TPL15',
            MESSAGE = format('no user %s: ledger accounts need an existing user', p_user_id),
            DETAIL = jsonb_build_object('user_id', p_user_id)::text;
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_array(e.account_id, e.asset, e.amount)
                              ORDER BY e.account_id, e.asset COLLATE "C", e.amount), '[]')
    INTO v_entries
    FROM unnest(p_account_ids, p_assets, p_amounts) AS e (account_id, asset, amount)
    WHERE e.amount <> 0;
    v_hash := sha256(v_prev || ledger_canonical(p_id, p_user_id, v_seq, p_kind, p_key,
        p_effective_at, p_settlement_date, p_metadata, v_entries));
    INSERT INTO ledger_transactions (id, user_id, chain_seq, kind, idempotency_key,
        effective_at, settlement_date, metadata, prev_hash, hash, hash_form)
    VALUES (p_id, p_user_id, v_seq, p_kind, p_key, p_effective_at, p_settlement_date,
        p_metadata, v_prev, v_hash, 2);
    INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)
    SELECT p_id, e.account_id, e.asset, e.amount
    FROM unnest(p_account_ids, p_assets, p_amounts) WITH ORDINALITY
        AS e (account_id, asset, amount, ord)
    WHERE e.amount <> 0
    ORDER BY e.ord;
    UPDATE ledger_chains SET seq = v_seq, head = v_hash WHERE user_id = p_user_id;
END;
$$;
