//! Every table mapped once, for both databases: the column lists, how a row is read back
//! ([`FromRow`], over any driver's row through [`RowRead`]), what an audit INSERT binds
//! ([`SqlValue`]), and the pure arithmetic of the audit chain (linking a batch, planning
//! a purge). The drivers (`sqlite.rs`, `postgres.rs`) keep only what truly differs: the
//! SQL text of their dialect, their transactions and their locks.

use super::{
    AuditRecord, ChainHead, ChainLinker, ChainState, Delivery, DeliveryState, KeyCount,
    PurgeOutcome, StoreError, StoredAudit, StoredClient, StoredGrant, StoredPins, Ticket,
    TicketNote, TicketSeverity, TicketStatus,
};

// ----- column lists (the SELECT and INSERT order of each table) ---------------------------

/// `cortex_audit`: the chain columns, then the record's fields in declaration order.
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, prev_hash, hash, key_id, ts_ms, decision, stage, reason, http_method, \
     http_status, caller_sub, caller_email_hash, caller_role, caller_pool, client_id, dev_bypass, \
     method, tool, target_app, scope_used, params_hash, response_size, latency_ms, success, \
     error_code, protocol_version, origin, session_id, tools_listed, tokens_estimate, \
     backends_filter, tool_mode, rid";
/// Number of [`AUDIT_COLUMNS`] (values bound per inserted record).
pub(crate) const AUDIT_WIDTH: usize = 33;
/// `cortex_audit_chain` (one row, id 1).
pub(crate) const CHAIN_COLUMNS: &str =
    "last_seq, last_hash, head_mac, anchor_seq, anchor_hash, anchor_mac";
/// What a purge reads of `cortex_audit`.
pub(crate) const PURGE_COLUMNS: &str = "seq, ts_ms, hash";
/// `cortex_tickets`.
pub(crate) const TICKET_COLUMNS: &str =
    "id, owner, agent_sub, agent_email, what_i_wanted, user_intent, severity, status, \
     context_tool, context_app, suggested_shape, fingerprint, repeat_count, notes, \
     created_at_ms, updated_at_ms";
/// `cortex_outbox`.
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, kind, target, payload, state, attempts, next_attempt_at_ms, lease_token, \
     lease_until_ms, last_error, created_at_ms, delivered_at_ms";

/// `cortex_vault_grants`.
pub(crate) const GRANT_COLUMNS: &str =
    "subject, provider, key_id, sealed, version, created_at_ms, updated_at_ms";
/// `cortex_vault_clients`.
pub(crate) const CLIENT_COLUMNS: &str =
    "provider, issuer, client_id, key_id, sealed_secret, created_at_ms";
/// A `key_id, COUNT(*)` group.
pub(crate) const TALLY_COLUMNS: &str = "key_id, n";

// ----- reading rows -----------------------------------------------------------------------

/// A value both drivers can read from a column: the integers, text, booleans and doubles
/// the tables use, and `Option`s of them for nullable columns.
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>
{
}
impl<T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>> Column for T {}

/// One row of either driver, read by column index. The error is the driver's message (a
/// NULL where a value was expected, a type that does not fit).
pub(crate) trait RowRead {
    /// Column `i` as a `T`.
    fn col<T: Column>(&self, i: usize) -> Result<T, String>;
}

/// Reads a row's columns in the order of its column list, naming the column on error.
struct Cols<'r, R: ?Sized> {
    row: &'r R,
    what: &'static str,
    names: &'static str,
    at: usize,
}

impl<'r, R: RowRead + ?Sized> Cols<'r, R> {
    fn new(row: &'r R, what: &'static str, names: &'static str) -> Self {
        Cols {
            row,
            what,
            names,
            at: 0,
        }
    }

    /// The next column.
    fn take<T: Column>(&mut self) -> Result<T, StoreError> {
        let i = self.at;
        self.at += 1;
        self.row.col(i).map_err(|e| {
            let name = self.names.split(',').nth(i).map_or("?", str::trim);
            StoreError::Invalid(format!("{} row, column {name}: {e}", self.what))
        })
    }
}

/// A value made from one row of either driver, in the order of its table's column list.
pub(crate) trait FromRow: Sized {
    /// Reads `row`.
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError>;
}

