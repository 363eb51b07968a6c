-- Cortex Gateway store, version 2 (postgres): the per-user token vault. Every secret is sealed
-- (AES-256-GCM, base64url) under the key named in key_id, with the row's identity as associated
-- data; nothing here is a token in clear. Times are Unix milliseconds.

CREATE TABLE cortex_vault_grants (
    subject       TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    sealed        TEXT    NOT NULL,
    version       BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (subject, provider)
);
CREATE INDEX cortex_vault_grants_key ON cortex_vault_grants (key_id);

CREATE TABLE cortex_vault_clients (
    provider      TEXT    PRIMARY KEY,
    issuer        TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    sealed_secret TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE cortex_vault_states (
    id            TEXT    PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX cortex_vault_states_expiry ON cortex_vault_states (expires_at_ms);
