-- Sessions ended with DELETE, shared by the replicas of a fleet: each replica reads the new
-- rows every second and refuses those ids from then on. A row is useless once the session
-- would have expired anyway (expires_at_ms) and is purged then.
CREATE TABLE cortex_session_revocations (
    nonce         TEXT PRIMARY KEY,
    revoked_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX cortex_session_revocations_revoked_at ON cortex_session_revocations (revoked_at_ms);
