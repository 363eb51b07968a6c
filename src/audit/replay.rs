//! Replays spool files into the store: the files of processes that are gone (a replica
//! that was killed, or this replica's previous life), and this process's own closed
//! segments that still miss records (records the in-memory queue had to drop).
//!
//! The store skips records whose id it already has, so a file is replayed whole whatever
//! part of it arrived before its writer died, and two replicas that find the same file
//! cannot both insert a record (the file is also locked by the one replaying it). A file
//! is deleted only once all its records are stored; while the store is down it stays and
//! is tried again at the next scan.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::spool::{Decoded, Spool};
use super::writer::{AuditStats, Builder, BATCH};
use crate::store::{AuditStore, StoreError};

/// Time between two scans of the spool directory.
pub const SCAN_EVERY: Duration = Duration::from_secs(5);
/// Most orphan files taken in one scan.
const FILES_PER_SCAN: usize = 16;

/// The replay task of one process.
pub(crate) struct Replayer {
    pub store: Arc<dyn AuditStore>,
    pub spool: Arc<Spool>,
    pub builder: Builder,
    pub stats: Arc<AuditStats>,
}

impl Replayer {
    /// Scans at start, then every [`SCAN_EVERY`], until the runtime ends.
    pub async fn run(self) {
        loop {
            self.scan_once().await;
            tokio::time::sleep(SCAN_EVERY).await;
        }
    }

    /// One scan: orphans first, then this process's stale segments. Returns the files
    /// replayed and deleted.
    pub async fn scan_once(&self) -> usize {
        let mut done = 0;
        for orphan in self.spool.orphans(FILES_PER_SCAN) {
            match orphan.read() {
                Ok(decoded) => {
                    let records = decoded.records.len();
                    if self.store_all(decoded).await {
                        info!(file = %orphan.path.display(), records, "audit: replayed the spool file of a process that is gone");
                        orphan.remove();
                        done += 1;
                    }
                }
                Err(e) => {
                    warn!(file = %orphan.path.display(), error = %e, "audit: cannot read a spool file")
                }
            }
        }
        for seg in self.spool.tidy(false) {
            match seg.read() {
                Ok(decoded) => {
                    if self.store_all(decoded).await {
                        self.spool.replayed(&seg);
                        done += 1;
                    }
                }
                Err(e) => warn!(error = %e, "audit: cannot read back a spool segment"),
            }
        }
        self.spool
            .stats
            .files_replayed
            .fetch_add(done as u64, Ordering::Relaxed);
        done
    }

    /// Stores every record of `decoded` (batches; those already stored are skipped by the
    /// store). `false` when the store is unavailable: the file stays for the next scan.
    async fn store_all(&self, decoded: Decoded) -> bool {
        let stats = &self.spool.stats;
        if decoded.bad > 0 {
            stats.unreadable.fetch_add(decoded.bad, Ordering::Relaxed);
            warn!(
                entries = decoded.bad,
                "audit: spool entries that do not decode are skipped"
            );
        }
        let key = self.builder.keys().chain().clone();
        for chunk in decoded.records.chunks(BATCH) {
            let records: Vec<_> = chunk.iter().map(|r| self.builder.build_raw(r)).collect();
            let n = records.len() as u64;
            match self
                .store
                .append_audit(Arc::new(records.clone()), key.clone())
                .await
            {
                Ok(_) => {
                    stats.replayed.fetch_add(n, Ordering::Relaxed);
                }
                Err(StoreError::Unavailable(e)) => {
                    warn!(error = %e, "audit: the store is unavailable; the spool is replayed later");
                    return false;
                }
                Err(e) => {
                    if self.store.ping().await.is_err() {
                        warn!(error = %e, "audit: the store is unavailable; the spool is replayed later");
                        return false;
                    }
                    // The store is up and refuses the batch: one record at a time, and
                    // the refused ones are dropped (counted), as on the live path.
                    for r in records {
                        match self
                            .store
                            .append_audit(Arc::new(vec![r]), key.clone())
                            .await
                        {
                            Ok(_) => {
                                stats.replayed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(StoreError::Unavailable(_)) => return false,
                            Err(e) => {
                                self.stats.refused_by_store.fetch_add(1, Ordering::Relaxed);
                                error!(error = %e, "audit: the store refuses a replayed record while up; it is dropped");
                            }
                        }
                    }
                }
            }
        }
        true
    }
}
