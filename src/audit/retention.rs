//! The retention purge (`audit.retention_days`, `CORTEX_AUDIT_RETENTION_DAYS`, default
//! 365; 0 keeps everything), run on the audit thread shortly after start and then hourly.
//!
//! A purge deletes the oldest records in chunks and moves the chain's sealed anchor to the
//! last deleted record, so the remaining records still verify from there. Each run also
//! logs the chain head (seq and hash): shipped logs then hold an outside copy of the head
//! that a database-level rewrite cannot change.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::chain::ChainKey;
use crate::store::{AuditStore, StoreError};

/// Delay of the first run after start.
const FIRST_RUN: Duration = Duration::from_secs(30);
/// Interval between runs.
const EVERY: Duration = Duration::from_secs(3600);
/// Records deleted per transaction (keeps the chain lock short for concurrent appends).
pub const CHUNK: u32 = 5_000;
/// A day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Runs forever on the audit runtime.
pub(crate) async fn run(store: Arc<dyn AuditStore>, key: Arc<ChainKey>, days: u32) {
    tokio::time::sleep(FIRST_RUN).await;
    loop {
        if days > 0 {
            match purge_older_than(store.as_ref(), &key, days, crate::clock::now_ms()).await {
                Ok(0) => {}
                Ok(n) => info!(
                    purged = n,
                    retention_days = days,
                    "audit: old records purged"
                ),
                Err(e) => {
                    warn!(error = %e, "audit: the retention purge failed; it runs again in an hour")
                }
            }
        }
        match store.audit_chain().await {
            Ok(head) if head.last_seq > 0 => info!(
                seq = head.last_seq,
                hash = %head.last_hash,
                anchor_seq = head.anchor_seq,
                "audit chain head"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "audit: cannot read the chain head"),
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Deletes the records older than `days` before `now_ms`, chunk by chunk. Returns how many.
pub async fn purge_older_than(
    store: &dyn AuditStore,
    key: &Arc<ChainKey>,
    days: u32,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let before = now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
    let mut total = 0;
    loop {
        let outcome = store.purge_audit(before, CHUNK, key.clone()).await?;
        total += outcome.purged;
        if outcome.purged < u64::from(CHUNK) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}
