//! What the harness reads from the kernel: RSS and CPU time of a process or thread, the
//! machine description, and the open-files limit.

use std::fs;

/// The calling thread's kernel thread id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Clock ticks per second (`utime`/`stime` unit).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A `Vm*:` line of `/proc/<pid>/status` in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory (`VmRSS`) in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory (`VmHWM`) in KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// `utime + stime` of a `stat` file's content, in ticks. Fields are counted after the
/// command name's closing parenthesis (the name may contain spaces).
fn stat_cpu(text: &str) -> Option<u64> {
    stat_user_sys(text).map(|(u, s)| u + s)
}

/// (utime, stime) in ticks from a `stat` line.
fn stat_user_sys(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// Kernel (system) CPU time of a whole process, in ticks: the part of its CPU spent in
/// syscalls (sockets, epoll, wake-ups).
pub fn sys_ticks(pid: u32) -> Option<u64> {
    stat_user_sys(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, s)| s)
}

/// CPU time of a whole process (all threads), in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_cpu(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of a whole process in nanoseconds: the sum over its live threads of the time on
/// a CPU from `/proc/<pid>/task/<tid>/schedstat` (the scheduler's clock, not rounded to
/// ticks; for one-off measurements of a few milliseconds). Threads that ended are not
/// counted; the gateway's worker threads live as long as it does.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .take(4096)
    {
        let text = fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// CPU time of one thread of this process, in ticks.
pub fn thread_cpu_ticks(tid: i32) -> Option<u64> {
    stat_cpu(&fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// CPU time (user + system) of the calling thread in microseconds (`RUSAGE_THREAD`: exact,
/// not tick-rounded).
pub fn self_thread_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Machine-wide CPU time from the `cpu` line of /proc/stat: (busy, total) in ticks, where
/// busy excludes idle and iowait.
pub fn machine_cpu() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Raises `RLIMIT_NOFILE` (soft, and hard when permitted) towards `want`; children inherit it.
/// Returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        let target = want.min(lim.rlim_max);
        if lim.rlim_cur < target {
            let soft = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
                return target;
            }
        }
        lim.rlim_cur
    }
}

/// The soft `RLIMIT_NOFILE` in force.
pub fn nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// The machine the run happened on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal in MiB.
    pub mem_mib: u64,
    /// Kernel release.
    pub kernel: String,
}

/// Reads the machine description.
pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        mem_mib: mem_kib / 1024,
        kernel,
    }
}

/// Checks the `/proc/<pid>/stat` field arithmetic (run at harness start).
pub fn selftest() -> Result<(), String> {
    match stat_cpu("123 (a b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14") {
        Some(23) => Ok(()),
        other => Err(format!("stat parsing gave {other:?}, expected 23")),
    }
}