/// A `cortex_audit` row ([`AUDIT_COLUMNS`]).
impl FromRow for StoredAudit {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "audit", AUDIT_COLUMNS);
        Ok(StoredAudit {
            seq: c.take()?,
            prev_hash: c.take()?,
            hash: c.take()?,
            key_id: c.take()?,
            record: AuditRecord {
                ts_ms: c.take()?,
                decision: c.take()?,
                stage: c.take()?,
                reason: c.take()?,
                http_method: c.take()?,
                http_status: c.take()?,
                caller_sub: c.take()?,
                caller_email_hash: c.take()?,
                caller_role: c.take()?,
                caller_pool: c.take()?,
                client_id: c.take()?,
                dev_bypass: c.take()?,
                method: c.take()?,
                tool: c.take()?,
                target_app: c.take()?,
                scope_used: c.take()?,
                params_hash: c.take()?,
                response_size: c.take()?,
                latency_ms: c.take()?,
                success: c.take()?,
                error_code: c.take()?,
                protocol_version: c.take()?,
                origin: c.take()?,
                session_id: c.take()?,
                tools_listed: c.take()?,
                tokens_estimate: c.take()?,
                backends_filter: c.take()?,
                tool_mode: c.take()?,
                rid: c.take()?,
            },
        })
    }
}

/// The `cortex_audit_chain` row ([`CHAIN_COLUMNS`]).
impl FromRow for ChainState {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "audit chain", CHAIN_COLUMNS);
        Ok(ChainState {
            last_seq: c.take()?,
            last_hash: c.take()?,
            head_mac: c.take()?,
            anchor_seq: c.take()?,
            anchor_hash: c.take()?,
            anchor_mac: c.take()?,
        })
    }
}

/// The error for a database whose chain row is gone (it is created by the migration).
pub(crate) fn missing_chain() -> StoreError {
    StoreError::Invalid("the audit chain row (cortex_audit_chain, id 1) is missing".into())
}

/// What a purge needs of a record ([`PURGE_COLUMNS`]).
pub(crate) struct Aged {
    seq: i64,
    ts_ms: i64,
    hash: String,
}

impl FromRow for Aged {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "audit", PURGE_COLUMNS);
        Ok(Aged {
            seq: c.take()?,
            ts_ms: c.take()?,
            hash: c.take()?,
        })
    }
}

/// A `cortex_tickets` row ([`TICKET_COLUMNS`]).
impl FromRow for Ticket {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "ticket", TICKET_COLUMNS);
        Ok(Ticket {
            id: c.take()?,
            owner: c.take()?,
            agent_sub: c.take()?,
            agent_email: c.take()?,
            what_i_wanted: c.take()?,
            user_intent: c.take()?,
            severity: parse_severity(&c.take::<String>()?)?,
            status: parse_status(&c.take::<String>()?)?,
            context_tool: c.take()?,
            context_app: c.take()?,
            suggested_shape: c.take()?,
            fingerprint: c.take()?,
            repeat_count: c.take()?,
            notes: parse_notes(&c.take::<String>()?)?,
            created_at_ms: c.take()?,
            updated_at_ms: c.take()?,
        })
    }
}

/// A `cortex_outbox` row ([`DELIVERY_COLUMNS`]).
/// `cortex_tool_pins`, in `FromRow` order.
pub(crate) const PINS_COLUMNS: &str = "backend, pins, saved_at";

impl FromRow for StoredPins {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "tool pins", PINS_COLUMNS);
        Ok(StoredPins {
            backend: c.take()?,
            pins: c.take()?,
            saved_at: c.take()?,
        })
    }
}

impl FromRow for Delivery {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "outbox", DELIVERY_COLUMNS);
        Ok(Delivery {
            id: c.take()?,
            kind: c.take()?,
            target: c.take()?,
            payload: c.take()?,
            state: parse_delivery_state(&c.take::<String>()?)?,
            attempts: c.take()?,
            next_attempt_at_ms: c.take()?,
            lease_token: c.take()?,
            lease_until_ms: c.take()?,
            last_error: c.take()?,
            created_at_ms: c.take()?,
            delivered_at_ms: c.take()?,
        })
    }
}

/// A `cortex_vault_grants` row ([`GRANT_COLUMNS`]).
impl FromRow for StoredGrant {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "vault grant", GRANT_COLUMNS);
        Ok(StoredGrant {
            subject: c.take()?,
            provider: c.take()?,
            key_id: c.take()?,
            sealed: c.take()?,
            version: c.take()?,
            created_at_ms: c.take()?,
            updated_at_ms: c.take()?,
        })
    }
}

