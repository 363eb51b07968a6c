//! A small bounded cache with a per-entry deadline, keyed by the SHA-256 of a token.
//!
//! Used for validated tokens (so the hot path verifies a signature once per token per
//! `token_cache_ttl`, not on every call), introspection answers, exchanged tokens and minted
//! tokens. Keys are digests: the cache never holds a caller's token as a key, and a lookup
//! costs one SHA-256 of the token (well under a microsecond for a 1 KiB JWT). Each entry
//! carries its own deadline, which callers set to at most the token's `exp`, so nothing is
//! ever served past its expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

/// A SHA-256 digest used as a cache key.
pub type Digest32 = [u8; 32];

/// SHA-256 of `parts`, each length-prefixed so that different splits never collide.
pub fn digest(parts: &[&[u8]]) -> Digest32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    deadline: Instant,
}

struct ByDeadline;

impl<V> Expiry<Digest32, Entry<V>> for ByDeadline {
    fn expire_after_create(
        &self,
        _key: &Digest32,
        value: &Entry<V>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(created_at))
    }
}

/// A bounded map from digest to value with per-entry deadlines.
pub struct DeadlineCache<V: Clone + Send + Sync + 'static> {
    inner: Option<Cache<Digest32, Entry<V>>>,
}

impl<V: Clone + Send + Sync + 'static> DeadlineCache<V> {
    /// A cache of at most `capacity` entries; `capacity == 0` disables it.
    pub fn new(capacity: u64) -> Self {
        let inner = (capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByDeadline)
                .build()
        });
        DeadlineCache { inner }
    }

    /// Like [`new`](Self::new), calling `on_evict` for every entry dropped because it
    /// expired or the size limit pushed it out (not for [`clear`](Self::clear)). The cache
    /// notices both lazily, during its housekeeping, so the count lags a little.
    pub fn counting_evictions(capacity: u64, on_evict: Arc<dyn Fn() + Send + Sync>) -> Self {
        let inner = (capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByDeadline)
                .eviction_listener(move |_key, _value, cause: RemovalCause| {
                    if cause.was_evicted() {
                        on_evict();
                    }
                })
                .build()
        });
        DeadlineCache { inner }
    }

    /// The value, if present and its deadline has not passed.
    pub fn get(&self, key: &Digest32) -> Option<V> {
        let entry = self.inner.as_ref()?.get(key)?;
        (Instant::now() < entry.deadline).then_some(entry.value)
    }

    /// Stores `value` until `deadline` (ignored when the deadline has passed).
    pub fn insert(&self, key: Digest32, value: V, deadline: Instant) {
        if let Some(cache) = &self.inner {
            if deadline > Instant::now() {
                cache.insert(key, Entry { value, deadline });
            }
        }
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
    }
}

/// The `Instant` at which a token with expiry `exp` (seconds since the epoch) expires, capped
/// to `now + ttl`. `None` when it already has.
pub fn deadline_for(exp: u64, ttl: Duration) -> Option<Instant> {
    let now_unix = super::unix_now();
    let left = exp.checked_sub(now_unix).filter(|l| *l > 0)?;
    let until = Duration::from_secs(left).min(ttl);
    (!until.is_zero()).then(|| Instant::now() + until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_length_prefixed() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(digest(&[b"x"]), digest(&[b"x"]));
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let c: DeadlineCache<u32> = DeadlineCache::new(10);
        let k = digest(&[b"k"]);
        c.insert(k, 1, Instant::now() + Duration::from_millis(50));
        assert_eq!(c.get(&k), Some(1));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.get(&k), None);
        c.insert(k, 2, Instant::now() - Duration::from_secs(1));
        assert_eq!(c.get(&k), None, "a past deadline is not stored");
    }

    #[test]
    fn evictions_by_size_are_counted_and_clears_are_not() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let n = Arc::new(AtomicU64::new(0));
        let counted = n.clone();
        let c: DeadlineCache<u32> = DeadlineCache::counting_evictions(
            2,
            Arc::new(move || {
                counted.fetch_add(1, Ordering::Relaxed);
            }),
        );
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..10u32 {
            c.insert(digest(&[&i.to_le_bytes()]), i, later);
        }
        c.inner.as_ref().unwrap().run_pending_tasks();
        assert!(
            n.load(Ordering::Relaxed) >= 8,
            "{}",
            n.load(Ordering::Relaxed)
        );
        let before = n.load(Ordering::Relaxed);
        c.clear();
        c.inner.as_ref().unwrap().run_pending_tasks();
        assert_eq!(n.load(Ordering::Relaxed), before);
    }

    #[test]
    fn zero_capacity_disables() {
        let c: DeadlineCache<u32> = DeadlineCache::new(0);
        let k = digest(&[b"k"]);
        c.insert(k, 1, Instant::now() + Duration::from_secs(5));
        assert_eq!(c.get(&k), None);
    }

    #[test]
    fn deadlines_never_exceed_exp() {
        let now = crate::auth::unix_now();
        assert!(deadline_for(now - 1, Duration::from_secs(30)).is_none());
        let d = deadline_for(now + 5, Duration::from_secs(30)).unwrap();
        assert!(d <= Instant::now() + Duration::from_secs(5));
        let d = deadline_for(now + 500, Duration::from_secs(30)).unwrap();
        assert!(d <= Instant::now() + Duration::from_secs(30));
    }
}
