-- The double-entry ledger (package `ledger`). Amounts are bigint minor units: cents of USD,
-- whole shares of a security. Never float.
--
-- Invariants the database enforces itself, whatever the Python does:
--   * every transaction's entries sum to zero per asset      (deferred constraint trigger)
--   * no user account balance below zero                     (CHECK on the cached balance)
--   * a user's holds never exceed settled + unsettled        (deferred constraint trigger)
--   * the journal (transactions, entries, settlements) is append-only (triggers)
--   * cached balances move with the entries, in the same transaction (entry trigger)

CREATE TABLE ledger_accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint REFERENCES users (id),       -- NULL: one of the broker's own accounts
    asset       text NOT NULL CHECK (asset ~ '^[A-Z][A-Z0-9.]{0,11}$'),
    kind        text NOT NULL CHECK (kind IN (
                    'cash_settled', 'cash_unsettled', 'cash_held',
                    'position_settled', 'position_unsettled', 'position_held',
                    'broker_bank', 'broker_street', 'broker_fees', 'broker_holds')),
    -- Cached balance of user accounts. NULL for broker accounts: every transaction touches
    -- one of them, and a cached broker balance would be one hot row serialising the ledger.
    balance     bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_owner_kind CHECK ((user_id IS NULL) = (kind LIKE 'broker\_%')),
    CONSTRAINT ledger_accounts_cash_is_usd CHECK (kind NOT LIKE 'cash\_%' OR asset = 'USD'),
    CONSTRAINT ledger_accounts_position_not_usd
        CHECK (kind NOT LIKE 'position\_%' OR asset <> 'USD'),
    CONSTRAINT ledger_accounts_cached_iff_user CHECK ((user_id IS NULL) = (balance IS NULL)),
    CONSTRAINT ledger_accounts_balance_nonnegative CHECK (balance >= 0),
    CONSTRAINT ledger_accounts_one_per_kind UNIQUE NULLS NOT DISTINCT (user_id, asset, kind),
    CONSTRAINT ledger_accounts_id_asset UNIQUE (id, asset)
);

-- The head of each user's hash chain: the last transaction's sequence number and hash.
-- Locking this row first is what orders every ledger transaction of one user.
CREATE TABLE ledger_chains (
    user_id     bigint PRIMARY KEY REFERENCES users (id),
    seq         bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    head        bytea NOT NULL CHECK (length(head) = 32)
);

CREATE TABLE ledger_transactions (
    id               uuid PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id),
    chain_seq        bigint NOT NULL CHECK (chain_seq > 0),
    kind             text NOT NULL CHECK (kind IN (
                         'deposit', 'withdrawal', 'hold', 'hold_release', 'fill', 'settlement')),
    idempotency_key  text,
    effective_at     timestamptz NOT NULL,
    settlement_date  date,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash        bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash             bytea NOT NULL CHECK (length(hash) = 32),
    recorded_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT ledger_transactions_chain_position UNIQUE (user_id, chain_seq)
);

CREATE INDEX ledger_transactions_unsettled_fills_idx
    ON ledger_transactions (settlement_date) WHERE kind = 'fill';

CREATE TABLE ledger_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  uuid NOT NULL REFERENCES ledger_transactions (id),
    account_id      bigint NOT NULL,
    asset           text NOT NULL,
    amount          bigint NOT NULL CHECK (amount <> 0),
    -- The asset is repeated from the account so the zero-sum check needs no join; the
    -- composite key keeps the copy honest.
    FOREIGN KEY (account_id, asset) REFERENCES ledger_accounts (id, asset)
);

CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id);

-- Which fills have been settled, by which settlement transaction (NULL when nothing remained
-- to move). The primary key is what makes the settle job idempotent and safe to run twice.
CREATE TABLE ledger_settlements (
    fill_id        uuid PRIMARY KEY REFERENCES ledger_transactions (id),
    settlement_id  uuid REFERENCES ledger_transactions (id),
    settled_at     timestamptz NOT NULL DEFAULT now()
);

-- Open reservations for orders. `remaining` shrinks as fills consume the hold or it is released;
-- the journal carries every change as entries, this table only says which order holds what.
CREATE TABLE ledger_holds (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    asset       text NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    remaining   bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    order_id    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_holds_open_idx ON ledger_holds (user_id) WHERE remaining > 0;

CREATE TABLE ledger_idempotency (
    user_id       bigint NOT NULL REFERENCES users (id),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation     text NOT NULL,
    request_hash  bytea NOT NULL,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE TABLE ledger_totp (
    user_id      bigint PRIMARY KEY REFERENCES users (id),
    secret       text NOT NULL,
    enrolled_at  timestamptz NOT NULL DEFAULT now()
);

-- Cached balances follow the entries in the same transaction. Broker rows (balance NULL) are
-- filtered by the WHERE, so they are never locked by this UPDATE.
CREATE FUNCTION ledger_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts SET balance = balance + NEW.amount
    WHERE id = NEW.account_id AND balance IS NOT NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_entries_apply AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_entry();

-- Deferred to commit, so a transaction may insert its entries one by one.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT asset, sum(amount) AS total INTO unbalanced
    FROM ledger_entries WHERE transaction_id = NEW.transaction_id
    GROUP BY asset HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: asset % sums to %',
            NEW.transaction_id, unbalanced.asset, unbalanced.total
            USING ERRCODE = 'TPL01';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_check_holds_covered() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held bigint;
    owned bigint;
BEGIN
    SELECT coalesce(sum(balance) FILTER (WHERE kind IN ('cash_held', 'position_held')), 0),
           coalesce(sum(balance) FILTER (WHERE kind NOT IN ('cash_held', 'position_held')), 0)
    INTO held, owned
    FROM ledger_accounts WHERE user_id = NEW.user_id AND asset = NEW.asset;
    IF held > owned THEN
        RAISE EXCEPTION 'holds of user % on % (%) exceed settled + unsettled (%)',
            NEW.user_id, NEW.asset, held, owned
            USING ERRCODE = 'TPL03';
    END IF;
    RETURN NULL;
END;
$$;

-- Only a rising hold or a falling settled/unsettled balance can break the cover.
CREATE CONSTRAINT TRIGGER ledger_accounts_holds_covered AFTER UPDATE ON ledger_accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.user_id IS NOT NULL
          AND (NEW.kind IN ('cash_held', 'position_held')) = (NEW.balance > OLD.balance))
    EXECUTE FUNCTION ledger_check_holds_covered();

CREATE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger journal is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'TPL02';
END;
$$;

CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_settlements_append_only BEFORE UPDATE OR DELETE ON ledger_settlements
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_settlements_no_truncate BEFORE TRUNCATE ON ledger_settlements
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