/// A `cortex_vault_clients` row ([`CLIENT_COLUMNS`]).
impl FromRow for StoredClient {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "vault client", CLIENT_COLUMNS);
        Ok(StoredClient {
            provider: c.take()?,
            issuer: c.take()?,
            client_id: c.take()?,
            key_id: c.take()?,
            sealed_secret: c.take()?,
            created_at_ms: c.take()?,
        })
    }
}

/// One `key_id, n` group ([`TALLY_COLUMNS`]).
pub(crate) struct Tally {
    key_id: String,
    n: i64,
}

impl FromRow for Tally {
    fn from_row<R: RowRead + ?Sized>(row: &R) -> Result<Self, StoreError> {
        let mut c = Cols::new(row, "vault key count", TALLY_COLUMNS);
        Ok(Tally {
            key_id: c.take()?,
            n: c.take()?,
        })
    }
}

/// Grants and client secrets per key, merged by key id (sorted).
pub(crate) fn key_counts(grants: Vec<Tally>, clients: Vec<Tally>) -> Vec<KeyCount> {
    let mut out: std::collections::BTreeMap<String, KeyCount> = std::collections::BTreeMap::new();
    for (t, is_grant) in grants
        .into_iter()
        .map(|t| (t, true))
        .chain(clients.into_iter().map(|t| (t, false)))
    {
        let e = out.entry(t.key_id.clone()).or_insert(KeyCount {
            key_id: t.key_id,
            grants: 0,
            clients: 0,
        });
        if is_grant {
            e.grants += t.n;
        } else {
            e.clients += t.n;
        }
    }
    out.into_values().collect()
}

fn parse_severity(s: &str) -> Result<TicketSeverity, StoreError> {
    TicketSeverity::parse(s)
        .ok_or_else(|| StoreError::Invalid(format!("unknown ticket severity `{s}`")))
}

fn parse_status(s: &str) -> Result<TicketStatus, StoreError> {
    TicketStatus::parse(s)
        .ok_or_else(|| StoreError::Invalid(format!("unknown ticket status `{s}`")))
}

fn parse_delivery_state(s: &str) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(s)
        .ok_or_else(|| StoreError::Invalid(format!("unknown delivery state `{s}`")))
}

fn parse_notes(text: &str) -> Result<Vec<TicketNote>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("ticket notes: {e}")))
}

/// Serializes notes for the `notes` column.
pub(crate) fn notes_json(notes: &[TicketNote]) -> String {
    serde_json::to_string(notes).unwrap_or_else(|_| "[]".into())
}

// ----- binding values ---------------------------------------------------------------------

/// A value both drivers can bind as a statement parameter. SQLite takes a slice of them as
/// it is; PostgreSQL takes each as `&(dyn ToSql + Sync)` (an upcast).
pub(crate) trait SqlValue: rusqlite::ToSql + tokio_postgres::types::ToSql + Sync {}
impl<T: rusqlite::ToSql + tokio_postgres::types::ToSql + Sync> SqlValue for T {}

/// `(?1, ?2, …)` or `($1, $2, …)`: `rows` groups of `width` numbered placeholders, for a
/// (multi-row) INSERT.
pub(crate) fn placeholders(sigil: char, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push(sigil);
            out.push_str(&(r * width + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

// ----- the audit chain, without I/O -------------------------------------------------------

/// One record's place in the chain, computed before the INSERT.
pub(crate) struct Linked<'r> {
    seq: i64,
    prev_hash: String,
    hash: String,
    record: &'r AuditRecord,
}

/// A batch linked onto the chain: the rows to insert and the new, sealed head.
pub(crate) struct Appended<'r> {
    /// The key id stored with every row.
    pub key_id: String,
    /// The rows, in seq order.
    pub rows: Vec<Linked<'r>>,
    /// The new head.
    pub head: ChainHead,
    /// Its seal.
    pub head_mac: String,
}

impl Appended<'_> {
    /// The [`AUDIT_COLUMNS`] values of `row`, in order.
    pub fn values<'s>(&'s self, row: &'s Linked<'_>) -> [&'s dyn SqlValue; AUDIT_WIDTH] {
        let r = row.record;
        [
            &row.seq,
            &row.prev_hash,
            &row.hash,
            &self.key_id,
            &r.ts_ms,
            &r.decision,
            &r.stage,
            &r.reason,
            &r.http_method,
            &r.http_status,
            &r.caller_sub,
            &r.caller_email_hash,
            &r.caller_role,
            &r.caller_pool,
            &r.client_id,
            &r.dev_bypass,
            &r.method,
            &r.tool,
            &r.target_app,
            &r.scope_used,
            &r.params_hash,
            &r.response_size,
            &r.latency_ms,
            &r.success,
            &r.error_code,
            &r.protocol_version,
            &r.origin,
            &r.session_id,
            &r.tools_listed,
            &r.tokens_estimate,
            &r.backends_filter,
            &r.tool_mode,
            &r.rid,
        ]
    }
}

