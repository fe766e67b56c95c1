-- API keys (keyed hashes only), the token vault (ciphertext only) and its refresh locks.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    key_hash      TEXT NOT NULL,
    hash_key_id   TEXT NOT NULL,
    created_by    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_keys_created_by ON api_keys (created_by);

-- access_token and refresh_token are AEAD ciphertexts bound to (table, column, id); key_id names
-- the master key that sealed them, so rotation can find rows still under an old key.
CREATE TABLE vault_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider       TEXT NOT NULL,
    access_token   BYTEA NOT NULL,
    refresh_token  BYTEA,
    expires_at     BIGINT,
    key_id         TEXT NOT NULL,
    revision       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (user_id, provider)
);
CREATE INDEX vault_tokens_key_id ON vault_tokens (key_id, id);

-- One row per (user, provider): a lease with a fencing token, so one refresh runs at a time
-- across every instance sharing the database.
CREATE TABLE vault_locks (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    holder       TEXT NOT NULL,
    fence        BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL,
    failed_at    BIGINT,
    PRIMARY KEY (user_id, provider)
);
