//! The audit trail as the store keeps it: one record per request that reached the MCP
//! endpoint, in the field names of Cortex's `cortex_audit` line plus the decision, its
//! stage and reason, and the bookkeeping of the hash chain over them.
//!
//! The same struct is the stdout line, the stored row and the input of the hash chain, so
//! its serialization is the canonical form: fields are serialized in declaration order,
//! and every value round-trips exactly through both stores (integers, text, a double).
//! Changing a field, its type or its order changes every hash: add a new migration and a
//! new chain version instead.
//!
//! How hashes and seals are computed is not the store's business: it is handed a
//! [`ChainLinker`] (the audit trail's chain key) and only places what it returns.

use serde::{Deserialize, Serialize};

/// The decision recorded for a request.
pub mod decision {
    /// The request was served (its result may still be an error from a backend).
    pub const ALLOWED: &str = "allowed";
    /// The gateway refused it; `stage` says where and `reason` why.
    pub const REJECTED: &str = "rejected";
}

/// Longest text kept in a free-form field (reason, origin, tool, …), in characters.
pub const MAX_TEXT: usize = 512;
/// Longest identifier kept (role, pool, client id, method, …), in characters.
pub const MAX_IDENT: usize = 256;

/// One audit record. Nothing in it is a secret: subjects, emails, session ids and params
/// are pseudonymised (HMAC-SHA256 under the audit secret) before they get here, and tokens
/// are never recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request ended, Unix milliseconds (stdout also carries it as ISO-8601 `ts`).
    pub ts_ms: i64,
    /// [`decision::ALLOWED`] or [`decision::REJECTED`].
    pub decision: String,
    /// Where a rejected request was stopped: `host`, `origin`, `auth`, `method`, `body`,
    /// `parse`, `version`, `session`, `batch`, `scope`, `rate_limit`.
    pub stage: Option<String>,
    /// Why, for a person (rejections, proxy failures).
    pub reason: Option<String>,
    /// HTTP method of the request.
    pub http_method: String,
    /// HTTP status answered (0 when no response could be written).
    pub http_status: i32,
    /// Subject: an HMAC pseudonym, or the subject itself when `audit.subject_in_clear`.
    pub caller_sub: Option<String>,
    /// HMAC pseudonym of the lowercased email.
    pub caller_email_hash: Option<String>,
    /// Role claim.
    pub caller_role: Option<String>,
    /// Pool claim.
    pub caller_pool: Option<String>,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// Whether the caller came in through the `X-Dev-Mode` bypass.
    pub dev_bypass: bool,
    /// JSON-RPC method (`tools/call`, `initialize`, …; `batch` for a batch).
    pub method: Option<String>,
    /// Tool name as exposed, for `tools/call`.
    pub tool: Option<String>,
    /// Backend that owns the tool, or `gateway` for the builtins.
    pub target_app: Option<String>,
    /// Scope the tool requires.
    pub scope_used: Option<String>,
    /// HMAC of the canonical JSON of `params`; the params themselves are never stored.
    pub params_hash: Option<String>,
    /// Bytes of response body sent.
    pub response_size: i64,
    /// Time from the first byte of the request to the end of the response, milliseconds
    /// (microsecond resolution).
    pub latency_ms: f64,
    /// Whether the caller got what it asked for (no rejection, no JSON-RPC error, no
    /// HTTP error status).
    pub success: bool,
    /// JSON-RPC error code of the answer, when it was an error.
    pub error_code: Option<i64>,
    /// MCP protocol version in force.
    pub protocol_version: Option<String>,
    /// Browser `Origin`, when sent.
    pub origin: Option<String>,
    /// HMAC pseudonym of the `Mcp-Session-Id` (the sealed id itself is a bearer secret).
    pub session_id: Option<String>,
    /// `tools/list`: tools in the page answered.
    pub tools_listed: Option<i64>,
    /// `tools/list`: response characters / 4, Cortex's token estimate.
    pub tokens_estimate: Option<i64>,
    /// `tools/list`: the `X-Cortex-Backends` header.
    pub backends_filter: Option<String>,
    /// `tools/list`: the `X-Cortex-Tool-Mode` header.
    pub tool_mode: Option<String>,
    /// The record's unique id (the replica's tag and a counter, hex), so that a record
    /// replayed from a spool file after a crash is stored once. Records written before
    /// record ids existed have none, and their canonical form (hence their hash) is the
    /// one they had: the field is left out of it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
}

