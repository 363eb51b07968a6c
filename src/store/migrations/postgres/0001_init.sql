-- Cortex Gateway store, version 1 (PostgreSQL): the audit trail with its hash chain,
-- missing-capability tickets, and the webhook outbox. Times are Unix milliseconds.

CREATE TABLE cortex_audit (
    seq               BIGINT  PRIMARY KEY,
    prev_hash         TEXT    NOT NULL,
    hash              TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    ts_ms             BIGINT  NOT NULL,
    decision          TEXT    NOT NULL,
    stage             TEXT,
    reason            TEXT,
    http_method       TEXT    NOT NULL,
    http_status       INTEGER NOT NULL,
    caller_sub        TEXT,
    caller_email_hash TEXT,
    caller_role       TEXT,
    caller_pool       TEXT,
    client_id         TEXT,
    dev_bypass        BOOLEAN NOT NULL,
    method            TEXT,
    tool              TEXT,
    target_app        TEXT,
    scope_used        TEXT,
    params_hash       TEXT,
    response_size     BIGINT  NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    success           BOOLEAN NOT NULL,
    error_code        BIGINT,
    protocol_version  TEXT,
    origin            TEXT,
    session_id        TEXT,
    tools_listed      BIGINT,
    tokens_estimate   BIGINT,
    backends_filter   TEXT,
    tool_mode         TEXT,
    -- For people querying the table; not part of the hashed record.
    ts                TIMESTAMPTZ GENERATED ALWAYS AS (to_timestamp(ts_ms / 1000.0)) STORED
);
CREATE INDEX cortex_audit_ts ON cortex_audit (ts_ms);
CREATE INDEX cortex_audit_caller ON cortex_audit (caller_sub, ts_ms);

-- One row: where the chain ends (head) and where it starts after purges (anchor).
CREATE TABLE cortex_audit_chain (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    last_seq    BIGINT  NOT NULL,
    last_hash   TEXT    NOT NULL,
    head_mac    TEXT    NOT NULL,
    anchor_seq  BIGINT  NOT NULL,
    anchor_hash TEXT    NOT NULL,
    anchor_mac  TEXT    NOT NULL
);
INSERT INTO cortex_audit_chain VALUES (
    1,
    0, '0000000000000000000000000000000000000000000000000000000000000000', '',
    0, '0000000000000000000000000000000000000000000000000000000000000000', ''
);

CREATE TABLE cortex_tickets (
    id              TEXT    PRIMARY KEY,
    owner           TEXT    NOT NULL,
    agent_sub       TEXT    NOT NULL,
    agent_email     TEXT,
    what_i_wanted   TEXT    NOT NULL,
    user_intent     TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'open',
    context_tool    TEXT,
    context_app     TEXT,
    suggested_shape TEXT,
    fingerprint     TEXT    NOT NULL,
    repeat_count    BIGINT  NOT NULL DEFAULT 0,
    notes           TEXT    NOT NULL DEFAULT '[]',
    created_at_ms   BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL
);
CREATE INDEX cortex_tickets_dedup ON cortex_tickets (owner, fingerprint, created_at_ms);
CREATE INDEX cortex_tickets_created ON cortex_tickets (created_at_ms);

CREATE TABLE cortex_outbox (
    id                 TEXT    PRIMARY KEY,
    kind               TEXT    NOT NULL,
    target             TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    state              TEXT    NOT NULL DEFAULT 'pending',
    attempts           BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT  NOT NULL,
    lease_token        TEXT,
    lease_until_ms     BIGINT,
    last_error         TEXT,
    created_at_ms      BIGINT  NOT NULL,
    delivered_at_ms    BIGINT
);
CREATE INDEX cortex_outbox_due ON cortex_outbox (state, next_attempt_at_ms);
