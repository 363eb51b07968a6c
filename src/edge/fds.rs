//! Descriptors for client connections versus everything else.
//!
//! Every downstream connection holds a descriptor; so do backend connections (the pool),
//! the store, the authorization server's JWKS fetches, log and key files. A gateway whose
//! clients take every descriptor can no longer reach its own backends, so the connection cap
//! is fitted under the process's descriptor limit with `reserved_fds` left over. The soft
//! limit is raised towards the hard one first when the configuration asks for more.

/// What the descriptor limit allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorPlan {
    /// The soft `RLIMIT_NOFILE` in force (after raising it), if it could be read.
    pub soft_limit: Option<u64>,
    /// The soft limit before the gateway raised it (None when it did not).
    pub raised_from: Option<u64>,
    /// The connection cap in force.
    pub max_connections: usize,
}

/// Fits `configured` connections under the descriptor limit with `reserved` to spare.
pub fn plan(configured: usize, reserved: usize) -> DescriptorPlan {
    let want = configured.saturating_add(reserved) as u64;
    let Some((soft, hard)) = nofile() else {
        return DescriptorPlan {
            soft_limit: None,
            raised_from: None,
            max_connections: configured,
        };
    };
    let mut raised_from = None;
    let mut soft_now = soft;
    if soft < want && hard > soft {
        let target = want.min(hard);
        if set_nofile(target, hard) {
            raised_from = Some(soft);
            soft_now = target;
        }
    }
    DescriptorPlan {
        soft_limit: Some(soft_now),
        raised_from,
        max_connections: fit(configured, reserved, soft_now),
    }
}

/// The cap under a soft limit: at most `soft - reserve`, at least one, where the reserve is
/// `reserved` but never more than half the limit (a small limit is shared, not all kept).
pub fn fit(configured: usize, reserved: usize, soft: u64) -> usize {
    let reserve = (reserved as u64).min(soft / 2);
    let room = usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

// `rlim_t` is not 64 bits wide on every Unix.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn nofile() -> Option<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    (rc == 0).then_some((rl.rlim_cur as u64, rl.rlim_max as u64))
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn set_nofile(soft: u64, hard: u64) -> bool {
    let rl = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we own.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 }
}

#[cfg(not(unix))]
fn nofile() -> Option<(u64, u64)> {
    None
}

#[cfg(not(unix))]
fn set_nofile(_: u64, _: u64) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn the_cap_leaves_the_reserve_free() {
        assert_eq!(fit(4096, 256, 1024), 768);
        assert_eq!(fit(100, 256, 1024), 100);
        assert_eq!(
            fit(4096, 256, 256),
            128,
            "at most half of a small limit is kept"
        );
        assert_eq!(fit(4096, 256, 100), 50);
        assert_eq!(fit(4096, 256, 1), 1);
        assert_eq!(fit(4096, 256, u64::MAX), 4096);
    }
}
