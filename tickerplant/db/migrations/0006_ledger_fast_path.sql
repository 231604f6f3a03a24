-- The ledger's fast path (issue 6: throughput). Same invariants as 0002/0003, enforced by the
-- same kinds of database objects, with less work per entry:
--
--   * cached balances: one statement-level trigger over the inserted rows (a transition table)
--     updates each touched user account once per INSERT statement, by the net amount, instead
--     of one row trigger (one PL/pgSQL call and one UPDATE) per entry. A fill writes 7 entries
--     in one statement, so 7 calls become 1 and 7 UPDATEs become the 3 or 4 user rows it moves.
--     Still the same transaction, still the balance CHECK (>= 0) on each updated row.
--   * place_hold and book_fill (the order path) lock inline in 0003's order, look the broker's
--     accounts up in one query instead of one function call per account, and write the hash,
--     the transaction row, its entries and the new chain head in one statement
--     (ledger_append_at). Their checks and entries are 0003's.
--   * TOTP replay protection for withdrawals (ledger_totp.last_step, at the end).

-- Cached balances follow the entries in the same statement. Broker rows (balance NULL) are
-- filtered by the WHERE, so they are never locked. Accounts a statement moves by a net zero
-- are not rewritten.
CREATE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts a SET balance = a.balance + d.amount
    FROM (SELECT account_id, sum(amount)::bigint AS amount
          FROM ledger_new_entries GROUP BY account_id HAVING sum(amount) <> 0) d
    WHERE a.id = d.account_id AND a.balance IS NOT NULL;
    RETURN NULL;
END;
$$;

DROP TRIGGER ledger_entries_apply ON ledger_entries;
DROP FUNCTION ledger_apply_entry();

CREATE TRIGGER ledger_entries_apply AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS ledger_new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_entries();

