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
//! The binary's allocator is jemalloc, which hands freed pages back after a decay time on
//! its own; [`release_freed_heap`] makes that immediate (`arena.<all>.purge`) and also
//! trims glibc's heap, which the C libraries (SQLite) allocate from. It costs a walk over
//! the allocators' free memory, so it is called after events that free a lot (a published
//! catalog), never per request, and at most once per [`MIN_SPACING_MS`].

use std::sync::atomic::{AtomicI64, Ordering};

/// Least time between two releases, milliseconds.
pub const MIN_SPACING_MS: i64 = 5_000;

static LAST_RELEASE_MS: AtomicI64 = AtomicI64::new(i64::MIN / 2);

/// Returns freed heap memory to the operating system (jemalloc's purge and glibc's
/// `malloc_trim(0)`), unless that was done less than [`MIN_SPACING_MS`] ago. Returns
/// whether it ran.
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

fn trim() {
    purge_jemalloc();
    glibc_trim();
}

/// jemalloc (the binary's allocator) returns freed pages after a decay time by itself;
/// this returns them now: `arena.<all>.purge`.
#[cfg(all(unix, not(target_env = "musl")))]
fn purge_jemalloc() {
    // 4096 is MALLCTL_ARENAS_ALL: every arena.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a NUL-terminated mallctl name that takes and returns nothing (null old and
    // new pointers, length 0), as jemalloc documents for `arena.<i>.purge`.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

#[cfg(not(all(unix, not(target_env = "musl"))))]
fn purge_jemalloc() {}

/// glibc's malloc still serves the C libraries (SQLite among them), and the whole process
/// where jemalloc is not the allocator (the library's own tests).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory; it takes
    // the arenas' locks itself and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_trim() {}

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