impl AuditRecord {
    /// An empty allowed record at `ts_ms` (the builder fills it in).
    pub fn new(ts_ms: i64, http_method: &str) -> Self {
        AuditRecord {
            ts_ms,
            decision: decision::ALLOWED.into(),
            stage: None,
            reason: None,
            http_method: http_method.into(),
            http_status: 0,
            caller_sub: None,
            caller_email_hash: None,
            caller_role: None,
            caller_pool: None,
            client_id: None,
            dev_bypass: false,
            method: None,
            tool: None,
            target_app: None,
            scope_used: None,
            params_hash: None,
            response_size: 0,
            latency_ms: 0.0,
            success: false,
            error_code: None,
            protocol_version: None,
            origin: None,
            session_id: None,
            tools_listed: None,
            tokens_estimate: None,
            backends_filter: None,
            tool_mode: None,
            rid: None,
        }
    }
}

/// A stored record with its place in the hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// Hash of the previous record (or of the purge anchor / genesis).
    pub prev_hash: String,
    /// This record's hash (hex HMAC-SHA256).
    pub hash: String,
    /// Id of the key it was hashed with (see [`ChainLinker::key_id`]).
    pub key_id: String,
    /// The record.
    pub record: AuditRecord,
}

/// Replaces control characters (NUL would break PostgreSQL text, newlines would split
/// log lines) and cuts `s` to `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    let needs_work = s.len() > max || s.chars().any(char::is_control);
    if !needs_work {
        return s.to_string();
    }
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// [`clean`] over an optional value.
pub fn clean_opt(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| clean(s, max))
}

/// The hash before the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain's bookkeeping row: where it ends and where it starts after purges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    /// Seq of the newest record (0 before the first).
    pub last_seq: i64,
    /// Hash of the newest record ([`GENESIS`] before the first).
    pub last_hash: String,
    /// [`ChainLinker::seal_head`] of the head; empty before the first append.
    pub head_mac: String,
    /// Seq of the last purged record (0 when nothing was purged).
    pub anchor_seq: i64,
    /// Hash of the last purged record ([`GENESIS`] when nothing was purged).
    pub anchor_hash: String,
    /// [`ChainLinker::seal_anchor`] of the anchor; empty when nothing was purged.
    pub anchor_mac: String,
}

impl ChainState {
    /// The state of a chain nothing was ever appended to.
    pub fn genesis() -> Self {
        ChainState {
            last_seq: 0,
            last_hash: GENESIS.into(),
            head_mac: String::new(),
            anchor_seq: 0,
            anchor_hash: GENESIS.into(),
            anchor_mac: String::new(),
        }
    }
}

/// What the store needs from the key of the hash chain: a record's hash and the seals of
/// the bookkeeping row. The audit trail's `ChainKey` implements it; the store only places
/// what it returns, in one transaction, so it never learns how hashes are made.
pub trait ChainLinker: Send + Sync {
    /// The short public id of the key, stored with every record.
    fn key_id(&self) -> &str;
    /// The hash of `record` at `seq` following `prev_hash`, written under key `key_id`.
    fn link(&self, seq: i64, prev_hash: &str, key_id: &str, record: &AuditRecord) -> String;
    /// The seal of the chain head (seq and hash of the newest record).
    fn seal_head(&self, seq: i64, hash: &str) -> String;
    /// The seal of the purge anchor (seq and hash of the last purged record).
    fn seal_anchor(&self, seq: i64, hash: &str) -> String;
}

/// Where the audit chain ends after an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Seq of the newest record.
    pub last_seq: i64,
    /// Its hash.
    pub last_hash: String,
}

/// The result of one purge step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Records deleted.
    pub purged: u64,
    /// The new anchor (seq of the last purged record; 0 if nothing was ever purged).
    pub anchor_seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_replaces_controls_and_truncates() {
        assert_eq!(clean("abc", 10), "abc");
        assert_eq!(clean("a\0b\nc", 10), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(clean("ééééé", 3), "ééé");
    }
}
