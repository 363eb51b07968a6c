//! What a process holds, read from `/proc/<pid>`: open file descriptors, threads and resident
//! memory. The fault tests take it before and after many failing calls to show that nothing
//! leaks (docs/reliability.md, "Nothing leaks").

use std::time::Duration;

/// A snapshot of one process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: u64,
    /// The highest resident memory so far (`VmHWM`): what a transient buffer costs.
    pub peak_rss_kib: u64,
}

/// How far above a baseline a process may stay after the faults (docs/reliability.md).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: u64,
}

/// The tolerance docs/reliability.md states: 16 descriptors, 2 threads, 64 MiB.
pub const TOLERANCE: Tolerance = Tolerance {
    fds: 16,
    threads: 2,
    rss_kib: 64 * 1024,
};

impl Usage {
    /// Reads `/proc/<pid>`; panics if the process is gone.
    pub fn of(pid: u32) -> Usage {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Usage {
            fds,
            threads: field("Threads:") as usize,
            rss_kib: field("VmRSS:"),
            peak_rss_kib: field("VmHWM:"),
        }
    }

    /// Whether `self` is within `tol` of `baseline`.
    pub fn within(&self, baseline: &Usage, tol: Tolerance) -> bool {
        self.fds <= baseline.fds + tol.fds
            && self.threads <= baseline.threads + tol.threads
            && self.rss_kib <= baseline.rss_kib + tol.rss_kib
    }
}

/// Waits (at most 20 s) for process `pid` to come back within [`TOLERANCE`] of `baseline`;
/// panics with both snapshots otherwise. Returns the snapshot that passed.
pub async fn settles_to(pid: u32, baseline: &Usage, what: &str) -> Usage {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = Usage::of(pid);
        if now.within(baseline, TOLERANCE) {
            return now;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "{what}: the gateway did not come back to its baseline within {TOLERANCE:?}\n  baseline {baseline:?}\n  now      {now:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
