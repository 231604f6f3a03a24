-- Users of the plant and their API tokens. Only the SHA-256 of a token is stored, never the
-- token itself; `prefix` (the token's first characters) lets people tell their tokens apart.

CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    role        text NOT NULL CHECK (role IN ('trader', 'quant', 'compliance', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Names are unique regardless of case: "Alice" and "alice" are the same user.
CREATE UNIQUE INDEX users_name_lower_key ON users (lower(name));

CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
