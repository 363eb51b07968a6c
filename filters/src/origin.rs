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
//!
//! Parsing is done by hand (no URL crate): an origin is `scheme://host[:port]` with an IPv6
//! host in brackets, nothing else. Hosts are lowercased, a single trailing dot is dropped and
//! IPv6 addresses are written in their canonical compressed form, so equivalent spellings
//! compare equal. `*` matches every *well-formed* origin; `null` and other unparsable values
//! still need a verbatim entry, because they come from sandboxed or opaque contexts that an
//! operator should opt into explicitly.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A compiled origin allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Canonical origins (`scheme://host:port`), plus unparsable entries kept verbatim (such
    /// as `null`); the two kinds can never collide because a canonical form always parses.
    exact: Vec<String>,
    /// Host suffixes from `*.suffix` entries, lowercase, without the `*.`.
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
        let mut policy = OriginPolicy {
            allow_localhost,
            ..OriginPolicy::default()
        };
        for entry in entries {
            policy.add_entry(entry.as_ref().trim());
        }
        policy
    }

    /// Files one trimmed configuration entry under the right rule.
    fn add_entry(&mut self, entry: &str) {
        if entry.is_empty() {
            return;
        }
        if entry == "*" {
            self.allow_all = true;
            return;
        }
        if let Some(suffix) = entry.strip_prefix("*.") {
            if let Some(host) = normalize_dns_host(suffix) {
                self.suffixes.push(host);
                return;
            }
        }
        // Configuration may carry a trailing slash (`https://a.example/`); a browser never does.
        let without_slash = entry.strip_suffix('/').unwrap_or(entry);
        match Origin::parse(without_slash) {
            Some(origin) => self.exact.push(origin.canonical()),
            None => self.exact.push(entry.to_owned()),
        }
    }

    /// Whether a request with this `Origin` header value (None = absent) is allowed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(raw) = origin else {
            return true;
        };
        let raw = raw.trim();
        let Some(origin) = Origin::parse(raw) else {
            return self.exact.iter().any(|e| e == raw);
        };
        if self.allow_all || (self.allow_localhost && is_loopback_host(&origin.host)) {
            return true;
        }
        if self
            .suffixes
            .iter()
            .any(|suffix| host_matches_suffix(&origin.host, suffix))
        {
            return true;
        }
        if self.exact.is_empty() {
            return false;
        }
        let canonical = origin.canonical();
        self.exact.contains(&canonical)
    }
}

/// A compiled Host check for loopback listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    enforce: bool,
    /// Normalised host names (lowercase, no port, IPv6 without brackets).
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
        // Be lenient with configuration: accept a port, brackets or a bare IPv6 address too.
        let allowed = allowed
            .into_iter()
            .filter_map(|h| {
                let h = h.as_ref().trim();
                parse_authority(h)
                    .map(|a| a.host)
                    .or_else(|| h.parse::<Ipv6Addr>().ok().map(|ip| ip.to_string()))
            })
            .collect();
        HostPolicy { enforce, allowed }
    }

    /// Whether a request with this `Host` header value (None = absent) is allowed.
    pub fn allows(&self, host: Option<&str>) -> bool {
        if !self.enforce {
            return true;
        }
        // Without a Host nothing says which name the client meant: a rebound name cannot
        // be told from a loopback one, so a loopback listener refuses it.
        let Some(raw) = host else {
            return false;
        };
        match parse_authority(raw.trim()) {
            Some(authority) => {
                is_loopback_host(&authority.host) || self.allowed.contains(&authority.host)
            }
            None => false,
        }
    }
}

/// Whether `host` (no port) is a loopback name: `localhost`, `*.localhost`, `127.x.x.x`, `::1`.
///
/// Brackets around an IPv6 address and a trailing dot are tolerated; an IPv4-mapped loopback
/// (`::ffff:127.0.0.1`) counts as loopback too.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if is_localhost_name(host) {
        return true;
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return ip.is_loopback();
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
    }
    false
}

