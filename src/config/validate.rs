//! Checks that need the whole typed configuration: ranges, URLs, and contradictions between
//! keys. Every problem is collected (errors refuse the start, warnings are printed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use url::{Host, Url};

use super::overlay::backend_var;
use super::schema::{
    AuthMode, BackendConfig, BackendKindConfig, Config, Naming, DEFAULT_NATIVE_IDLE,
};
use super::tree::Seg;
use super::units::{format_duration, format_size};

/// Problems found, each with its path in the typed configuration.
#[derive(Debug, Default)]
pub struct Findings {
    pub(crate) errors: Vec<(Vec<Seg>, String)>,
    pub(crate) warnings: Vec<(Vec<Seg>, String)>,
}

impl Findings {
    /// An error at `path`: the configuration is refused.
    pub fn error(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.errors.push((path, message.into()));
    }
    /// A warning at `path`: printed at start.
    pub fn warn(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.warnings.push((path, message.into()));
    }
}

/// The path of nested keys, e.g. `p(&["auth", "mint", "key_file"])`.
pub fn p(keys: &[&str]) -> Vec<Seg> {
    super::tree::keys(keys)
}

/// The path of an item of a list, e.g. `pi(&["backends"], 2)`.
pub fn pi(keys: &[&str], index: usize) -> Vec<Seg> {
    let mut path = p(keys);
    path.push(Seg::Index(index));
    path
}

/// The path of a key of an item of a list.
pub fn pik(keys: &[&str], index: usize, key: &str) -> Vec<Seg> {
    let mut path = pi(keys, index);
    path.push(Seg::Key(key.into()));
    path
}

/// Runs every check.
pub(crate) fn validate(config: &Config) -> Findings {
    let mut f = Findings::default();
    let listeners = check_listeners(config, &mut f);
    check_server(config, &mut f);
    check_sessions(config, &mut f);
    check_catalog(config, &mut f);
    check_auth(config, &listeners, &mut f);
    check_backends(config, &mut f);
    check_scopes(config, &mut f);
    check_tickets(config, &mut f);
    check_outbound(config, &mut f);
    super::vault::check(config, &mut f);
    super::identity::check(config, &mut f);
    if config.logging.level.trim().is_empty() {
        f.error(p(&["logging", "level"]), "must not be empty (e.g. `info`)");
    }
    f
}

fn check_listeners(config: &Config, f: &mut Findings) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    if config.server.listen.is_empty() {
        f.error(
            p(&["server", "listen"]),
            "at least one listen address is required (e.g. 127.0.0.1:3213)",
        );
    }
    for (i, text) in config.server.listen.iter().enumerate() {
        match super::parse_listen(text) {
            Ok(addr) if addrs.contains(&addr) => {
                f.error(
                    pi(&["server", "listen"], i),
                    format!("`{text}` is listed twice"),
                );
            }
            Ok(addr) => addrs.push(addr),
            Err(message) => f.error(pi(&["server", "listen"], i), message),
        }
    }
    if let Some(tls) = &config.server.tls {
        if tls.listen.is_empty() {
            f.error(
                p(&["server", "tls", "listen"]),
                "at least one TLS listen address is required (e.g. 0.0.0.0:8443), or remove server.tls",
            );
        }
        for (i, text) in tls.listen.iter().enumerate() {
            match super::parse_listen(text) {
                Ok(addr) if addrs.contains(&addr) => {
                    f.error(
                        pi(&["server", "tls", "listen"], i),
                        format!("`{text}` is already a listener (server.listen or server.tls.listen): one address serves either plain HTTP or TLS"),
                    );
                }
                Ok(addr) => addrs.push(addr),
                Err(message) => f.error(pi(&["server", "tls", "listen"], i), message),
            }
        }
        for (key, value) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
            if value.trim().is_empty() {
                f.error(p(&["server", "tls", key]), "must name a PEM file");
            }
        }
    }
    addrs
}

/// Why `text` is not an absolute http(s) URL, if it is not.
pub fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` must be an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` must not carry credentials; use the token settings instead"
        ));
    }
    Ok(url)
}

