//! The HTTP edge's own limits: what a client may hold of the gateway before it has sent a
//! complete request, and how much request-body memory all requests together may pin.
//!
//! Pingora bounds each read of a request, not the request: a client sending one header byte
//! every few seconds would hold its connection (and a descriptor) forever. This module adds,
//! in front of Pingora's HTTP/1 session loop ([`app::EdgeApp`]):
//!
//! - a **connection cap**: one connection over `server.limits.max_connections` is answered
//!   `503` and closed; the cap is lowered at start so that `server.limits.reserved_fds`
//!   descriptors stay free for backend, store and authorization-server connections
//!   ([`fds`]);
//! - a **header deadline**: the whole header must arrive within `header_timeout` of its
//!   first byte ([`stream::EdgeStream`] holds the header back until it is complete, so a
//!   client that disconnects or stalls mid-header is dropped quietly, at debug level, and
//!   counted, instead of an ERROR line per attacker connection);
//! - a **body deadline**: the whole body within `body_timeout` of the header (`408`);
//! - a **body budget**: request bodies being read or held by all requests together stay
//!   under `body_budget` bytes (`503` with `Retry-After`) ([`body`]);
//! - a **takeover**: a long answer that only writes (an idle notification stream) leaves
//!   Pingora's session once its head is written and runs in a small task of its own, still
//!   under the connection cap ([`takeover`]).
//!
//! The counters ([`EdgeCounters`]) are plain atomics for the metrics endpoint to export.
//! docs/security.md lists every limit with its default and configuration key.

pub mod app;
pub mod body;
pub mod fds;
pub mod stream;
pub mod takeover;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::LimitsConfig;

pub use app::EdgeApp;
pub use body::{read_body, BodyPermit, EdgeBodyRead};
pub use stream::{Conn, EdgeStream};
pub use takeover::{After, Taken, Takeover};

/// The edge limits in force (from `server.limits`; the connection cap after [`fds`]).
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Total time for a request header, from its first byte.
    pub header_timeout: Duration,
    /// Total time for a request body, from the end of the header.
    pub body_timeout: Duration,
    /// Connections open at once (as configured; see [`Edge::max_connections`]).
    pub max_connections: usize,
    /// Descriptors kept free of client connections.
    pub reserved_fds: usize,
    /// Request-body bytes in memory at once, all requests together.
    pub body_budget: u64,
}

impl EdgeLimits {
    /// The limits of a configuration.
    pub fn from_config(c: &LimitsConfig) -> EdgeLimits {
        EdgeLimits {
            header_timeout: c.header_timeout,
            body_timeout: c.body_timeout,
            max_connections: c.max_connections.max(1),
            reserved_fds: c.reserved_fds,
            body_budget: c.body_budget,
        }
    }
}

/// Counters of the edge's refusals, for the metrics endpoint. Each only grows.
#[derive(Debug, Default)]
pub struct EdgeCounters {
    /// Connections answered 503 and closed because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed because the request header did not arrive within
    /// `header_timeout`.
    pub header_timeouts: AtomicU64,
    /// Requests answered 408 because the body did not arrive within `body_timeout`.
    pub body_timeouts: AtomicU64,
    /// Requests answered 503 because the body budget was spent.
    pub body_budget_refusals: AtomicU64,
    /// Connections the client closed (or reset) in the middle of a request header.
    pub disconnects_mid_header: AtomicU64,
    /// Connections closed because a request header passed 64 KiB.
    pub headers_too_large: AtomicU64,
}

impl EdgeCounters {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters' current values, by metric-friendly name.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("connections_refused", get(&self.connections_refused)),
            ("header_timeouts", get(&self.header_timeouts)),
            ("body_timeouts", get(&self.body_timeouts)),
            ("body_budget_refusals", get(&self.body_budget_refusals)),
            ("disconnects_mid_header", get(&self.disconnects_mid_header)),
            ("headers_too_large", get(&self.headers_too_large)),
        ]
    }
}

/// The edge of one gateway process: its limits, counters, open connections and the body
/// budget. Lives in `Shared` (process lifetime).
#[derive(Debug)]
pub struct Edge {
    limits: EdgeLimits,
    /// The refusal counters.
    pub counters: EdgeCounters,
    max_connections: AtomicUsize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    budget: Arc<Semaphore>,
}