CREATE FUNCTION ledger_unknown_user(p_user_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TPL15',
        MESSAGE = format('no user %s: ledger accounts need an existing user', p_user_id),
        DETAIL = jsonb_build_object('user_id', p_user_id)::text;
END;
$$;

-- ledger_append for a caller that holds the chain lock and read (seq, head) under it: the
-- hash, the transaction row, its entries and the new chain head in one statement. The chain
-- UPDATE only matches the head the caller read, so a caller that did not hold the lock fails
-- loudly instead of forking the chain.
CREATE FUNCTION ledger_append_at(
    p_id uuid, p_user_id bigint, p_seq bigint, p_prev bytea, p_kind text, p_key text,
    p_effective_at timestamptz, p_settlement_date date, p_metadata jsonb,
    p_account_ids bigint[], p_assets text[], p_amounts bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH e AS (
        SELECT x.account_id, x.asset, x.amount, x.ord
        FROM unnest(p_account_ids, p_assets, p_amounts) WITH ORDINALITY
            AS x (account_id, asset, amount, ord)
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
            effective_at, settlement_date, metadata, prev_hash, hash, hash_form)
        SELECT p_id, p_user_id, p_seq, p_kind, p_key, p_effective_at, p_settlement_date,
            p_metadata, p_prev, h.hash, 2 FROM h
        RETURNING hash
    ), n AS (
        INSERT INTO ledger_entries (transaction_id, account_id, asset, amount)
        SELECT p_id, e.account_id, e.asset, e.amount FROM e ORDER BY e.ord
    )
    UPDATE ledger_chains SET seq = p_seq, head = (SELECT hash FROM t)
    WHERE user_id = p_user_id AND seq = p_seq - 1 AND head = p_prev;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger chain of user % moved under a caller that held its lock', p_user_id;
    END IF;
END;
$$;

-- The two operations of the order path (a hold per order, a fill per execution) take their
-- locks inline rather than through ledger_lock (a set-returning call per operation), in the
-- same order: the key, the chain head, then the balance rows FOR UPDATE in account-id order.
-- Their checks and entries are 0003's, unchanged.
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
    b ledger_balance;
    v_id bigint;
    v_kind text;
    v_balance bigint;
    v_broker bigint;
    v_power bigint;
BEGIN
    -- The key claim of ledger_claim_key, inline; a taken key goes through it for the replay.
    INSERT INTO ledger_idempotency (user_id, key, operation, request_hash, result)
    VALUES (p_user_id, p_key, 'place_hold', p_request_hash, v_receipt)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        v_original := ledger_claim_key(p_user_id, p_key, 'place_hold', p_request_hash,
                                       v_receipt);
        IF v_original IS NOT NULL THEN
            RETURN v_original;
        END IF;
    END IF;
    SELECT seq, head INTO v_seq, v_prev FROM ledger_chains WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledger_unknown_user(p_user_id);
    END IF;
    FOR v_id, v_kind, v_balance IN
        SELECT a.id, a.kind, a.balance FROM ledger_accounts a
        WHERE a.user_id = p_user_id AND a.asset = p_asset ORDER BY a.id FOR UPDATE
    LOOP
        CASE v_kind
            WHEN 'cash_settled', 'position_settled' THEN
                b.settled_id := v_id; b.settled := v_balance;
            WHEN 'cash_unsettled', 'position_unsettled' THEN
                b.unsettled_id := v_id; b.unsettled := v_balance;
            WHEN 'cash_held', 'position_held' THEN
                b.held_id := v_id; b.held := v_balance;
        END CASE;
    END LOOP;
    v_power := b.settled + b.unsettled - b.held;
    IF p_amount > v_power THEN
        PERFORM ledger_raise_insufficient(b.settled_id, p_amount, v_power,
            CASE WHEN p_asset = 'USD' THEN 'buying power' ELSE 'position' END);
    END IF;
    SELECT id INTO STRICT v_broker FROM ledger_accounts
    WHERE user_id IS NULL AND asset = p_asset AND kind = 'broker_holds';
    INSERT INTO ledger_holds (id, user_id, asset, amount, remaining, order_id)
    VALUES (v_hold, p_user_id, p_asset, p_amount, p_amount, p_order_id);
    PERFORM ledger_append_at(v_tx, p_user_id, v_seq + 1, v_prev, 'hold', p_key, p_effective_at,
        NULL,
        jsonb_build_object('hold_id', v_hold::text, 'order_id', p_order_id),
        ARRAY[b.held_id, v_broker], ARRAY[p_asset, p_asset], ARRAY[p_amount, -p_amount]);
    RETURN v_receipt;
END;
$$;

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
    cash ledger_balance;
    pos ledger_balance;
    v_usd_holds bigint;
    v_usd_street bigint;
    v_usd_fees bigint;
    v_sym_holds bigint;
    v_sym_street bigint;
    v_id bigint;
    v_asset text;
    v_kind text;
    v_balance bigint;
    v_ids bigint[];
    v_assets text[];
    v_amounts bigint[];
BEGIN
    -- The key claim of ledger_claim_key, inline; a taken key goes through it for the replay.
    INSERT INTO ledger_idempotency (user_id, key, operation, request_hash, result)
    VALUES (p_user_id, p_key, 'book_fill', p_request_hash, v_receipt)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        v_original := ledger_claim_key(p_user_id, p_key, 'book_fill', p_request_hash,
                                       v_receipt);
        IF v_original IS NOT NULL THEN
            RETURN v_original;
        END IF;
    END IF;
    SELECT seq, head INTO v_seq, v_prev FROM ledger_chains WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledger_unknown_user(p_user_id);
    END IF;
    -- Cash accounts are USD and positions never are, so the kind alone names the row.
    FOR v_id, v_kind, v_balance IN
        SELECT a.id, a.kind, a.balance FROM ledger_accounts a
        WHERE a.user_id = p_user_id AND a.asset IN ('USD', p_symbol) ORDER BY a.id FOR UPDATE
    LOOP
        CASE v_kind
            WHEN 'cash_settled' THEN cash.settled_id := v_id; cash.settled := v_balance;
            WHEN 'cash_unsettled' THEN cash.unsettled_id := v_id; cash.unsettled := v_balance;
            WHEN 'cash_held' THEN cash.held_id := v_id; cash.held := v_balance;
            WHEN 'position_settled' THEN pos.settled_id := v_id; pos.settled := v_balance;
            WHEN 'position_unsettled' THEN pos.unsettled_id := v_id; pos.unsettled := v_balance;
            WHEN 'position_held' THEN pos.held_id := v_id; pos.held := v_balance;
        END CASE;
    END LOOP;
    IF p_hold_id IS NOT NULL THEN
        SELECT remaining INTO v_remaining FROM ledger_holds
        WHERE id = p_hold_id AND user_id = p_user_id AND asset = v_hold_asset FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM ledger_unknown_hold(p_hold_id, p_user_id);
        END IF;
    END IF;
    -- The broker's accounts are never locked (no cached balance): one unlocked read.
    FOR v_id, v_asset, v_kind IN
        SELECT id, asset, kind FROM ledger_accounts
        WHERE user_id IS NULL AND asset IN ('USD', p_symbol)
    LOOP
        IF v_asset = 'USD' THEN
            CASE v_kind
                WHEN 'broker_holds' THEN v_usd_holds := v_id;
                WHEN 'broker_street' THEN v_usd_street := v_id;
                WHEN 'broker_fees' THEN v_usd_fees := v_id;
                ELSE NULL;
            END CASE;
        ELSIF v_kind = 'broker_holds' THEN
            v_sym_holds := v_id;
        ELSIF v_kind = 'broker_street' THEN
            v_sym_street := v_id;
        END IF;
    END LOOP;
    IF p_side = 'buy' THEN
        v_total := v_notional + p_fee;
        v_consumed := least(v_remaining, v_total);
        v_free := cash.settled + cash.unsettled - cash.held + v_consumed;
        IF v_total > v_free THEN
            PERFORM ledger_raise_insufficient(cash.settled_id, v_total, v_free, 'buying power');
        END IF;
        v_from_settled := least(v_total, cash.settled);
        v_ids := ARRAY[cash.held_id, v_usd_holds, cash.settled_id, cash.unsettled_id,
                       v_usd_street, v_usd_fees, v_sym_street, pos.unsettled_id];
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
        v_ids := ARRAY[pos.held_id, v_sym_holds, pos.settled_id, pos.unsettled_id,
                       v_sym_street, v_usd_street, cash.unsettled_id, v_usd_fees];
        v_assets := ARRAY[p_symbol, p_symbol, p_symbol, p_symbol, p_symbol, 'USD', 'USD', 'USD'];
        v_amounts := ARRAY[-v_consumed, v_consumed, -v_from_settled,
                           -(p_quantity - v_from_settled), p_quantity, -v_notional,
                           v_notional - p_fee, p_fee];
    END IF;
    IF v_consumed > 0 THEN
        UPDATE ledger_holds SET remaining = remaining - v_consumed WHERE id = p_hold_id;
    END IF;
    PERFORM ledger_append_at(v_tx, p_user_id, v_seq + 1, v_prev, 'fill', p_key, p_executed_at,
        p_settlement_date,
        jsonb_build_object('symbol', p_symbol, 'side', p_side, 'quantity', p_quantity,
                           'price_cents', p_price, 'fee_cents', p_fee,
                           'trade_date', to_char(p_trade_date, 'YYYY-MM-DD'),
                           'hold_id', p_hold_id::text),
        v_ids, v_assets, v_amounts);
    RETURN v_receipt;
END;
$$;

-- TOTP replay protection. A code is good once: the time step it was accepted for is kept per
-- user, and a withdrawal's code must be of a later step than the last accepted one (an older,
-- still-valid code is refused as well, as RFC 6238 section 5.2 advises). Compared and recorded
-- under the lock of the user's ledger_totp row, taken after the balance rows (lock order 5).
ALTER TABLE ledger_totp ADD COLUMN last_step bigint CHECK (last_step >= 0);