/// `localhost` or a non-empty label under it, case-insensitively.
fn is_localhost_name(host: &str) -> bool {
    const NAME: &str = "localhost";
    const DOT_NAME: &str = ".localhost";
    if host.eq_ignore_ascii_case(NAME) {
        return true;
    }
    let n = host.len();
    n > DOT_NAME.len()
        && host.is_char_boundary(n - DOT_NAME.len())
        && host[n - DOT_NAME.len()..].eq_ignore_ascii_case(DOT_NAME)
        && normalize_dns_host(host).is_some()
}

/// Whether `host` is `suffix` itself or a subdomain of it (label boundary respected, so
/// `badexample.com` is not under `example.com`).
fn host_matches_suffix(host: &str, suffix: &str) -> bool {
    match host.strip_suffix(suffix) {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.'),
        None => false,
    }
}

/// A parsed, normalised origin.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    /// Lowercase scheme.
    scheme: String,
    /// Normalised host (see [`parse_authority`]).
    host: String,
    /// Whether the host is an IPv6 address (bracketed when serialised).
    ipv6: bool,
    /// The explicit port, or the scheme's default; `None` for an unknown scheme without port.
    port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port]`; anything more (path, query, userinfo) or less is `None`.
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, authority) = s.split_once("://")?;
        if !is_scheme(scheme) {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let authority = parse_authority(authority)?;
        let port = authority.port.or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        Some(Origin {
            scheme,
            host: authority.host,
            ipv6: authority.ipv6,
            port,
        })
    }

    /// The comparison form: `scheme://host:port`, default port made explicit.
    fn canonical(&self) -> String {
        let (open, close) = if self.ipv6 { ("[", "]") } else { ("", "") };
        match self.port {
            Some(port) => format!("{}://{open}{}{close}:{port}", self.scheme, self.host),
            None => format!("{}://{open}{}{close}", self.scheme, self.host),
        }
    }
}

/// RFC 3986 scheme: a letter followed by letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A parsed `host[:port]`.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    /// Lowercase DNS name or IPv4 address without a trailing dot, or a canonical IPv6
    /// address without brackets.
    host: String,
    ipv6: bool,
    port: Option<u16>,
}

/// Parses `host[:port]` or `[ipv6][:port]`; `None` for anything else (userinfo, paths, empty
/// host or port, bad characters).
fn parse_authority(s: &str) -> Option<Authority> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':')?)?),
        };
        return Some(Authority {
            host: ip.to_string(),
            ipv6: true,
            port,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (s, None),
    };
    Some(Authority {
        host: normalize_dns_host(host)?,
        ipv6: false,
        port,
    })
}