/// Refusal answers written at once over the cap (and at most an eighth of the cap); beyond,
/// a connection is closed unanswered: answering must not itself take the descriptors the
/// cap keeps free.
const MAX_REFUSING: usize = 64;

impl Edge {
    /// The edge with `limits`.
    pub fn new(limits: EdgeLimits) -> Edge {
        let permits = usize::try_from(limits.body_budget)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Edge {
            max_connections: AtomicUsize::new(limits.max_connections),
            limits,
            counters: EdgeCounters::default(),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            budget: Arc::new(Semaphore::new(permits)),
        }
    }

    /// The limits as configured.
    pub fn limits(&self) -> &EdgeLimits {
        &self.limits
    }

    /// The connection cap in force (the configured one, lowered by [`Edge::fit_descriptors`]).
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Downstream connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Request-body bytes of the budget not held by any request now.
    pub fn body_budget_available(&self) -> usize {
        self.budget.available_permits()
    }

    /// Raises the process's descriptor limit where allowed and lowers the connection cap so
    /// that `reserved_fds` stay free. Called once by `serve`.
    pub fn fit_descriptors(&self) -> fds::DescriptorPlan {
        let plan = fds::plan(self.limits.max_connections, self.limits.reserved_fds);
        self.max_connections
            .store(plan.max_connections, Ordering::Relaxed);
        plan
    }

    /// A slot for one more connection, or `None` at the cap.
    pub fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max_connections();
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= max {
                return None;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => open = now,
            }
        }
    }

    /// Whether one more refusal may be answered now (else the connection is just closed).
    fn begin_refusal(self: &Arc<Self>) -> Option<Refusing> {
        let max = MAX_REFUSING.min(self.max_connections() / 8).max(1);
        if self.refusing.fetch_add(1, Ordering::AcqRel) >= max {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Refusing(self.clone()))
    }

    fn budget(&self) -> &Arc<Semaphore> {
        &self.budget
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct Slot(Arc<Edge>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One refusal being answered.
struct Refusing(Arc<Edge>);

impl Drop for Refusing {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request's `Host` is refused with 400 before anything else (RFC 9112 §3.2): an
/// HTTP/1.1 request must carry exactly one `Host`, and a `Host` that is not visible ASCII
/// cannot be checked against the DNS-rebinding rule.
pub fn host_problem(req: &pingora::http::RequestHeader) -> Option<&'static str> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version == http::Version::HTTP_11 => {
            Some("the request has no Host header (required in HTTP/1.1)")
        }
        (None, _) => None,
        (Some(_), Some(_)) => Some("the request has more than one Host header"),
        (Some(v), None) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() => None,
            Ok(_) => Some("the Host header is empty"),
            Err(_) => Some("the Host header is not visible ASCII"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{BodyPermit, Edge, EdgeLimits};

    fn edge(max_connections: usize, body_budget: u64) -> Arc<Edge> {
        Arc::new(Edge::new(EdgeLimits {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            max_connections,
            reserved_fds: 0,
            body_budget,
        }))
    }

    #[test]
    fn connections_are_admitted_up_to_the_cap_and_freed_on_drop() {
        let edge = edge(2, 1024);
        let a = edge.try_admit();
        let b = edge.try_admit();
        assert!(a.is_some() && b.is_some());
        assert!(edge.try_admit().is_none(), "the third is over the cap");
        assert_eq!(edge.open_connections(), 2);
        drop(a);
        assert!(edge.try_admit().is_some(), "a slot is free again");
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let edge = edge(2, 100);
        let mut first = BodyPermit::default();
        let mut second = BodyPermit::default();
        assert!(first.grow(edge.budget(), 60));
        assert!(!second.grow(edge.budget(), 60), "60 + 60 > 100");
        assert!(second.grow(edge.budget(), 40));
        assert_eq!(edge.body_budget_available(), 0);
        assert_eq!(first.bytes() + second.bytes(), 100);
        drop(first);
        assert_eq!(edge.body_budget_available(), 60);
    }
}
