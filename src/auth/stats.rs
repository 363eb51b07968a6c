//! Counters of the token pipeline, kept in plain atomics by their owners (the issuer, the
//! validated-token cache, introspection) and read at scrape time by the metrics listener
//! (`metrics::mirrored`). Counting is one relaxed add: nothing here slows a request.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the token pipeline did since start.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// JWKS fetches that loaded a key set.
    pub jwks_fetch_ok: AtomicU64,
    /// JWKS fetches that failed (the keys held stay in use).
    pub jwks_fetch_failed: AtomicU64,
    /// Fetches made because a token named a `kid` the keys did not have.
    pub jwks_unknown_kid_refetches: AtomicU64,
    /// Validated-token cache lookups answered from the cache.
    pub token_cache_hits: AtomicU64,
    /// Validated-token cache lookups that had to validate the token.
    pub token_cache_misses: AtomicU64,
    /// Entries the cache dropped: expired or pushed out by its size limit.
    pub token_cache_evictions: AtomicU64,
    /// Times the whole cache was emptied (a reload changed the scope implications).
    pub token_cache_resets: AtomicU64,
    /// Introspection requests answered `active`.
    pub introspection_active: AtomicU64,
    /// Introspection requests answered not active (revoked).
    pub introspection_inactive: AtomicU64,
    /// Introspection requests that failed (endpoint down or unusable answer).
    pub introspection_failed: AtomicU64,
}

/// Adds one.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl AuthStats {
    /// The counters in the order of [`AuthStats::NAMES`].
    pub fn values(&self) -> [u64; 10] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            g(&self.jwks_fetch_ok),
            g(&self.jwks_fetch_failed),
            g(&self.jwks_unknown_kid_refetches),
            g(&self.token_cache_hits),
            g(&self.token_cache_misses),
            g(&self.token_cache_evictions),
            g(&self.token_cache_resets),
            g(&self.introspection_active),
            g(&self.introspection_inactive),
            g(&self.introspection_failed),
        ]
    }
}
