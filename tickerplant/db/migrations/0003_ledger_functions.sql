-- Each ledger operation as one PL/pgSQL function, so the Python adapter (`ledger/journal.py`)
-- books it in one round trip: claim the idempotency key, lock, check, write the entries and
-- advance the user's hash chain, all server-side. The invariants of 0002 (zero-sum per asset,
-- non-negative balances, holds covered, append-only journal, cached balances) stay enforced by
-- its triggers and constraints; these functions only stop doing it from the client.
--
-- Lock order (as in 0002 and `ledger.journal`), so two ledger transactions can only ever wait
-- for each other in one direction:
--   1. the idempotency row (user_id, key): a concurrent request with the same key waits on the
--      unique index, then sees the first one's committed result;
--   2. the user's chain head (ledger_chains);
--   3. the user's balance rows of the assets involved, FOR UPDATE in account-id order;
--   4. the hold row, when the operation consumes one.
--
-- Errors are raised with SQLSTATEs of the TPL class and a JSON DETAIL carrying the fields of
-- the Python error class they map to (`ledger.journal.translate`):
--   TPL10 insufficient funds  {account_id, needed, available, what}
--   TPL11 idempotency conflict {key, operation, original_operation}
--   TPL12 unknown hold         {hold_id, user_id}
--   TPL13 invalid TOTP code    {user_id, reason}
--   TPL14 invalid amount       {field, value, reason}
--   TPL15 unknown account      {user_id}
-- The operations' arithmetic mirrors `ledger.rules` (the pure reference, unit-tested there).