/// `records` without those whose id is in `known` (already stored: a replay, or a retry
/// whose first commit went through) and without repeats of an id within the batch; `None`
/// when nothing is to be left out.
pub(crate) fn new_records(records: &[AuditRecord], known: &[String]) -> Option<Vec<AuditRecord>> {
    let mut seen: std::collections::HashSet<&str> = known.iter().map(String::as_str).collect();
    let keep: Vec<bool> = records
        .iter()
        .map(|r| r.rid.as_deref().is_none_or(|id| seen.insert(id)))
        .collect();
    if keep.iter().all(|k| *k) {
        return None;
    }
    Some(
        records
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(r, _)| r.clone())
            .collect(),
    )
}

/// Links `records` after the head of `state`: each gets the next seq, the previous hash
/// and its own hash under `key`; the new head is sealed.
pub(crate) fn link_all<'r>(
    state: &ChainState,
    records: &'r [AuditRecord],
    key: &dyn ChainLinker,
) -> Appended<'r> {
    let key_id = key.key_id().to_string();
    let (mut seq, mut prev) = (state.last_seq, state.last_hash.clone());
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        seq += 1;
        let hash = key.link(seq, &prev, &key_id, record);
        rows.push(Linked {
            seq,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
            record,
        });
    }
    let head_mac = key.seal_head(seq, &prev);
    Appended {
        key_id,
        rows,
        head: ChainHead {
            last_seq: seq,
            last_hash: prev,
        },
        head_mac,
    }
}

/// What one purge step deletes: every record up to `through_seq`, which becomes the new,
/// sealed anchor.
pub(crate) struct Cut {
    /// Seq of the last record to delete (the new anchor).
    pub through_seq: i64,
    /// Its hash.
    pub anchor_hash: String,
    /// The anchor's seal.
    pub anchor_mac: String,
    /// How many records go.
    pub purged: u64,
}

impl Cut {
    /// The outcome once the cut is committed.
    pub fn outcome(&self) -> PurgeOutcome {
        PurgeOutcome {
            purged: self.purged,
            anchor_seq: self.through_seq,
        }
    }
}

/// Given the records after the anchor in seq order, the cut that deletes the longest
/// prefix older than `before_ms`, stopping at the first record that is not (so what
/// remains is one contiguous chain); `None` when nothing is old enough.
pub(crate) fn plan_purge(rows: &[Aged], before_ms: i64, key: &dyn ChainLinker) -> Option<Cut> {
    let n = rows.iter().take_while(|r| r.ts_ms < before_ms).count();
    let last = rows.get(n.checked_sub(1)?)?;
    Some(Cut {
        through_seq: last.seq,
        anchor_hash: last.hash.clone(),
        anchor_mac: key.seal_anchor(last.seq, &last.hash),
        purged: n as u64,
    })
}