DROP FUNCTION ledger_withdraw(bigint, text, bytea, bigint, jsonb, timestamptz, text);

-- As 0003's, plus p_totp_step: the time step the client matched the code at (NULL when
-- p_totp_problem says why the code is refused).
CREATE FUNCTION ledger_withdraw(
    p_user_id bigint, p_key text, p_request_hash bytea,
    p_amount bigint, p_metadata jsonb, p_effective_at timestamptz, p_totp_problem text,
    p_totp_step bigint
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    v_receipt jsonb := ledger_receipt(v_tx, 'withdrawal', NULL, NULL);
    v_original jsonb;
    cash ledger_balance;
    v_withdrawable bigint;
    v_problem text := p_totp_problem;
    v_last bigint;
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
    IF v_problem IS NULL THEN
        SELECT last_step INTO v_last FROM ledger_totp WHERE user_id = p_user_id FOR UPDATE;
        IF NOT FOUND THEN
            v_problem := 'two-factor authentication is not enrolled';
        ELSIF p_totp_step IS NULL OR p_totp_step < 0 THEN
            v_problem := 'no time step for the code';
        ELSIF p_totp_step <= v_last THEN
            v_problem := 'this code was already used; wait for the next one';
        END IF;
    END IF;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'TPL13',
            MESSAGE = format('two-factor code refused for user %s: %s', p_user_id, v_problem),
            DETAIL = jsonb_build_object('user_id', p_user_id, 'reason', v_problem)::text;
    END IF;
    UPDATE ledger_totp SET last_step = p_totp_step WHERE user_id = p_user_id;
    PERFORM ledger_append(v_tx, p_user_id, 'withdrawal', p_key, p_effective_at, NULL, p_metadata,
        ARRAY[cash.settled_id, ledger_broker_account('USD', 'broker_bank')],
        ARRAY['USD', 'USD'], ARRAY[-p_amount, p_amount]);
    RETURN v_receipt;
END;
$$;
