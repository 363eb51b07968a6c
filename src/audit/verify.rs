//! `cortex-gateway audit verify`: walks the stored chain from the purge anchor to the head
//! and names the first record where it breaks.
//!
//! What is detected, for someone without the audit secret:
//! - an edited record (any column): its hash no longer matches its content;
//! - a deleted record: a gap in `seq`, or the tail ending before the sealed head;
//! - a record moved or re-numbered: its `prev_hash` does not follow its predecessor;
//! - a forged head or anchor (to hide a truncation): the seal does not match.
//!
//! Not detectable from the database alone: someone holding the secret rewriting the
//! chain, or a database restored to an older consistent state. The hourly
//! `audit chain head` log line is the outside witness for those.

use std::fmt;

use super::chain::{ChainKey, Seal};
use crate::store::{AuditStore, StoreError};

/// Records read per page.
const PAGE: u32 = 1_000;

/// What is wrong at the first broken place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// The record's content does not match its hash.
    Edited,
    /// The record is missing.
    Missing,
    /// The record does not follow its predecessor.
    Relinked,
    /// The record was hashed under a different audit secret.
    ForeignKey,
    /// The chain head's seal is wrong (the head row was changed).
    Head,
    /// The purge anchor's seal is wrong (the anchor row was changed).
    Anchor,
}

/// The first broken place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Seq of the first broken record.
    pub seq: i64,
    /// What is wrong.
    pub kind: BreakKind,
    /// For a person.
    pub detail: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "first broken record: seq {}: {}", self.seq, self.detail)
    }
}

/// A chain that verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records checked.
    pub records: u64,
    /// Seq of the last purged record (0 if none).
    pub anchor_seq: i64,
    /// Seq of the newest record.
    pub last_seq: i64,
    /// Hash of the newest record.
    pub last_hash: String,
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.records == 0 {
            return write!(
                f,
                "audit chain OK: no records (anchor seq {})",
                self.anchor_seq
            );
        }
        write!(
            f,
            "audit chain OK: {} records, seq {}..={}, head hash {}",
            self.records,
            self.anchor_seq + 1,
            self.last_seq,
            self.last_hash
        )
    }
}

/// Verifies the chain in `store` with `key`. `Err` only when the store cannot be read.
pub async fn verify(
    store: &dyn AuditStore,
    key: &ChainKey,
) -> Result<Result<ChainReport, ChainBreak>, StoreError> {
    let state = store.audit_chain().await?;
    if state.anchor_seq > 0
        && !key.check_seal(
            Seal::Anchor,
            state.anchor_seq,
            &state.anchor_hash,
            &state.anchor_mac,
        )
    {
        return Ok(Err(ChainBreak {
            seq: state.anchor_seq + 1,
            kind: BreakKind::Anchor,
            detail: format!(
                "the purge anchor (seq {}) is not sealed by this audit secret: the oldest records may have been deleted and the anchor moved",
                state.anchor_seq
            ),
        }));
    }
    if state.last_seq > 0
        && !key.check_seal(
            Seal::Head,
            state.last_seq,
            &state.last_hash,
            &state.head_mac,
        )
    {
        return Ok(Err(ChainBreak {
            seq: state.last_seq,
            kind: BreakKind::Head,
            detail: format!(
                "the chain head (seq {}) is not sealed by this audit secret: the newest records may have been deleted and the head moved (or the secret is not the one the gateway uses)",
                state.last_seq
            ),
        }));
    }
    let mut expected = state.anchor_seq + 1;
    let mut prev = state.anchor_hash.clone();
    let mut cursor = state.anchor_seq;
    let mut records = 0u64;
    'pages: loop {
        let page = store.read_audit(cursor, PAGE).await?;
        let full = page.len() == PAGE as usize;
        for row in page {
            cursor = row.seq;
            if row.seq > state.last_seq {
                // Appended after the head was read: not part of this check.
                break 'pages;
            }
            if row.seq != expected {
                return Ok(Err(missing(expected, row.seq - 1)));
            }
            if row.key_id != key.id() {
                return Ok(Err(ChainBreak {
                    seq: row.seq,
                    kind: BreakKind::ForeignKey,
                    detail: format!(
                        "written under another audit secret (key id {}; the configured secret's key id is {})",
                        row.key_id,
                        key.id()
                    ),
                }));
            }
            if key.rehash(&row) != row.hash {
                return Ok(Err(ChainBreak {
                    seq: row.seq,
                    kind: BreakKind::Edited,
                    detail: "its content does not match its hash: the record was edited".into(),
                }));
            }
            if row.prev_hash != prev {
                return Ok(Err(ChainBreak {
                    seq: row.seq,
                    kind: BreakKind::Relinked,
                    detail: format!(
                        "it does not follow record {} (prev_hash differs): records were removed or reordered",
                        row.seq - 1
                    ),
                }));
            }
            prev = row.hash;
            expected += 1;
            records += 1;
        }
        if !full {
            break;
        }
    }
    if expected - 1 < state.last_seq {
        return Ok(Err(missing(expected, state.last_seq)));
    }
    if prev != state.last_hash {
        return Ok(Err(ChainBreak {
            seq: state.last_seq,
            kind: BreakKind::Head,
            detail: "the newest record's hash differs from the sealed chain head".into(),
        }));
    }
    Ok(Ok(ChainReport {
        records,
        anchor_seq: state.anchor_seq,
        last_seq: state.last_seq,
        last_hash: state.last_hash,
    }))
}

fn missing(from: i64, to: i64) -> ChainBreak {
    let detail = if from == to {
        "the record is missing: it was deleted".to_string()
    } else {
        format!("records {from}..={to} are missing: they were deleted")
    };
    ChainBreak {
        seq: from,
        kind: BreakKind::Missing,
        detail,
    }
}

/// Exit codes of `audit verify`.
pub mod exit {
    /// The chain verifies.
    pub const OK: u8 = 0;
    /// The chain is broken.
    pub const BROKEN: u8 = 1;
    /// The configuration or the secret is unusable.
    pub const CONFIG: u8 = 2;
    /// The store cannot be read.
    pub const STORE: u8 = 3;
}

/// The whole command: prints the result and returns the exit code.
pub fn run_cli(config: &crate::config::Config) -> u8 {
    let (keys, store) = match super::open_for_verify(config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return exit::STORE;
        }
    };
    let kind = store.kind();
    let result = runtime.block_on(verify(store.as_ref(), keys.chain()));
    match result {
        Ok(Ok(report)) => {
            println!("{report} ({kind})");
            exit::OK
        }
        Ok(Err(broken)) => {
            println!("audit chain BROKEN ({kind}): {broken}");
            exit::BROKEN
        }
        Err(e) => {
            eprintln!("error: cannot read the audit trail from {kind}: {e}");
            exit::STORE
        }
    }
}