/// 1 to 5 ASCII digits fitting in a `u16`.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Lowercases a DNS name or IPv4 literal and drops one trailing dot; `None` unless it is
/// non-empty labels of letters, digits, `-` and `_` joined by dots.
fn normalize_dns_host(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let valid = !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        });
    valid.then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str], allow_localhost: bool) -> OriginPolicy {
        OriginPolicy::new(entries.iter().copied(), allow_localhost)
    }

    #[test]
    fn absent_origin_is_always_allowed() {
        assert!(policy(&[], false).allows(None));
        assert!(policy(&["https://a.example"], false).allows(None));
    }

    #[test]
    fn empty_list_denies_every_present_origin() {
        let p = policy(&[], false);
        assert!(!p.allows(Some("https://app.example.com")));
        assert!(!p.allows(Some("http://localhost:3000")));
        assert!(!p.allows(Some("")));
    }

    #[test]
    fn exact_entry_matches_scheme_host_and_port() {
        let p = policy(&["https://app.example.com"], false);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(!p.allows(Some("https://app.example.com:8443")));
        assert!(!p.allows(Some("https://other.example.com")));
        assert!(!p.allows(Some("https://sub.app.example.com")));
        assert!(!p.allows(Some("https://app.example.com.evil.test")));
    }

    #[test]
    fn default_ports_are_normalised_both_ways() {
        let p = policy(
            &["https://app.example.com:443", "http://web.example.com"],
            false,
        );
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("https://app.example.com:443")));
        assert!(p.allows(Some("http://web.example.com:80")));
        assert!(!p.allows(Some("http://web.example.com:443")));
        assert!(!p.allows(Some("https://app.example.com:80")));
        let p = policy(&["https://app.example.com:8443"], false);
        assert!(p.allows(Some("https://app.example.com:8443")));
        assert!(!p.allows(Some("https://app.example.com")));
    }

    #[test]
    fn matching_is_case_insensitive_and_tolerates_config_slash_and_spaces() {
        let p = policy(&["  HTTPS://App.Example.COM/ "], false);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("HTTPS://APP.EXAMPLE.COM")));
        assert!(p.allows(Some(" https://app.example.com ")));
        // A browser never sends a path; a header with one is malformed.
        assert!(!p.allows(Some("https://app.example.com/")));
    }

    #[test]
    fn wildcard_suffix_matches_apex_and_subdomains_only() {
        let p = policy(&["*.example.com"], false);
        assert!(p.allows(Some("https://example.com")));
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("http://a.b.example.com:8080")));
        assert!(p.allows(Some("https://APP.Example.Com")));
        assert!(!p.allows(Some("https://badexample.com")));
        assert!(!p.allows(Some("https://example.com.evil.test")));
        assert!(!p.allows(Some("https://example.org")));
        assert!(!p.allows(Some("https://xample.com")));
    }

    #[test]
    fn star_allows_every_well_formed_origin_but_not_null() {
        let p = policy(&["*"], false);
        assert!(p.allows(Some("https://anything.test")));
        assert!(p.allows(Some("http://localhost:1234")));
        assert!(!p.allows(Some("null")));
        assert!(!p.allows(Some("garbage")));
    }

    #[test]
    fn null_is_denied_unless_listed_verbatim() {
        assert!(!policy(&["https://a.example"], true).allows(Some("null")));
        let p = policy(&["null"], false);
        assert!(p.allows(Some("null")));
        assert!(!p.allows(Some("NULL")));
        assert!(!p.allows(Some("https://a.example")));
    }

    #[test]
    fn localhost_needs_allow_localhost_or_an_entry() {
        let locals = [
            "http://localhost",
            "http://localhost:3000",
            "https://LOCALHOST:8443",
            "http://127.0.0.1:5173",
            "http://127.1.2.3",
            "http://[::1]:3213",
            "http://[0:0:0:0:0:0:0:1]",
            "http://app.localhost:3000",
            "vscode-webview://localhost",
        ];
        let closed = policy(&["https://app.example.com"], false);
        let open = policy(&["https://app.example.com"], true);
        for origin in locals {
            assert!(!closed.allows(Some(origin)), "{origin}");
            assert!(open.allows(Some(origin)), "{origin}");
        }
        let listed = policy(&["http://localhost:3000"], false);
        assert!(listed.allows(Some("http://localhost:3000")));
        assert!(!listed.allows(Some("http://localhost:3001")));
        // Not loopback even in dev mode.
        assert!(!open.allows(Some("http://0.0.0.0:3000")));
        assert!(!open.allows(Some("http://localhost.evil.test")));
        assert!(!open.allows(Some("http://128.0.0.1")));
    }

    #[test]
    fn ipv6_origins_compare_in_canonical_form() {
        let p = policy(&["https://[2001:DB8::1]"], false);
        assert!(p.allows(Some("https://[2001:db8::1]")));
        assert!(p.allows(Some("https://[2001:db8:0:0:0:0:0:1]:443")));
        assert!(!p.allows(Some("https://[2001:db8::2]")));
        assert!(!p.allows(Some("https://2001:db8::1")));
    }

    #[test]
    fn garbage_origins_are_denied() {
        let p = policy(&["*.example.com", "https://app.example.com"], true);
        for bad in [
            "",
            "app.example.com",
            "https://",
            "https://:443",
            "https://app.example.com:",
            "https://app.example.com:99999",
            "https://app.example.com:-1",
            "https://user@app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://app..example.com",
            "https://app example.com",
            "https://[::1",
            "https://[not-ip]",
            "https://[::1]x",
            "1http://app.example.com",
            "://app.example.com",
            "https://app.example.com\u{0}",
            "https://ápp.example.com",
        ] {
            assert!(!p.allows(Some(bad)), "{bad:?}");
        }
    }

    #[test]
    fn unparsable_entries_only_match_verbatim() {
        let p = policy(&["chrome-extension://abc/def", "*.", "*.bad host"], false);
        assert!(p.allows(Some("chrome-extension://abc/def")));
        assert!(!p.allows(Some("chrome-extension://abc")));
        assert!(!p.allows(Some("https://bad")));
        assert_eq!(p.suffixes, Vec::<String>::new());
    }

    #[test]
    fn trailing_dot_is_the_same_host() {
        let p = policy(&["*.example.com"], false);
        assert!(p.allows(Some("https://app.example.com.")));
        let p = policy(&["https://app.example.com."], false);
        assert!(p.allows(Some("https://app.example.com")));
    }

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost",
            "LocalHost",
            "localhost.",
            "app.localhost",
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "[::1]",
            "0:0:0:0:0:0:0:1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            ".localhost",
            "localhost.evil.test",
            "notlocalhost",
            "evil-localhost",
            "0.0.0.0",
            "128.0.0.1",
            "127.0.0",
            "::",
            "::2",
            "[::1",
            "example.com",
            "localhost:3213",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn host_policy_accepts_loopback_forms_with_and_without_port() {
        let p = HostPolicy::new(true, Vec::<String>::new());
        for host in [
            "localhost",
            "localhost:3213",
            "LOCALHOST:3213",
            "127.0.0.1",
            "127.0.0.1:3213",
            "[::1]",
            "[::1]:3213",
            "app.localhost:80",
        ] {
            assert!(p.allows(Some(host)), "{host}");
        }
        assert!(!p.allows(None), "no Host: nothing to check, refused");
        assert!(HostPolicy::new(false, Vec::<String>::new()).allows(None));
    }

    #[test]
    fn host_policy_denies_rebound_and_garbage_names() {
        let p = HostPolicy::new(true, ["gateway.example.com"]);
        for host in [
            "evil.test",
            "evil.test:3213",
            "localhost.evil.test",
            "192.168.1.10:3213",
            "0.0.0.0:3213",
            "",
            "::1",
            "[::1",
            "[::1]:",
            "localhost:",
            "localhost:abc",
            "localhost:70000",
            "user@localhost",
            "localhost/path",
            "gateway.example.com.evil.test",
        ] {
            assert!(!p.allows(Some(host)), "{host:?}");
        }
    }

    #[test]
    fn host_policy_accepts_configured_hosts() {
        let p = HostPolicy::new(
            true,
            [
                "gateway.example.com",
                " MCP.Example.org ",
                "[2001:db8::1]",
                "::2",
                "x.test:8443",
            ],
        );
        assert!(p.allows(Some("gateway.example.com")));
        assert!(p.allows(Some("gateway.example.com:443")));
        assert!(p.allows(Some("GATEWAY.EXAMPLE.COM:3213")));
        assert!(p.allows(Some("mcp.example.org")));
        assert!(p.allows(Some("[2001:db8::1]:8080")));
        assert!(p.allows(Some("[2001:DB8:0::1]")));
        assert!(p.allows(Some("[::2]")));
        assert!(p.allows(Some("x.test")));
        assert!(!p.allows(Some("sub.gateway.example.com")));
        assert!(!p.allows(Some("[2001:db8::3]")));
    }

    #[test]
    fn host_policy_not_enforced_allows_everything() {
        let p = HostPolicy::new(false, Vec::<&str>::new());
        for host in ["evil.test", "", "garbage host", "[::1"] {
            assert!(p.allows(Some(host)), "{host:?}");
        }
        assert!(p.allows(None));
        assert!(HostPolicy::default().allows(Some("evil.test")));
    }
}
