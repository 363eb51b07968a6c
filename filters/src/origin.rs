//! Origin and Host checks (DNS-rebinding protection).
//!
//! Origin rules (Cortex-compatible, stricter on localhost):
//! - no `Origin` header → allowed (non-browser clients);
//! - `Origin: null` or an unparsable origin → denied unless listed verbatim;
//! - an exact entry (`https://app.example.com`) matches that origin (scheme, host, port;
//!   default ports normalised, case-insensitive);
//! - a `*.suffix` entry (`*.example.com`) matches the host `example.com` itself and any
//!   subdomain, whatever the scheme or port;
//! - `*` alone allows every origin;
//! - localhost origins (`localhost`, `127.0.0.1`, `[::1]`, any scheme or port) are allowed only
//!   when `allow_localhost` is set (the dev auth modes), unless listed.
//!
//! Host rule: when the gateway listens on loopback only, a browser on a DNS-rebound name could
//! reach it, so the `Host` header must name a loopback host (`localhost`, `127.0.0.1`, `[::1]`,
//! any port) or one of the configured allowed hosts (the canonical URI's host is always
//! allowed). A missing Host (HTTP/1.0) is allowed; on HTTP/2 the `:authority` is used.

/// A compiled origin allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    exact: Vec<String>,
    suffixes: Vec<String>,
    allow_all: bool,
    allow_localhost: bool,
}

impl OriginPolicy {
    /// Compiles `entries` (exact origins, `*.suffix`, or `*`).
    pub fn new<I, S>(entries: I, allow_localhost: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let _ = (entries.into_iter().count(), allow_localhost);
        todo!()
    }

    /// Whether a request with this `Origin` header value (None = absent) is allowed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        todo!("{origin:?} {self:?}")
    }
}

/// A compiled Host check for loopback listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    enforce: bool,
    allowed: Vec<String>,
}

impl HostPolicy {
    /// `enforce` is true when every listener is on loopback; `allowed` are extra host names
    /// (without port, lowercase) that are accepted, e.g. the canonical URI's host.
    pub fn new<I, S>(enforce: bool, allowed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let _ = (enforce, allowed.into_iter().count());
        todo!()
    }

    /// Whether a request with this `Host` header value (None = absent) is allowed.
    pub fn allows(&self, host: Option<&str>) -> bool {
        todo!("{host:?} {self:?}")
    }
}

/// Whether `host` (no port) is a loopback name: `localhost`, `*.localhost`, `127.x.x.x`, `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    todo!("{host}")
}
