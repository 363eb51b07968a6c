//! Giving freed heap memory back to the operating system after the few moments that free a
//! lot of it at once.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena for reuse, and only
//! returns the top of the main heap by itself. A catalog refresh builds the new merged
//! catalog beside the old one (discovery snapshots, JSON trees, cached pages) and then drops
//! the old one: measured on a 10,000-tool catalog, about a third of the process's RSS after
//! the first publication was such freed memory (303 of 322 MB anonymous before
//! `malloc_trim`, 189 after). [`release_freed_heap`] asks glibc to hand it back.
//!
//! It costs a walk over the arenas' free lists, so it is called after events that free a
//! lot (a published catalog), never per request, and at most once per
//! [`MIN_SPACING_MS`]. On other allocators or C libraries it does nothing.

use std::sync::atomic::{AtomicI64, Ordering};

/// Least time between two releases, milliseconds.
pub const MIN_SPACING_MS: i64 = 5_000;

static LAST_RELEASE_MS: AtomicI64 = AtomicI64::new(i64::MIN / 2);

/// Returns freed heap memory to the operating system (glibc `malloc_trim(0)`), unless
/// that was done less than [`MIN_SPACING_MS`] ago. Returns whether it ran.
pub fn release_freed_heap() -> bool {
    let now = crate::clock::now_ms();
    let last = LAST_RELEASE_MS.load(Ordering::Relaxed);
    if now - last < MIN_SPACING_MS
        || LAST_RELEASE_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    trim();
    true
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory; it takes
    // the arenas' locks itself and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_spaced() {
        // A freed block of several MiB, then a release: it runs once, and a second call
        // right after is skipped.
        drop(vec![1u8; 8 << 20]);
        assert!(release_freed_heap());
        assert!(!release_freed_heap());
    }
}