/// Loopback: `localhost`, 127.0.0.0/8, ::1.
fn is_loopback_host(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_server(config: &Config, f: &mut Findings) {
    let server = &config.server;
    if server.name.trim().is_empty() {
        f.error(p(&["server", "name"]), "must not be empty");
    }
    if let Some(uri) = &server.canonical_uri {
        let path = p(&["server", "canonical_uri"]);
        match http_url(uri) {
            Err(message) => f.error(path, message),
            Ok(url) => {
                if url.query().is_some() || url.fragment().is_some() {
                    f.error(path, format!("`{uri}` must not have a query or fragment"));
                } else if url.path() == "/" {
                    f.error(
                        path,
                        format!("`{uri}` must include the endpoint path, e.g. {}mcp", url),
                    );
                }
            }
        }
    }
    if let Some(website) = &server.website_url {
        if let Err(message) = http_url(website) {
            f.error(p(&["server", "website_url"]), message);
        }
    }
    for (i, origin) in server.allowed_origins.iter().enumerate() {
        if let Err(message) = check_origin(origin) {
            f.error(pi(&["server", "allowed_origins"], i), message);
        }
    }
    for (i, host) in server.allowed_hosts.iter().enumerate() {
        let host = host.trim();
        if host.is_empty() || host.contains("://") || host.contains('/') || host.contains(' ') {
            f.error(
                pi(&["server", "allowed_hosts"], i),
                format!("`{host}` must be a host name, optionally with :port (e.g. mcp.example.com or gateway.internal:3213)"),
            );
        }
    }
    const KIB: u64 = 1024;
    const MAX_BODY: u64 = 256 * 1024 * 1024;
    if !(KIB..=MAX_BODY).contains(&server.max_body_bytes) {
        f.error(
            p(&["server", "max_body_bytes"]),
            format!(
                "{} is out of range: between 1KiB and 256MiB",
                format_size(server.max_body_bytes)
            ),
        );
    }
    if !(1..=256).contains(&server.threads) {
        f.error(
            p(&["server", "threads"]),
            format!("{} is out of range: between 1 and 256", server.threads),
        );
    }
    limits(server, f);
}

/// `server.limits`: every deadline at least 100 ms, a connection cap of at least one, a
/// body budget that holds at least one largest body.
fn limits(server: &super::schema::ServerConfig, f: &mut Findings) {
    let l = &server.limits;
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(3600);
    for (key, d) in [
        ("header_timeout", l.header_timeout),
        ("body_timeout", l.body_timeout),
    ] {
        if !(MIN..=MAX).contains(&d) {
            f.error(
                p(&["server", "limits", key]),
                format!(
                    "{} is out of range: between 100ms and 1h",
                    format_duration(d)
                ),
            );
        }
    }
    if !(1..=1_000_000).contains(&l.max_connections) {
        f.error(
            p(&["server", "limits", "max_connections"]),
            format!(
                "{} is out of range: between 1 and 1000000",
                l.max_connections
            ),
        );
    }
    if l.reserved_fds > 1_000_000 {
        f.error(
            p(&["server", "limits", "reserved_fds"]),
            format!("{} is out of range: at most 1000000", l.reserved_fds),
        );
    }
    if l.body_budget < server.max_body_bytes {
        f.error(
            p(&["server", "limits", "body_budget"]),
            format!(
                "{} is smaller than server.max_body_bytes ({}): the largest allowed body could never be read",
                format_size(l.body_budget),
                format_size(server.max_body_bytes)
            ),
        );
    }
}

/// An allowed origin: `scheme://host[:port]`, `*.suffix`, `*` or `null`.
fn check_origin(entry: &str) -> Result<(), String> {
    let entry = entry.trim();
    if entry == "*" || entry == "null" {
        return Ok(());
    }
    let help = "an origin is scheme://host[:port] (e.g. https://app.example.com), *.example.com, * or null";
    if let Some(suffix) = entry.strip_prefix("*.") {
        let valid = !suffix.is_empty()
            && suffix.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        return if valid {
            Ok(())
        } else {
            Err(format!("`{entry}` is not a valid origin pattern; {help}"))
        };
    }
    let url = Url::parse(entry).map_err(|_| format!("`{entry}` is not an origin; {help}"))?;
    let bare = url.host().is_some()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if bare {
        Ok(())
    } else {
        Err(format!(
            "`{entry}` is not an origin (no path, query or credentials); {help}"
        ))
    }
}

fn check_sessions(config: &Config, f: &mut Findings) {
    let s = &config.sessions;
    if let Some(secret) = &s.secret {
        if secret.chars().count() < 32 {
            f.error(
                p(&["sessions", "secret"]),
                format!(
                    "must be at least 32 characters (it has {}); generate one with `openssl rand -base64 48`",
                    secret.chars().count()
                ),
            );
        }
    }
    if s.idle_timeout.is_zero() {
        f.error(p(&["sessions", "idle_timeout"]), "must be more than 0");
    }
    if s.idle_timeout > s.absolute_timeout {
        f.error(
            p(&["sessions", "idle_timeout"]),
            format!(
                "{} is longer than sessions.absolute_timeout ({}); the idle timeout must not exceed the absolute one",
                format_duration(s.idle_timeout),
                format_duration(s.absolute_timeout)
            ),
        );
    }
    if !(1..=100_000).contains(&s.replay_buffer) {
        f.error(
            p(&["sessions", "replay_buffer"]),
            format!("{} is out of range: between 1 and 100000", s.replay_buffer),
        );
    }
    if s.keepalive_interval < Duration::from_secs(1) {
        f.error(
            p(&["sessions", "keepalive_interval"]),
            "must be at least 1s",
        );
    }
    if s.max_streams_per_session == 0 {
        f.error(
            p(&["sessions", "max_streams_per_session"]),
            "must be at least 1",
        );
    }
    if s.held_call_timeout < Duration::from_secs(1)
        || s.held_call_timeout > Duration::from_secs(300)
    {
        f.error(
            p(&["sessions", "held_call_timeout"]),
            "must be between 1s and 300s (a native server waits at most 300s for an answer)",
        );
    }
    if s.max_held_calls_per_caller == 0 || s.max_held_calls == 0 {
        f.error(
            p(&["sessions", "max_held_calls"]),
            "max_held_calls and max_held_calls_per_caller must be at least 1",
        );
    }
}

/// Builtins and tickets: a usable webhook URL, ticket backends that exist, an admin scope.
fn check_outbound(config: &Config, f: &mut Findings) {
    let o = &config.outbound;
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    match (set(&o.client_cert_file), set(&o.client_key_file)) {
        (true, false) => f.error(
            p(&["outbound", "client_key_file"]),
            "is required with outbound.client_cert_file (the key of the client certificate)",
        ),
        (false, true) => f.error(
            p(&["outbound", "client_cert_file"]),
            "is required with outbound.client_key_file (the client certificate of the key)",
        ),
        _ => {}
    }
}

fn check_tickets(config: &Config, f: &mut Findings) {
    if config.builtins.admin_scope.trim().is_empty() {
        f.error(
            p(&["builtins", "admin_scope"]),
            "must not be empty (e.g. `cortex:admin`)",
        );
    }
    let t = &config.tickets;
    if let Some(url) = &t.webhook_url {
        if let Err(message) = http_url(url) {
            f.error(p(&["tickets", "webhook_url"]), message);
        } else if t.webhook_secret.is_none() {
            f.warn(
                p(&["tickets", "webhook_secret"]),
                "not set: blocking-ticket webhooks are sent unsigned (set CORTEX_TICKET_WEBHOOK_SECRET)",
            );
        }
    }
    if t.webhook_secret.as_ref().is_some_and(|s| s.len() < 16) {
        f.error(
            p(&["tickets", "webhook_secret"]),
            "is too short: at least 16 characters",
        );
    }
    for (i, id) in t.backends.iter().enumerate() {
        if !config.backends.iter().any(|b| &b.id == id) {
            f.warn(
                pi(&["tickets", "backends"], i),
                format!("`{id}` is not a configured backend; reports naming it are stored locally"),
            );
        }
    }
    for (key, d) in [
        ("webhook_timeout", t.webhook_timeout),
        ("webhook_max_backoff", t.webhook_max_backoff),
    ] {
        if d < Duration::from_millis(100) {
            f.error(p(&["tickets", key]), "must be at least 100ms");
        }
    }
}

fn check_catalog(config: &Config, f: &mut Findings) {
    let c = &config.catalog;
    if c.refresh < Duration::from_secs(1) {
        f.error(
            p(&["catalog", "refresh"]),
            format!("{} is too short: at least 1s", format_duration(c.refresh)),
        );
    }
    if c.max_backoff < Duration::from_secs(1) {
        f.error(p(&["catalog", "max_backoff"]), "must be at least 1s");
    }
    if !(1..=10_000).contains(&c.page_size) {
        f.error(
            p(&["catalog", "page_size"]),
            format!("{} is out of range: between 1 and 10000", c.page_size),
        );
    }
}

fn check_auth(config: &Config, listeners: &[SocketAddr], f: &mut Findings) {
    let auth = &config.auth;
    let off_loopback: Vec<String> = listeners
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    match auth.mode {
        AuthMode::None => {
            if let Some(first) = off_loopback.first() {
                f.error(
                    p(&["auth", "mode"]),
                    format!(
                        "`none` serves every caller as the configured principal without any credential, so it is only allowed when every listener is on loopback; {first} is not. Listen on 127.0.0.1 (or [::1]), or use `mode: oauth`"
                    ),
                );
            }
            if auth.principal.sub.trim().is_empty() {
                f.error(p(&["auth", "principal", "sub"]), "must not be empty");
            }
            if auth.dev_bypass.is_some() {
                f.warn(
                    p(&["auth", "dev_bypass"]),
                    "has no effect with auth.mode `none` (every request is already the configured principal)",
                );
            }
        }
        AuthMode::Oauth => match (&auth.oauth.issuer, &auth.dev_bypass) {
            (None, Some(_)) => f.warn(
                p(&["auth", "oauth", "issuer"]),
                "no OAuth issuer (auth.oauth.issuer or OAUTH_ISSUER): only dev-bypass requests (X-Dev-Mode from loopback) will be served",
            ),
            (None, None) => f.error(
                p(&["auth", "oauth", "issuer"]),
                "auth.mode is `oauth` but no issuer is configured: set auth.oauth.issuer or OAUTH_ISSUER (or, for local development, use `mode: none` or a dev bypass)",
            ),
            (Some(_), _) => {}
        },
    }
    for (key, value) in [
        ("issuer", &auth.oauth.issuer),
        ("jwks_url", &auth.oauth.jwks_url),
    ] {
        if let Some(url) = value {
            if let Err(message) = http_url(url) {
                f.error(p(&["auth", "oauth", key]), message);
            }
        }
    }
    if let Some(bypass) = &auth.dev_bypass {
        let token_len = bypass.token.trim().chars().count();
        if token_len == 0 {
            f.error(p(&["auth", "dev_bypass", "token"]), "must not be empty");
        } else if token_len < 8 {
            f.error(
                p(&["auth", "dev_bypass", "token"]),
                format!("is too short ({token_len} characters): at least 8"),
            );
        }
        if let Some(first) = off_loopback.first() {
            f.warn(
                p(&["auth", "dev_bypass"]),
                format!(
                    "the dev bypass is honoured only for loopback peers; the listener {first} is reachable from other hosts, whose X-Dev-Mode headers are ignored"
                ),
            );
        }
        if bypass.role.trim().is_empty() {
            f.error(p(&["auth", "dev_bypass", "role"]), "must not be empty");
        }
    }
}

/// `[a-z0-9][a-z0-9_-]{0,63}`.
fn valid_backend_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_backends(config: &Config, f: &mut Findings) {
    if config.backends.is_empty() {
        f.warn(
            p(&["backends"]),
            "no backends: only builtins will be listed (add `backends:` or set CORTEX_BACKENDS)",
        );
        return;
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, backend) in config.backends.iter().enumerate() {
        if let Some(first) = seen.get(backend.id.as_str()) {
            f.error(
                pik(&["backends"], i, "id"),
                format!(
                    "backend id `{}` is already used by backends[{first}]",
                    backend.id
                ),
            );
        } else {
            seen.insert(&backend.id, i);
        }
        check_backend(config, i, backend, f);
    }
    let unprefixed: Vec<&str> = config
        .backends
        .iter()
        .filter(|b| b.naming == Naming::None)
        .map(|b| b.id.as_str())
        .collect();
    if unprefixed.len() >= 2 {
        f.warn(
            p(&["backends"]),
            format!(
                "backends {} use `naming: none`: their tool, prompt and template names must not collide (a collision is refused at runtime)",
                unprefixed.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let has_token = config.technical_token.is_some();
    let without: Vec<&str> = config
        .backends
        .iter()
        .filter(|b| !has_token && b.technical_token.is_none())
        .map(|b| b.id.as_str())
        .collect();
    if !without.is_empty() {
        f.warn(
            p(&["technical_token"]),
            format!(
                "no technical token (technical_token or CORTEX_TECHNICAL_TOKEN): catalog discovery of {} is sent without Authorization, which most backends refuse",
                without.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
            ),
        );
    }
}

fn check_backend(config: &Config, i: usize, backend: &BackendConfig, f: &mut Findings) {
    if !valid_backend_id(&backend.id) {
        f.error(
            pik(&["backends"], i, "id"),
            format!(
                "`{}` is not a valid backend id: 1 to 64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
                backend.id
            ),
        );
    }
    if backend.kind == BackendKindConfig::Stdio {
        check_stdio_backend(i, backend, f);
        check_timeout(i, backend, f);
        return;
    }
    check_native_keys(i, backend, f);
    let url_path = pik(&["backends"], i, "url");
    if backend.url.trim().is_empty() {
        // Worded like the loader's own missing-key errors (a contract backend's `url` was
        // required by the schema before `kind: stdio`, which has none).
        f.error(
            pi(&["backends"], i),
            format!(
                "missing required key `url` (or set {})",
                backend_var(&backend.id, "URL")
            ),
        );
        check_timeout(i, backend, f);
        return;
    }
    match http_url(&backend.url) {
        Err(message) => f.error(url_path, message),
        Ok(url) => {
            if url.query().is_some() || url.fragment().is_some() {
                f.error(
                    url_path,
                    format!("`{}` must not have a query or fragment", backend.url),
                );
            } else if url.scheme() == "http"
                && !is_loopback_host(url.host())
                && !config.allow_insecure_backends
            {
                f.error(
                    url_path,
                    format!(
                        "`{}` is plain HTTP to a host that is not loopback, so tokens and data would cross the network unencrypted; use https://, or set allow_insecure_backends: true or CORTEX_ALLOW_INSECURE_BACKENDS=true to allow plain HTTP",
                        backend.url
                    ),
                );
            }
        }
    }
    if !backend.path.starts_with('/') {
        f.error(
            pik(&["backends"], i, "path"),
            format!(
                "`{}` must start with `/` (e.g. /api/cortex/backend; {} sets it from the environment)",
                backend.path,
                backend_var(&backend.id, "PATH")
            ),
        );
    }
    check_timeout(i, backend, f);
}

/// Keys that only one kind reads: set on another kind, they would be silently ignored.
fn check_native_keys(i: usize, backend: &BackendConfig, f: &mut Findings) {
    let stdio_only = [
        ("command", backend.command.is_some()),
        ("args", !backend.args.is_empty()),
        ("env", !backend.env.is_empty()),
        ("cwd", backend.cwd.is_some()),
        ("per_user", backend.per_user),
        ("max_processes", backend.max_processes.is_some()),
    ];
    for (key, set) in stdio_only {
        if set {
            f.error(
                pik(&["backends"], i, key),
                format!("`{key}` only applies to `kind: stdio` backends"),
            );
        }
    }
    if backend.kind == BackendKindConfig::Contract {
        for (key, set, why) in [
            ("headers", !backend.headers.is_empty(), "only applies to `kind: mcp` backends"),
            ("bearer", backend.bearer.is_some(), "only applies to `kind: mcp` backends"),
            ("protocol", backend.protocol.is_some(), "only applies to `kind: mcp` backends (a contract backend speaks the backend contract)"),
            ("scope", backend.scope.is_some(), "only applies to native backends (`kind: mcp` or `kind: stdio`); a contract backend declares its scopes itself"),
            ("scopes", !backend.scopes.is_empty(), "only applies to native backends (`kind: mcp` or `kind: stdio`); a contract backend declares its scopes itself"),
            ("idle_timeout", backend.idle_timeout != DEFAULT_NATIVE_IDLE, "only applies to native backends (`kind: mcp` or `kind: stdio`)"),
        ] {
            if set {
                f.error(pik(&["backends"], i, key), format!("`{key}` {why}"));
            }
        }
    }
    for name in backend.headers.keys() {
        let lower = name.to_ascii_lowercase();
        let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !valid
            || matches!(
                lower.as_str(),
                "host"
                    | "content-length"
                    | "content-type"
                    | "mcp-session-id"
                    | "mcp-protocol-version"
                    | "transfer-encoding"
            )
        {
            f.error(
                pik(&["backends"], i, "headers"),
                format!("`{name}` cannot be set as an upstream header (invalid, or set by the gateway itself)"),
            );
        }
    }
}

/// `kind: stdio`: a command to run; no URL keys.
fn check_stdio_backend(i: usize, backend: &BackendConfig, f: &mut Findings) {
    match backend.command.as_deref().map(str::trim) {
        None | Some("") => f.error(
            pi(&["backends"], i),
            "missing required key `command`: a `kind: stdio` backend needs the program the gateway runs (e.g. npx)",
        ),
        Some(_) => {}
    }
    for (key, set) in [
        ("url", !backend.url.trim().is_empty()),
        ("headers", !backend.headers.is_empty()),
        ("bearer", backend.bearer.is_some()),
        ("protocol", backend.protocol.is_some()),
    ] {
        if set {
            f.error(
                pik(&["backends"], i, key),
                format!("`{key}` does not apply to `kind: stdio` (the server is a child process speaking over stdin/stdout)"),
            );
        }
    }
    for name in backend.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            f.error(
                pik(&["backends"], i, "env"),
                format!("`{name}` is not a valid environment variable name"),
            );
        }
    }
    match backend.max_processes {
        Some(_) if !backend.per_user => f.error(
            pik(&["backends"], i, "max_processes"),
            "`max_processes` only applies with `per_user: true` (a shared child is one process)",
        ),
        Some(0) => f.error(pik(&["backends"], i, "max_processes"), "must be at least 1"),
        Some(n) if n > 10_000 => f.error(
            pik(&["backends"], i, "max_processes"),
            format!("{n} is out of range: at most 10000"),
        ),
        _ => {}
    }
    if let Some(dir) = &backend.cwd {
        if !std::path::Path::new(dir).is_dir() {
            f.error(
                pik(&["backends"], i, "cwd"),
                format!("`{dir}` is not a directory"),
            );
        }
    }
}

fn check_timeout(i: usize, backend: &BackendConfig, f: &mut Findings) {
    if backend.idle_timeout < Duration::from_secs(1)
        || backend.idle_timeout > Duration::from_secs(7 * 24 * 3600)
    {
        f.error(
            pik(&["backends"], i, "idle_timeout"),
            format!(
                "{} is out of range: between 1s and 7d",
                format_duration(backend.idle_timeout)
            ),
        );
    }
    if backend.timeout < Duration::from_millis(1) || backend.timeout > Duration::from_secs(600) {
        f.error(
            pik(&["backends"], i, "timeout"),
            format!(
                "{} is out of range: between 1ms and 10m",
                format_duration(backend.timeout)
            ),
        );
    }
}

fn check_scopes(config: &Config, f: &mut Findings) {
    let bad = |s: &str| s.trim().is_empty() || s.chars().any(char::is_whitespace);
    for (granted, implied) in &config.scopes.implies {
        let path = vec![
            Seg::Key("scopes".into()),
            Seg::Key("implies".into()),
            Seg::Key(granted.clone()),
        ];
        if bad(granted) {
            f.error(
                path.clone(),
                format!("`{granted}` is not a scope (no spaces, not empty)"),
            );
        }
        for scope in implied.iter().filter(|s| bad(s)) {
            f.error(
                path.clone(),
                format!("`{scope}` is not a scope (no spaces, not empty)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for ok in [
            "https://app.example.com",
            "http://localhost:5173",
            "https://a.example/",
            "vscode-webview://abc123",
            "*.example.com",
            "*",
            "null",
            "http://[::1]:8080",
        ] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "app.example.com",
            "https://a.example/path",
            "https://a.example?x",
            "*.",
            "*.exa mple.com",
            "ftp//x",
            "https://u:p@a.example",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_ids() {
        for ok in ["a", "crm", "my-crm_2", "0x", &"a".repeat(64)] {
            assert!(valid_backend_id(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "Crm", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_backend_id(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        let host = |u: &str| Url::parse(u).unwrap();
        assert!(is_loopback_host(host("http://localhost:1").host()));
        assert!(is_loopback_host(host("http://127.9.0.1").host()));
        assert!(is_loopback_host(host("http://[::1]:80").host()));
        assert!(!is_loopback_host(host("http://10.0.0.1").host()));
        assert!(!is_loopback_host(
            host("http://localhost.example.com").host()
        ));
    }
}