-- The audit hash's canonical form 2: SHA-256 over the previous hash and PostgreSQL's own jsonb
-- text of the transaction document, which `ledger.audit.jsonb_text` rebuilds byte for byte.
-- Rows hashed before this migration keep form 1 (Python's json.dumps) and verify as such.
ALTER TABLE ledger_transactions
    ADD COLUMN hash_form smallint NOT NULL DEFAULT 1 CHECK (hash_form IN (1, 2));
ALTER TABLE ledger_transactions ALTER COLUMN hash_form SET DEFAULT 2;

CREATE FUNCTION ledger_canonical(
    p_id uuid, p_user_id bigint, p_seq bigint, p_kind text, p_key text,
    p_effective_at timestamptz, p_settlement_date date, p_metadata jsonb, p_entries jsonb
) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(jsonb_build_object(
        'id', p_id::text,
        'user_id', p_user_id,
        'seq', p_seq,
        'kind', p_kind,
        'idempotency_key', p_key,
        'effective_at', to_char(p_effective_at AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
        'settlement_date', to_char(p_settlement_date, 'YYYY-MM-DD'),
        'metadata', p_metadata,
        'entries', p_entries
    )::text, 'UTF8')
$$;

-- One balanced transaction: its row, its entries (zero amounts dropped) and the new chain head.
-- Takes the chain lock itself (a no-op when the caller holds it already). Entries are hashed
-- sorted by (account, asset, amount), as `ledger.audit.canonical_content` sorts them.
CREATE FUNCTION ledger_append(
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

-- Claim (user, key) for a request whose receipt is already known (ids are drawn up front).
-- NULL when claimed; the original receipt when the same request was booked before. The row
-- is written with the receipt, so an operation that fails later rolls the claim back too.
CREATE FUNCTION ledger_claim_key(
    p_user_id bigint, p_key text, p_operation text, p_request_hash bytea, p_receipt jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
BEGIN
    INSERT INTO ledger_idempotency (user_id, key, operation, request_hash, result)
    VALUES (p_user_id, p_key, p_operation, p_request_hash, p_receipt)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    -- A new snapshot (READ COMMITTED, volatile function): sees the winner's committed row.
    SELECT operation, request_hash, result INTO v_row
    FROM ledger_idempotency WHERE user_id = p_user_id AND key = p_key;
    IF v_row.operation <> p_operation OR v_row.request_hash <> p_request_hash THEN
        RAISE EXCEPTION USING ERRCODE = 'TPL11',
            MESSAGE = format('idempotency key %L was already used for a different request (%s);'
                             ' use a new key for a new %s', p_key, v_row.operation, p_operation),
            DETAIL = jsonb_build_object('key', p_key, 'operation', p_operation,
                                        'original_operation', v_row.operation)::text;
    END IF;
    RETURN v_row.result;
END;
$$;

-- A user's three balance rows of one asset, as locked.
CREATE TYPE ledger_balance AS (
    asset text,
    settled_id bigint, settled bigint,
    unsettled_id bigint, unsettled bigint,
    held_id bigint, held bigint
);

-- Lock the chain head, then the user's balance rows of p_assets in account-id order, and
-- return them per asset. Raises TPL15 when the user has no chain (no such user).
CREATE FUNCTION ledger_lock(p_user_id bigint, p_assets text[])
RETURNS SETOF ledger_balance LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM ledger_chains WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'TPL15',
            MESSAGE = format('no user %s: ledger accounts need an existing user', p_user_id),
            DETAIL = jsonb_build_object('user_id', p_user_id)::text;
    END IF;
    RETURN QUERY
    SELECT l.asset,
           max(l.id) FILTER (WHERE l.kind LIKE '%\_settled'),
           max(l.balance) FILTER (WHERE l.kind LIKE '%\_settled'),
           max(l.id) FILTER (WHERE l.kind LIKE '%\_unsettled'),
           max(l.balance) FILTER (WHERE l.kind LIKE '%\_unsettled'),
           max(l.id) FILTER (WHERE l.kind LIKE '%\_held'),
           max(l.balance) FILTER (WHERE l.kind LIKE '%\_held')
    FROM (SELECT a.id, a.asset, a.kind, a.balance FROM ledger_accounts a
          WHERE a.user_id = p_user_id AND a.asset = ANY(p_assets)
          ORDER BY a.id FOR UPDATE) l
    GROUP BY l.asset;
END;
$$;

CREATE FUNCTION ledger_broker_account(p_asset text, p_kind text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO STRICT v_id FROM ledger_accounts
    WHERE user_id IS NULL AND asset = p_asset AND kind = p_kind;
    RETURN v_id;
END;
$$;

CREATE FUNCTION ledger_raise_insufficient(
    p_account_id bigint, p_needed bigint, p_available bigint, p_what text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TPL10',
        MESSAGE = format('insufficient %s in account %s: needed %s, available %s',
                         p_what, p_account_id, p_needed, p_available),
        DETAIL = jsonb_build_object('account_id', p_account_id, 'needed', p_needed,
                                    'available', p_available, 'what', p_what)::text;
END;
$$;

CREATE FUNCTION ledger_unknown_hold(p_hold_id uuid, p_user_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TPL12',
        MESSAGE = format('no open hold %s for user %s', p_hold_id, p_user_id),
        DETAIL = jsonb_build_object('hold_id', p_hold_id, 'user_id', p_user_id)::text;
END;
$$;

CREATE FUNCTION ledger_receipt(
    p_transaction_id uuid, p_kind text, p_hold_id uuid, p_settlement_date date
) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('transaction_id', p_transaction_id::text, 'kind', p_kind,
                              'hold_id', p_hold_id::text,
                              'settlement_date', to_char(p_settlement_date, 'YYYY-MM-DD'))
$$;

-- External bank → the user's settled cash.
CREATE FUNCTION ledger_deposit(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_amount bigint, p_metadata jsonb, p_effective_at timestamptz
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'deposit', NULL, NULL);
    v_original jsonb;
    cash ledger_balance;
BEGIN
    v_original := ledger_claim_key(p_user_id, p_key, 'deposit', p_request_hash, v_receipt);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    SELECT * INTO cash FROM ledger_lock(p_user_id, ARRAY['USD']);
    PERFORM ledger_append(v_tx, p_user_id, 'deposit', p_key, p_effective_at, NULL, p_metadata,
        ARRAY[ledger_broker_account('USD', 'broker_bank'), cash.settled_id],
        ARRAY['USD', 'USD'], ARRAY[-p_amount, p_amount]);
    RETURN v_receipt;
END;
$$;

-- The user's settled cash not held → external bank. p_totp_problem is the client's verdict on
-- the one-time code (NULL: valid); it is raised after the funds check, as before, and not at
-- all when the key replays a booked request (a retry carries a fresh code).
CREATE FUNCTION ledger_withdraw(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_amount bigint, p_metadata jsonb, p_effective_at timestamptz, p_totp_problem text
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'withdrawal', NULL, NULL);
    v_original jsonb;
    cash ledger_balance;
    v_withdrawable bigint;
BEGIN
    v_original := ledger_claim_key(p_user_id, p_key, 'withdraw', p_request_hash, v_receipt);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    SELECT * INTO cash FROM ledger_lock(p_user_id, ARRAY['USD']);
    -- settled - holds on settled; holds are charged to settled cash first.
    v_withdrawable := cash.settled - least(cash.held, cash.settled);
    IF p_amount > v_withdrawable THEN
        PERFORM ledger_raise_insufficient(cash.settled_id, p_amount, v_withdrawable,
                                          'withdrawable cash');
    END IF;
    IF p_totp_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'TPL13',
            MESSAGE = format('two-factor code refused for user %s: %s', p_user_id, p_totp_problem),
            DETAIL = jsonb_build_object('user_id', p_user_id, 'reason', p_totp_problem)::text;
    END IF;
    PERFORM ledger_append(v_tx, p_user_id, 'withdrawal', p_key, p_effective_at, NULL, p_metadata,
        ARRAY[cash.settled_id, ledger_broker_account('USD', 'broker_bank')],
        ARRAY['USD', 'USD'], ARRAY[-p_amount, p_amount]);
    RETURN v_receipt;
END;
$$;

-- Reserve p_amount of p_asset (cents for a buy, shares for a sell) within buying power.
CREATE FUNCTION ledger_place_hold(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_asset text, p_amount bigint, p_order_id text, p_effective_at timestamptz
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_hold uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'hold', v_hold, NULL);
    v_original jsonb;
    b ledger_balance;
    v_power bigint;
BEGIN
    v_original := ledger_claim_key(p_user_id, p_key, 'place_hold', p_request_hash, v_receipt);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    SELECT * INTO b FROM ledger_lock(p_user_id, ARRAY[p_asset]);
    v_power := b.settled + b.unsettled - b.held;
    IF p_amount > v_power THEN
        PERFORM ledger_raise_insufficient(b.settled_id, p_amount, v_power,
            CASE WHEN p_asset = 'USD' THEN 'buying power' ELSE 'position' END);
    END IF;
    INSERT INTO ledger_holds (id, user_id, asset, amount, remaining, order_id)
    VALUES (v_hold, p_user_id, p_asset, p_amount, p_amount, p_order_id);
    PERFORM ledger_append(v_tx, p_user_id, 'hold', p_key, p_effective_at, NULL,
        jsonb_build_object('hold_id', v_hold::text, 'order_id', p_order_id),
        ARRAY[b.held_id, ledger_broker_account(p_asset, 'broker_holds')],
        ARRAY[p_asset, p_asset], ARRAY[p_amount, -p_amount]);
    RETURN v_receipt;
END;
$$;

-- Give back what remains of a hold; a hold with nothing left is not open (TPL12).
CREATE FUNCTION ledger_release_hold(
    p_user_id bigint, p_key text, p_request_hash bytea, p_hold_id uuid,
    p_effective_at timestamptz
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'hold_release', p_hold_id, NULL);
    v_original jsonb;
    v_asset text;
    v_remaining bigint;
    b ledger_balance;
BEGIN
    v_original := ledger_claim_key(p_user_id, p_key, 'release_hold', p_request_hash, v_receipt);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    -- A hold's asset never changes: read it unlocked to know which balances to lock.
    SELECT asset INTO v_asset FROM ledger_holds WHERE id = p_hold_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        PERFORM ledger_unknown_hold(p_hold_id, p_user_id);
    END IF;
    SELECT * INTO b FROM ledger_lock(p_user_id, ARRAY[v_asset]);
    SELECT remaining INTO v_remaining FROM ledger_holds WHERE id = p_hold_id FOR UPDATE;
    IF v_remaining = 0 THEN
        PERFORM ledger_unknown_hold(p_hold_id, p_user_id);
    END IF;
    UPDATE ledger_holds SET remaining = 0 WHERE id = p_hold_id;
    PERFORM ledger_append(v_tx, p_user_id, 'hold_release', p_key, p_effective_at, NULL,
        jsonb_build_object('hold_id', p_hold_id::text),
        ARRAY[b.held_id, ledger_broker_account(v_asset, 'broker_holds')],
        ARRAY[v_asset, v_asset], ARRAY[-v_remaining, v_remaining]);
    RETURN v_receipt;
END;
$$;

-- An execution: cash ↔ shares with the street into the unsettled accounts, the fee to the
-- broker. The order's hold (if any) is consumed first; what the fill needs must then fit in
-- buying power (or the position, for a sell), so other orders' holds stay covered. A buy pays
-- from settled cash first; a sell delivers settled shares first. As `ledger.rules.fill`.
CREATE FUNCTION ledger_book_fill(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_symbol text, p_side text, p_quantity bigint, p_price bigint, p_fee bigint,
    p_executed_at timestamptz, p_trade_date date, p_settlement_date date, p_hold_id uuid
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'fill', p_hold_id, p_settlement_date);
    v_original jsonb;
    v_hold_asset text := CASE WHEN p_side = 'buy' THEN 'USD' ELSE p_symbol END;
    v_remaining bigint := 0;
    v_notional bigint := p_quantity * p_price;
    v_total bigint;
    v_consumed bigint;
    v_free bigint;
    v_from_settled bigint;
    r ledger_balance;
    cash ledger_balance;
    pos ledger_balance;
    v_ids bigint[];
    v_assets text[];
    v_amounts bigint[];
BEGIN
    v_original := ledger_claim_key(p_user_id, p_key, 'book_fill', p_request_hash, v_receipt);
    IF v_original IS NOT NULL THEN
        RETURN v_original;
    END IF;
    FOR r IN SELECT * FROM ledger_lock(p_user_id, ARRAY['USD', p_symbol]) LOOP
        IF r.asset = 'USD' THEN cash := r; ELSE pos := r; END IF;
    END LOOP;
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
            PERFORM ledger_raise_insufficient(cash.settled_id, v_total, v_free, 'buying power');
        END IF;
        v_from_settled := least(v_total, cash.settled);
        v_ids := ARRAY[cash.held_id, ledger_broker_account('USD', 'broker_holds'),
                       cash.settled_id, cash.unsettled_id,
                       ledger_broker_account('USD', 'broker_street'),
                       ledger_broker_account('USD', 'broker_fees'),
                       ledger_broker_account(p_symbol, 'broker_street'), pos.unsettled_id];
        v_assets := ARRAY['USD', 'USD', 'USD', 'USD', 'USD', 'USD', p_symbol, p_symbol];
        v_amounts := ARRAY[-v_consumed, v_consumed, -v_from_settled, -(v_total - v_from_settled),
                           v_notional, p_fee, -p_quantity, p_quantity];
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
            PERFORM ledger_raise_insufficient(pos.settled_id, p_quantity, v_free, 'position');
        END IF;
        v_from_settled := least(p_quantity, pos.settled);
        v_ids := ARRAY[pos.held_id, ledger_broker_account(p_symbol, 'broker_holds'),
                       pos.settled_id, pos.unsettled_id,
                       ledger_broker_account(p_symbol, 'broker_street'),
                       ledger_broker_account('USD', 'broker_street'),
                       cash.unsettled_id, ledger_broker_account('USD', 'broker_fees')];
        v_assets := ARRAY[p_symbol, p_symbol, p_symbol, p_symbol, p_symbol, 'USD', 'USD', 'USD'];
        v_amounts := ARRAY[-v_consumed, v_consumed, -v_from_settled,
                           -(p_quantity - v_from_settled), p_quantity, -v_notional,
                           v_notional - p_fee, p_fee];
    END IF;
    IF v_consumed > 0 THEN
        UPDATE ledger_holds SET remaining = remaining - v_consumed WHERE id = p_hold_id;
    END IF;
    PERFORM ledger_append(v_tx, p_user_id, 'fill', p_key, p_executed_at, p_settlement_date,
        jsonb_build_object('symbol', p_symbol, 'side', p_side, 'quantity', p_quantity,
                           'price_cents', p_price, 'fee_cents', p_fee,
                           'trade_date', to_char(p_trade_date, 'YYYY-MM-DD'),
                           'hold_id', p_hold_id::text),
        v_ids, v_assets, v_amounts);
    RETURN v_receipt;
END;
$$;
