-- Cheaper postings, the same guarantees (issue 6: throughput; benchmarks/README.md, "Sixth
-- pass"). Measured on one backend, server CPU per hold or fill:
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

-- 0009's posting (same arguments, rows, checks and result), hashed in form 3.
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