/// Nothing purged: the anchor stays where `state` has it.
pub(crate) fn nothing_purged(state: &ChainState) -> PurgeOutcome {
    PurgeOutcome {
        purged: 0,
        anchor_seq: state.anchor_seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A linker whose hashes and seals spell out their inputs.
    struct Plain;

    impl ChainLinker for Plain {
        fn key_id(&self) -> &str {
            "k"
        }
        fn link(&self, seq: i64, prev: &str, key_id: &str, r: &AuditRecord) -> String {
            format!("h{seq}<{prev}|{key_id}|{}>", r.ts_ms)
        }
        fn seal_head(&self, seq: i64, hash: &str) -> String {
            format!("head {seq} {hash}")
        }
        fn seal_anchor(&self, seq: i64, hash: &str) -> String {
            format!("anchor {seq} {hash}")
        }
    }

    #[test]
    fn link_all_chains_each_record_to_the_previous_one() {
        let mut state = ChainState::genesis();
        state.last_seq = 4;
        state.last_hash = "h4".into();
        let records = [AuditRecord::new(10, "POST"), AuditRecord::new(20, "GET")];
        let a = link_all(&state, &records, &Plain);
        let seqs: Vec<_> = a.rows.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [5, 6]);
        assert_eq!(a.rows[0].prev_hash, "h4");
        assert_eq!(a.rows[0].hash, "h5<h4|k|10>");
        assert_eq!(a.rows[1].prev_hash, a.rows[0].hash);
        assert_eq!(a.head.last_seq, 6);
        assert_eq!(a.head.last_hash, a.rows[1].hash);
        assert_eq!(a.head_mac, format!("head 6 {}", a.rows[1].hash));
        assert_eq!(a.values(&a.rows[1]).len(), AUDIT_COLUMNS.split(',').count());
    }

    #[test]
    fn new_records_skips_known_ids_and_repeats_only() {
        let rec = |rid: Option<&str>| {
            let mut r = AuditRecord::new(1, "POST");
            r.rid = rid.map(str::to_string);
            r
        };
        let batch = vec![
            rec(Some("a")),
            rec(None),
            rec(Some("b")),
            rec(Some("a")),
            rec(None),
        ];
        assert!(
            new_records(&batch[..3], &[]).is_none(),
            "nothing to leave out"
        );
        let kept = new_records(&batch, &["b".to_string()]).expect("some left out");
        let ids: Vec<_> = kept.iter().map(|r| r.rid.as_deref()).collect();
        assert_eq!(ids, [Some("a"), None, None]);
    }

    #[test]
    fn link_all_of_nothing_reseals_the_same_head() {
        let a = link_all(&ChainState::genesis(), &[], &Plain);
        assert!(a.rows.is_empty());
        assert_eq!(a.head.last_seq, 0);
        assert_eq!(a.head_mac, format!("head 0 {}", super::super::GENESIS));
    }

    #[test]
    fn plan_purge_stops_at_first_young_record() {
        let aged = |seq, ts_ms, hash: &str| Aged {
            seq,
            ts_ms,
            hash: hash.into(),
        };
        let rows = [aged(1, 10, "a"), aged(2, 20, "b"), aged(3, 5, "c")];
        let cut = plan_purge(&rows, 15, &Plain).unwrap();
        assert_eq!((cut.through_seq, cut.anchor_hash.as_str()), (1, "a"));
        assert_eq!(cut.anchor_mac, "anchor 1 a");
        assert_eq!(
            cut.outcome(),
            PurgeOutcome {
                purged: 1,
                anchor_seq: 1
            }
        );
        let cut = plan_purge(&rows, 25, &Plain).unwrap();
        assert_eq!(
            cut.outcome(),
            PurgeOutcome {
                purged: 3,
                anchor_seq: 3
            }
        );
        assert!(plan_purge(&rows, 1, &Plain).is_none());
        assert!(plan_purge(&[], 100, &Plain).is_none());
    }

    #[test]
    fn placeholders_number_across_rows() {
        assert_eq!(placeholders('?', 1, 3), "(?1, ?2, ?3)");
        assert_eq!(placeholders('$', 2, 2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn every_column_list_matches_its_mapping() {
        assert_eq!(AUDIT_COLUMNS.split(',').count(), AUDIT_WIDTH);
        assert_eq!(TICKET_COLUMNS.split(',').count(), 16);
        assert_eq!(DELIVERY_COLUMNS.split(',').count(), 12);
        assert_eq!(CHAIN_COLUMNS.split(',').count(), 6);
        assert_eq!(PINS_COLUMNS.split(',').count(), 3);
        assert_eq!(GRANT_COLUMNS.split(',').count(), 7);
        assert_eq!(CLIENT_COLUMNS.split(',').count(), 6);
    }

    #[test]
    fn key_counts_merge_grants_and_clients_by_key() {
        let t = |k: &str, n| Tally {
            key_id: k.into(),
            n,
        };
        let merged = key_counts(vec![t("b", 3), t("a", 1)], vec![t("c", 2), t("a", 4)]);
        let flat: Vec<_> = merged
            .iter()
            .map(|k| (k.key_id.as_str(), k.grants, k.clients))
            .collect();
        assert_eq!(flat, [("a", 1, 4), ("b", 3, 0), ("c", 0, 2)]);
    }
}
