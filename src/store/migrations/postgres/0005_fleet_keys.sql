-- Fingerprints (never the keys) of the keys every replica of a fleet must share, written by
-- the first replica that starts with each key; the others compare theirs at start.
CREATE TABLE cortex_fleet_keys (
    name        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    set_by      TEXT NOT NULL,
    set_at_ms   BIGINT NOT NULL
);
