//! Shared pieces of the criterion benches: a counting global allocator (allocations per
//! operation) and the fixtures. Each bench uses a different subset, hence `dead_code`.
#![allow(dead_code)]

pub mod fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts allocations while [`ENABLED`] is set; otherwise a plain pass-through to the system
/// allocator (one relaxed load per call), so criterion's timings are not disturbed.
pub struct CountingAlloc;

static ENABLED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ENABLED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ENABLED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ENABLED.load(Ordering::Relaxed) {
            // A growth is a new allocation as far as the cost model goes.
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(
                new_size.saturating_sub(layout.size()) as u64,
                Ordering::Relaxed,
            );
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Allocations and bytes requested per call of `op`, averaged over `iters` calls (after one
/// untimed warm-up call, so lazily built state is not charged to the first call).
pub fn allocs_per_op<R>(iters: u64, mut op: impl FnMut() -> R) -> (f64, f64) {
    std::hint::black_box(op());
    ALLOCS.store(0, Ordering::Relaxed);
    BYTES.store(0, Ordering::Relaxed);
    ENABLED.store(true, Ordering::SeqCst);
    for _ in 0..iters {
        std::hint::black_box(op());
    }
    ENABLED.store(false, Ordering::SeqCst);
    let n = iters.max(1) as f64;
    (
        ALLOCS.load(Ordering::Relaxed) as f64 / n,
        BYTES.load(Ordering::Relaxed) as f64 / n,
    )
}

/// Collects `(name, allocs/op, bytes/op)` rows and prints them as one table.
#[derive(Default)]
pub struct AllocReport {
    rows: Vec<(String, f64, f64)>,
}

impl AllocReport {
    /// Measures `op` and records a row.
    pub fn measure<R>(&mut self, name: &str, iters: u64, op: impl FnMut() -> R) {
        let (allocs, bytes) = allocs_per_op(iters, op);
        self.rows.push((name.to_string(), allocs, bytes));
    }

    /// Prints the table (stdout, markdown) so it can be pasted into docs/performance.md.
    pub fn print(&self, title: &str) {
        println!("\n### {title}: allocations per operation\n");
        println!("| operation | allocs/op | bytes/op |");
        println!("|---|---:|---:|");
        for (name, allocs, bytes) in &self.rows {
            println!("| {name} | {allocs:.1} | {bytes:.0} |");
        }
        println!();
    }
}
