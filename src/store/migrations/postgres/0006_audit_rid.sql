-- A unique id per audit record, so that a record replayed from a replica's spool file after
-- a crash (or an append retried after a lost commit acknowledgement) is stored once. Older
-- records have none (NULLs do not collide).
ALTER TABLE cortex_audit ADD COLUMN rid TEXT;
CREATE UNIQUE INDEX cortex_audit_rid ON cortex_audit (rid);
