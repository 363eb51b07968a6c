//! The Cortex environment overlay: every `CORTEX_*` / `OAUTH_*` variable (plus `PORT`,
//! `HOSTNAME`, `NODE_ENV`) that Cortex Gateway honours overrides the file and keeps its
//! Cortex meaning, so a Cortex deployment moves over by keeping its env file.
//!
//! The overlay writes into the [`Node`] tree (marking each value with the variable it came
//! from) before the typed configuration is built, so a bad value is reported with the name
//! of the variable that set it, and the usual parsing (durations, URLs) applies to it.

use std::net::IpAddr;

use super::env::EnvSource;
use super::error::ConfigIssue;
use super::tree::{Entry, Kind, Node, Origin};

/// Default listener parts when `PORT`/`HOSTNAME` are used and the file has no listener.
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 3213;

/// Cortex variables this version does not act on. They are named in a warning so that a
/// migrated env file does not silently lose a setting.
const NOT_HONOURED: &[&str] = &["CRON_SECRET"];

/// What the overlay did.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Variables applied, in order.
    pub overrides: Vec<String>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
    /// Invalid values, each naming its variable.
    pub errors: Vec<ConfigIssue>,
}

impl Overlay {
    fn applied(&mut self, var: &str) {
        if !self.overrides.iter().any(|v| v == var) {
            self.overrides.push(var.to_string());
        }
    }
}

/// A variable's value, trimmed; empty counts as unset (as `process.env.X || default` does in
/// Cortex).
fn var(env: &dyn EnvSource, name: &str) -> Option<String> {
    env.get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Splits a comma-separated list (Cortex CSV variables).
pub(crate) fn split_csv(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits a list separated by spaces and/or commas (scope lists).
pub(crate) fn split_scopes(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `CORTEX_BACKEND_<ID>_…`: the id uppercased with `-` as `_`.
pub(crate) fn backend_var(id: &str, suffix: &str) -> String {
    format!(
        "CORTEX_BACKEND_{}_{suffix}",
        id.to_ascii_uppercase().replace('-', "_")
    )
}

/// Applies every variable to the tree.
pub(crate) fn apply(tree: &mut Node, env: &dyn EnvSource) -> Overlay {
    let mut out = Overlay::default();
    apply_strings(tree, env, &mut out);
    apply_lists(tree, env, &mut out);
    apply_insecure(tree, env, &mut out);
    apply_introspection_ttl(tree, env, &mut out);
    apply_listener(tree, env, &mut out);
    apply_dev_bypass(tree, env, &mut out);
    apply_backends(tree, env, &mut out);
    apply_mcp_servers(tree, env, &mut out);
    apply_builtins(tree, env, &mut out);
    apply_vault_providers(tree, env, &mut out);
    apply_protect(tree, env, &mut out);
    for name in NOT_HONOURED {
        if var(env, name).is_some() {
            out.warnings.push(format!(
                "{name} is set but not supported by this version of cortex-gateway; it is ignored"
            ));
        }
    }
    out
}

/// Tickets and the catalog presentation: `CORTEX_TICKET_BACKENDS` (CSV of backend ids,
/// lowercased as Cortex does), `CORTEX_TICKET_WEBHOOK_URL`, `CORTEX_TICKET_WEBHOOK_SECRET`
/// and `CORTEX_TOOL_MODE` (`full` | `search`; the last two are ours, not Cortex's).
fn apply_builtins(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    const BACKENDS: &str = "CORTEX_TICKET_BACKENDS";
    if let Some(value) = var(env, BACKENDS) {
        let ids = split_csv(&value.to_ascii_lowercase());
        set(
            tree,
            &["tickets", "backends"],
            Node::env_list(ids, BACKENDS),
            BACKENDS,
            out,
        );
    }
    let strings: &[(&str, &[&str])] = &[
        ("CORTEX_TICKET_WEBHOOK_URL", &["tickets", "webhook_url"]),
        (
            "CORTEX_TICKET_WEBHOOK_SECRET",
            &["tickets", "webhook_secret"],
        ),
        ("CORTEX_TOOL_MODE", &["catalog", "tool_mode"]),
    ];
    for (name, path) in strings {
        if let Some(value) = var(env, name) {
            set(tree, path, Node::env_str(value, name), name, out);
        }
    }
}

/// Rate limits, tool integrity and the admin secret, with their Cortex meaning:
/// `CORTEX_RATE_LIMIT_PER_MINUTE=N` is the per-caller limit `N/min` (burst N);
/// `RATE_LIMIT_DISABLED=true` (exactly that value, as in Cortex) turns every limit off, any
/// other value is warned about and leaves limits on; `CORTEX_TOOL_INTEGRITY_MODE`;
/// `CORTEX_TOOL_BASELINE_FILE` (Cortex's `memory` means no file); the baseline keys (PEM,
/// literal `\n` accepted); `CORTEX_ADMIN_SECRET`.
fn apply_protect(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    const PER_MINUTE: &str = "CORTEX_RATE_LIMIT_PER_MINUTE";
    const DISABLED: &str = "RATE_LIMIT_DISABLED";
    let per_minute = var(env, PER_MINUTE);
    let disabled = var(env, DISABLED);
    match cortex_filters::ratelimit::cortex_env(per_minute.as_deref(), disabled.as_deref()) {
        Ok(rates) => {
            out.warnings.extend(rates.warnings);
            if per_minute.is_some() {
                let node = Node::env_str(rates.per_subject.to_string(), PER_MINUTE);
                set(tree, &["rate_limits", "per_subject"], node, PER_MINUTE, out);
            }
            if rates.disabled {
                let node = Node::new(Kind::Bool(false), Origin::Env(DISABLED.into()));
                set(tree, &["rate_limits", "enabled"], node, DISABLED, out);
            }
        }
        Err(e) => out.errors.push(ConfigIssue::new(e.to_string())),
    }
    if let Some(mode) = var(env, "CORTEX_TOOL_INTEGRITY_MODE") {
        let name = "CORTEX_TOOL_INTEGRITY_MODE";
        let node = Node::env_str(mode.to_ascii_lowercase(), name);
        set(tree, &["integrity", "mode"], node, name, out);
    }
    if let Some(file) = var(env, "CORTEX_TOOL_BASELINE_FILE") {
        let name = "CORTEX_TOOL_BASELINE_FILE";
        if file == "memory" {
            out.applied(name);
        } else {
            set(
                tree,
                &["integrity", "baseline_file"],
                Node::env_str(file, name),
                name,
                out,
            );
        }
    }
    let strings: &[(&str, &[&str])] = &[
        ("CORTEX_BASELINE_PRIVATE_KEY", &["integrity", "private_key"]),
        ("CORTEX_BASELINE_PUBLIC_KEY", &["integrity", "public_key"]),
        ("CORTEX_ADMIN_SECRET", &["admin", "secret"]),
    ];
    for (name, path) in strings {
        if let Some(value) = var(env, name) {
            set(tree, path, Node::env_str(value, name), name, out);
        }
    }
}

fn set(tree: &mut Node, path: &[&str], value: Node, var: &str, out: &mut Overlay) {
    if tree.set(path, value) {
        out.applied(var);
    } else {
        let parent = path
            .split_last()
            .map(|(_, parent)| parent.join("."))
            .unwrap_or_default();
        out.warnings.push(format!(
            "{var} could not be applied: `{parent}` in the file is not a mapping"
        ));
    }
}

fn apply_strings(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    let targets: &[(&str, &[&str])] = &[
        ("CORTEX_TECHNICAL_TOKEN", &["technical_token"]),
        ("CORTEX_CANONICAL_URI", &["server", "canonical_uri"]),
        ("CORTEX_SERVER_NAME", &["server", "name"]),
        ("CORTEX_WEBSITE_URL", &["server", "website_url"]),
        ("CORTEX_SERVER_CARD_NAME", &["server", "card_name"]),
        ("OAUTH_ISSUER", &["auth", "oauth", "issuer"]),
        ("OAUTH_AUDIENCE", &["auth", "oauth", "audience"]),
        ("OAUTH_JWKS_URL", &["auth", "oauth", "jwks_url"]),
        ("CORTEX_REQUIRED_POOL", &["auth", "oauth", "required_pool"]),
        ("CORTEX_DATABASE_URL", &["storage", "database_url"]),
        ("CORTEX_FLEET_REDIS_URL", &["fleet", "redis_url"]),
        ("CORTEX_AUDIT_RETENTION_DAYS", &["audit", "retention_days"]),
        ("CORTEX_VAULT_KEY", &["vault", "key"]),
        (
            "OAUTH_INTROSPECT_URL",
            &["auth", "oauth", "introspection", "url"],
        ),
        (
            "OAUTH_INTROSPECT_CLIENT_ID",
            &["auth", "oauth", "introspection", "client_id"],
        ),
        (
            "OAUTH_INTROSPECT_CLIENT_SECRET",
            &["auth", "oauth", "introspection", "client_secret"],
        ),
    ];
    for (name, path) in targets {
        if let Some(value) = var(env, name) {
            set(tree, path, Node::env_str(value, name), name, out);
        }
    }
}

fn apply_lists(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    if let Some(value) = var(env, "CORTEX_ALLOWED_ORIGINS") {
        let list = Node::env_list(split_csv(&value), "CORTEX_ALLOWED_ORIGINS");
        set(
            tree,
            &["server", "allowed_origins"],
            list,
            "CORTEX_ALLOWED_ORIGINS",
            out,
        );
    }
    if let Some(value) = var(env, "OAUTH_REQUIRED_SCOPES") {
        let list = Node::env_list(split_scopes(&value), "OAUTH_REQUIRED_SCOPES");
        set(
            tree,
            &["auth", "oauth", "required_scopes"],
            list,
            "OAUTH_REQUIRED_SCOPES",
            out,
        );
    }
}

/// `OAUTH_INTROSPECT_CACHE_TTL_SECONDS`: whole seconds (Cortex) → `introspection.cache_ttl`.
fn apply_introspection_ttl(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    const NAME: &str = "OAUTH_INTROSPECT_CACHE_TTL_SECONDS";
    let Some(text) = var(env, NAME) else { return };
    match text.parse::<u64>() {
        Ok(secs) => {
            let node = Node::env_str(format!("{secs}s"), NAME);
            set(
                tree,
                &["auth", "oauth", "introspection", "cache_ttl"],
                node,
                NAME,
                out,
            );
        }
        Err(_) => out.errors.push(ConfigIssue::new(format!(
            "{NAME} must be a whole number of seconds, got `{text}`"
        ))),
    }
}

fn apply_insecure(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    const NAME: &str = "CORTEX_ALLOW_INSECURE_BACKENDS";
    let Some(value) = var(env, NAME) else { return };
    let flag = match value.to_ascii_lowercase().as_str() {
        "true" | "1" => true,
        "false" | "0" => false,
        _ => {
            out.errors.push(ConfigIssue::new(format!(
                "{NAME} must be true, false, 1 or 0, got `{value}`"
            )));
            return;
        }
    };
    let node = Node::new(Kind::Bool(flag), Origin::Env(NAME.into()));
    set(tree, &["allow_insecure_backends"], node, NAME, out);
}

/// `PORT` and `HOSTNAME` replace `server.listen` with one listener. A missing part comes
/// from the first listener of the file, else 127.0.0.1 / 3213.
fn apply_listener(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    let port = match var(env, "PORT") {
        Some(text) => match text.parse::<u16>() {
            Ok(port) => Some(port),
            Err(_) => {
                out.errors.push(ConfigIssue::new(format!(
                    "PORT must be a port number (0-65535), got `{text}`"
                )));
                None
            }
        },
        None => None,
    };
    let host = var(env, "HOSTNAME").and_then(|text| match listen_host(&text) {
        Some(host) => Some(host),
        None => {
            // Container runtimes set HOSTNAME to the machine name; Cortex (Next.js) then
            // binds to whatever that resolves to. We never resolve names at load time.
            out.warnings.push(format!(
                "HOSTNAME=`{text}` is not an IP address or `localhost` (container runtimes set it to the machine name); it is ignored. Set HOSTNAME=0.0.0.0 to listen on every interface"
            ));
            None
        }
    });
    if port.is_none() && host.is_none() {
        return;
    }
    let (file_host, file_port) = first_file_listener(tree);
    let host_text = host.clone().unwrap_or(file_host);
    let port_from_env = port;
    let port = port.or(file_port).unwrap_or(DEFAULT_PORT);
    let address = if host_text.contains(':') {
        format!("[{host_text}]:{port}")
    } else {
        format!("{host_text}:{port}")
    };
    let var_name = match (host.is_some(), port_from_env.is_some()) {
        (true, true) => "PORT/HOSTNAME",
        (true, false) => "HOSTNAME",
        _ => "PORT",
    };
    let list = Node::new(
        Kind::Seq(vec![Node::env_str(address, var_name)]),
        Origin::Env(var_name.into()),
    );
    if tree.set(&["server", "listen"], list) {
        if host.is_some() {
            out.applied("HOSTNAME");
        }
        if port_from_env.is_some() {
            out.applied("PORT");
        }
    }
}

/// An IP literal (IPv6 with or without brackets) or `localhost`, normalised.
fn listen_host(text: &str) -> Option<String> {
    if text.eq_ignore_ascii_case("localhost") {
        return Some(DEFAULT_HOST.into());
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Host and port of the file's first listener, when it parses.
fn first_file_listener(tree: &Node) -> (String, Option<u16>) {
    let first = tree
        .get("server")
        .and_then(|s| s.get("listen"))
        .and_then(|l| match &l.kind {
            Kind::Seq(items) => items.first().and_then(Node::as_str),
            _ => None,
        })
        .and_then(|s| super::parse_listen(s).ok());
    match first {
        Some(addr) => (addr.ip().to_string(), Some(addr.port())),
        None => (DEFAULT_HOST.into(), None),
    }
}

fn apply_dev_bypass(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    if let Some(token) = var(env, "CORTEX_DEV_BYPASS_TOKEN") {
        let node = Node::env_str(token, "CORTEX_DEV_BYPASS_TOKEN");
        set(
            tree,
            &["auth", "dev_bypass", "token"],
            node,
            "CORTEX_DEV_BYPASS_TOKEN",
            out,
        );
    }
    let has_bypass = tree
        .get("auth")
        .and_then(|a| a.get("dev_bypass"))
        .is_some_and(|b| matches!(b.kind, Kind::Map(_)));
    for (name, key) in [
        ("CORTEX_DEV_BYPASS_SCOPES", "scopes"),
        ("CORTEX_DEV_BYPASS_ROLE", "role"),
    ] {
        let Some(value) = var(env, name) else {
            continue;
        };
        if !has_bypass {
            out.warnings.push(format!(
                "{name} is set but no dev bypass token is configured (CORTEX_DEV_BYPASS_TOKEN or auth.dev_bypass.token); it is ignored"
            ));
            continue;
        }
        let node = if key == "scopes" {
            Node::env_list(split_scopes(&value), name)
        } else {
            Node::env_str(value, name)
        };
        set(tree, &["auth", "dev_bypass", key], node, name, out);
    }
    let production = var(env, "NODE_ENV").is_some_and(|v| v == "production");
    if production && has_bypass_now(tree) {
        if let Some(auth) = tree.at_mut(&super::tree::keys(&["auth"])) {
            auth.remove_at(&super::tree::keys(&["dev_bypass"]));
        }
        out.applied("NODE_ENV");
        out.warnings.push(
            "NODE_ENV=production: the dev bypass (X-Dev-Mode) is disabled, as in Cortex".into(),
        );
    }
}

fn has_bypass_now(tree: &Node) -> bool {
    tree.get("auth")
        .and_then(|a| a.get("dev_bypass"))
        .is_some_and(|b| !matches!(b.kind, Kind::Null))
}

/// The id of a backend entry of the file, lowercased.
fn entry_id(node: &Node) -> Option<String> {
    node.get("id")
        .and_then(Node::as_str)
        .map(|id| id.trim().to_ascii_lowercase())
}

/// Cortex's per-server OAuth client and catalog subject onto the vault providers of the
/// file: `CORTEX_MCP_<ID>_CLIENT_ID`, `_CLIENT_SECRET` and `_CATALOG_SUB` set `client_id`,
/// `client_secret` and `catalog_sub` of `vault.providers[id]` (ID uppercased, `-` as `_`).
fn apply_vault_providers(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    let Some(Node {
        kind: Kind::Seq(items),
        ..
    }) = tree.at_mut(&super::tree::keys(&["vault", "providers"]))
    else {
        return;
    };
    for item in items.iter_mut() {
        let Some(id) = entry_id(item) else { continue };
        let prefix = format!("CORTEX_MCP_{}_", id.to_ascii_uppercase().replace('-', "_"));
        for (suffix, key) in [
            ("CLIENT_ID", "client_id"),
            ("CLIENT_SECRET", "client_secret"),
            ("CATALOG_SUB", "catalog_sub"),
        ] {
            let name = format!("{prefix}{suffix}");
            if let Some(value) = var(env, &name) {
                set(item, &[key], Node::env_str(value, &name), &name, out);
            }
        }
    }
}

/// `CORTEX_BACKEND_<ID>_URL/_PATH/_TIMEOUT_MS` onto one backend entry.
fn apply_backend_vars(backend: &mut Node, id: &str, env: &dyn EnvSource, out: &mut Overlay) {
    let url_var = backend_var(id, "URL");
    if let Some(url) = var(env, &url_var) {
        set(
            backend,
            &["url"],
            Node::env_str(url, &url_var),
            &url_var,
            out,
        );
    }
    let path_var = backend_var(id, "PATH");
    if let Some(path) = var(env, &path_var) {
        set(
            backend,
            &["path"],
            Node::env_str(path, &path_var),
            &path_var,
            out,
        );
    }
    let timeout_var = backend_var(id, "TIMEOUT_MS");
    if let Some(text) = var(env, &timeout_var) {
        match text.parse::<u64>() {
            Ok(ms) => {
                let node = Node::env_str(format!("{ms}ms"), &timeout_var);
                set(backend, &["timeout"], node, &timeout_var, out);
            }
            Err(_) => out.errors.push(ConfigIssue::new(format!(
                "{timeout_var} must be a whole number of milliseconds, got `{text}`"
            ))),
        }
    }
}

fn has_url(backend: &Node) -> bool {
    backend
        .get("url")
        .is_some_and(|u| !matches!(&u.kind, Kind::Null) && u.as_str() != Some(""))
}

fn apply_backends(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    let Some(csv) = var(env, "CORTEX_BACKENDS") else {
        // Per-backend variables still apply to the file's backends.
        if let Some(Node {
            kind: Kind::Seq(items),
            ..
        }) = tree.at_mut(&super::tree::keys(&["backends"]))
        {
            for item in items.iter_mut() {
                if let Some(id) = entry_id(item) {
                    apply_backend_vars(item, &id, env, out);
                }
            }
        }
        return;
    };
    out.applied("CORTEX_BACKENDS");
    let mut ids: Vec<String> = Vec::new();
    for id in split_csv(&csv) {
        let id = id.to_ascii_lowercase();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut from_file: Vec<Node> = match tree.get("backends").map(|b| &b.kind) {
        Some(Kind::Seq(items)) => items.clone(),
        _ => Vec::new(),
    };
    let origin = Origin::Env("CORTEX_BACKENDS".into());
    let mut backends = Vec::new();
    for id in &ids {
        let mut backend = match from_file
            .iter()
            .position(|n| entry_id(n).as_deref() == Some(id.as_str()))
        {
            Some(index) => from_file.remove(index),
            None => Node::new(
                Kind::Map(vec![Entry {
                    key: "id".into(),
                    key_origin: origin.clone(),
                    value: Node::env_str(id.clone(), "CORTEX_BACKENDS"),
                }]),
                origin.clone(),
            ),
        };
        apply_backend_vars(&mut backend, id, env, out);
        if has_url(&backend) {
            backends.push(backend);
        } else {
            out.warnings.push(format!(
                "CORTEX_BACKENDS lists `{id}` but it has no URL ({} is not set and the file gives none); it is skipped, as in Cortex",
                backend_var(id, "URL")
            ));
        }
    }
    for left in from_file {
        let id = entry_id(&left).unwrap_or_else(|| "(without id)".into());
        out.warnings.push(format!(
            "backend `{id}` of the file is not listed in CORTEX_BACKENDS, which sets the backend list; it is disabled"
        ));
    }
    tree.set(&["backends"], Node::new(Kind::Seq(backends), origin));
}

/// `CORTEX_MCP_SERVERS` (CSV of ids, lowercased) with `CORTEX_MCP_<ID>_URL` and `_SCOPE` as in
/// Cortex: each becomes a `kind: mcp` backend appended to the list (or, when the file has a
/// backend with that id, sets its kind, url and scope), its scope defaulting to `mcp:<id>:read`
/// for every entry. A server without a URL is skipped with a warning, as in Cortex. A server
/// with a credential variable (`_CLIENT_ID`, `_CLIENT_SECRET`, `_OAUTH_SCOPE`, `_CATALOG_SUB`),
/// or any server when `CORTEX_VAULT_KEY` is set, is reached with each user's own linked
/// account as in Cortex: `vault_provider: <id>` (unless the file sets `identity` or
/// `vault_provider`) and a vault provider of that id (unless the file has one).
fn apply_mcp_servers(tree: &mut Node, env: &dyn EnvSource, out: &mut Overlay) {
    const NAME: &str = "CORTEX_MCP_SERVERS";
    let Some(csv) = var(env, NAME) else { return };
    out.applied(NAME);
    let origin = Origin::Env(NAME.into());
    let mut items: Vec<Node> = match tree.get("backends").map(|b| &b.kind) {
        Some(Kind::Seq(items)) => items.clone(),
        _ => Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    let mut providers: Vec<(String, String, String)> = Vec::new();
    for id in split_csv(&csv) {
        let id = id.to_ascii_lowercase();
        if seen.contains(&id) {
            continue;
        }
        seen.push(id.clone());
        let upper = id.to_ascii_uppercase().replace('-', "_");
        let mcp_var = |suffix: &str| format!("CORTEX_MCP_{upper}_{suffix}");
        // As in Cortex, a server with a per-user OAuth client (or behind a vault key) is
        // reached with each user's own linked account: a vault provider of the same id.
        let per_user = ["CLIENT_ID", "CLIENT_SECRET", "OAUTH_SCOPE", "CATALOG_SUB"]
            .iter()
            .any(|suffix| var(env, &mcp_var(suffix)).is_some())
            || var(env, "CORTEX_VAULT_KEY").is_some();
        let url_var = mcp_var("URL");
        let Some(url) = var(env, &url_var) else {
            out.warnings.push(format!(
                "{NAME} lists `{id}` but {url_var} is not set; it is skipped, as in Cortex"
            ));
            continue;
        };
        let scope_var = mcp_var("SCOPE");
        let scope = match var(env, &scope_var) {
            Some(s) => Node::env_str(s, &scope_var),
            None => Node::env_str(format!("mcp:{id}:read"), NAME),
        };
        let index = match items
            .iter()
            .position(|n| entry_id(n).as_deref() == Some(id.as_str()))
        {
            Some(i) => i,
            None => {
                items.push(Node::new(
                    Kind::Map(vec![Entry {
                        key: "id".into(),
                        key_origin: origin.clone(),
                        value: Node::env_str(id.clone(), NAME),
                    }]),
                    origin.clone(),
                ));
                items.len() - 1
            }
        };
        let backend = &mut items[index];
        set(backend, &["kind"], Node::env_str("mcp", NAME), NAME, out);
        set(
            backend,
            &["url"],
            Node::env_str(url, &url_var),
            &url_var,
            out,
        );
        set(backend, &["scope"], scope, &scope_var, out);
        if per_user && backend.get("identity").is_none() && backend.get("vault_provider").is_none()
        {
            set(
                backend,
                &["vault_provider"],
                Node::env_str(id.clone(), NAME),
                NAME,
                out,
            );
            providers.push((id.clone(), url_of(backend), mcp_var("OAUTH_SCOPE")));
        }
    }
    tree.set(&["backends"], Node::new(Kind::Seq(items), origin));
    for (id, url, scope_var) in providers {
        add_vault_provider(
            tree,
            &id,
            url,
            var(env, &scope_var).map(|s| (s, scope_var)),
            out,
        );
    }
}

fn url_of(backend: &Node) -> String {
    backend
        .get("url")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_string()
}

/// The vault provider of a `CORTEX_MCP_SERVERS` server with per-user credentials, unless the
/// file has one with that id: its `resource` is the server's URL (its authorization server is
/// discovered, RFC 9728), its scopes `CORTEX_MCP_<ID>_OAUTH_SCOPE`; the client and catalog
/// variables are applied to it next ([`apply_vault_providers`]).
fn add_vault_provider(
    tree: &mut Node,
    id: &str,
    resource: String,
    scopes: Option<(String, String)>,
    out: &mut Overlay,
) {
    const NAME: &str = "CORTEX_MCP_SERVERS";
    let origin = Origin::Env(NAME.into());
    let mut providers: Vec<Node> = match tree
        .get("vault")
        .and_then(|v| v.get("providers"))
        .map(|p| &p.kind)
    {
        Some(Kind::Seq(items)) => items.clone(),
        _ => Vec::new(),
    };
    if providers.iter().any(|n| entry_id(n).as_deref() == Some(id)) {
        return;
    }
    let entry = |key: &str, value: Node| Entry {
        key: key.into(),
        key_origin: origin.clone(),
        value,
    };
    let mut fields = vec![
        entry("id", Node::env_str(id, NAME)),
        entry("resource", Node::env_str(resource, NAME)),
    ];
    if let Some((text, var)) = scopes {
        let list = split_scopes(&text);
        fields.push(entry("scopes", Node::env_list(list, &var)));
        out.applied(&var);
    }
    providers.push(Node::new(Kind::Map(fields), origin.clone()));
    set(
        tree,
        &["vault", "providers"],
        Node::new(Kind::Seq(providers), origin),
        NAME,
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::MapEnv;
    use crate::config::tree::parse_yaml;

    fn run(yaml: &str, pairs: &[(&str, &str)]) -> (Node, Overlay) {
        let mut tree = parse_yaml(yaml, "t").unwrap();
        let out = apply(&mut tree, &MapEnv::from_pairs(pairs.iter().copied()));
        (tree, out)
    }

    fn backend_ids(tree: &Node) -> Vec<String> {
        match &tree.get("backends").unwrap().kind {
            Kind::Seq(items) => items.iter().filter_map(entry_id).collect(),
            _ => panic!("backends is not a list"),
        }
    }

    #[test]
    fn helpers_split_lists_and_name_variables() {
        assert_eq!(split_csv(" a, b ,,c "), vec!["a", "b", "c"]);
        assert_eq!(split_scopes("a b,c  d"), vec!["a", "b", "c", "d"]);
        assert_eq!(backend_var("my-crm", "URL"), "CORTEX_BACKEND_MY_CRM_URL");
        assert_eq!(listen_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(listen_host("LOCALHOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(listen_host("a1b2c3d4"), None);
    }

    #[test]
    fn cortex_backends_sets_the_list_in_order_and_dedups() {
        let (tree, out) = run(
            "backends:\n  - id: crm\n    url: https://crm.example.com\n    naming: none\n  - id: old\n    url: https://old.example.com\n",
            &[
                ("CORTEX_BACKENDS", " Demo, crm ,demo,ghost"),
                ("CORTEX_BACKEND_DEMO_URL", "http://127.0.0.1:4820"),
            ],
        );
        assert_eq!(backend_ids(&tree), vec!["demo", "crm"]);
        let crm = tree
            .at(&[
                crate::config::tree::Seg::Key("backends".into()),
                crate::config::tree::Seg::Index(1),
            ])
            .unwrap();
        assert_eq!(crm.get("naming").unwrap().as_str(), Some("none"));
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("`ghost`") && w.contains("CORTEX_BACKEND_GHOST_URL")),
            "{:?}",
            out.warnings
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("`old`") && w.contains("disabled")),
            "{:?}",
            out.warnings
        );
        assert_eq!(
            out.overrides,
            vec!["CORTEX_BACKENDS", "CORTEX_BACKEND_DEMO_URL"]
        );
    }

    #[test]
    fn mcp_client_variables_apply_to_vault_providers() {
        let (tree, _) = run(
            "vault:\n  providers:\n    - id: my-design\n      resource: https://d.example/mcp\n",
            &[
                ("CORTEX_MCP_MY_DESIGN_CLIENT_ID", "cid"),
                ("CORTEX_MCP_MY_DESIGN_CLIENT_SECRET", "shh"),
                ("CORTEX_MCP_MY_DESIGN_CATALOG_SUB", "svc"),
                ("CORTEX_MCP_OTHER_CLIENT_ID", "ignored"),
            ],
        );
        let p = tree
            .at(&crate::config::tree::keys(&["vault", "providers"]))
            .and_then(|n| match &n.kind {
                Kind::Seq(items) => items.first(),
                _ => None,
            })
            .expect("the provider");
        assert_eq!(p.get("client_id").and_then(Node::as_str), Some("cid"));
        assert_eq!(p.get("client_secret").and_then(Node::as_str), Some("shh"));
        assert_eq!(p.get("catalog_sub").and_then(Node::as_str), Some("svc"));
    }

    #[test]
    fn backend_variables_apply_to_file_backends_without_cortex_backends() {
        let (tree, out) = run(
            "backends:\n  - id: my-crm\n    url: https://crm.example.com\n",
            &[
                ("CORTEX_BACKEND_MY_CRM_URL", "https://crm2.example.com"),
                ("CORTEX_BACKEND_MY_CRM_PATH", "/cortex"),
                ("CORTEX_BACKEND_MY_CRM_TIMEOUT_MS", "2500"),
            ],
        );
        let b = tree
            .at(&[
                crate::config::tree::Seg::Key("backends".into()),
                crate::config::tree::Seg::Index(0),
            ])
            .unwrap();
        assert_eq!(
            b.get("url").unwrap().as_str(),
            Some("https://crm2.example.com")
        );
        assert_eq!(b.get("path").unwrap().as_str(), Some("/cortex"));
        assert_eq!(b.get("timeout").unwrap().as_str(), Some("2500ms"));
        assert_eq!(
            b.get("timeout").unwrap().origin.env_var(),
            Some("CORTEX_BACKEND_MY_CRM_TIMEOUT_MS")
        );
        assert_eq!(out.overrides.len(), 3);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let (_, out) = run(
            "backends:\n  - id: a\n    url: http://127.0.0.1:1\n",
            &[
                ("PORT", "abc"),
                ("CORTEX_BACKEND_A_TIMEOUT_MS", "-1"),
                ("CORTEX_ALLOW_INSECURE_BACKENDS", "maybe"),
            ],
        );
        let messages: Vec<_> = out.errors.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("PORT must be a port number") && m.contains("`abc`")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("CORTEX_BACKEND_A_TIMEOUT_MS") && m.contains("`-1`")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("CORTEX_ALLOW_INSECURE_BACKENDS")),
            "{messages:?}"
        );
    }

    #[test]
    fn port_and_hostname_make_one_listener() {
        let listen = |tree: &Node| -> Vec<String> {
            match &tree.get("server").unwrap().get("listen").unwrap().kind {
                Kind::Seq(items) => items
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect(),
                _ => panic!(),
            }
        };
        let (tree, out) = run("", &[("PORT", "4000")]);
        assert_eq!(listen(&tree), vec!["127.0.0.1:4000"]);
        assert_eq!(out.overrides, vec!["PORT"]);
        let (tree, _) = run("", &[("PORT", "4000"), ("HOSTNAME", "0.0.0.0")]);
        assert_eq!(listen(&tree), vec!["0.0.0.0:4000"]);
        let (tree, _) = run(
            "server:\n  listen: ['127.0.0.1:8080', '[::1]:8080']\n",
            &[("HOSTNAME", "::")],
        );
        assert_eq!(listen(&tree), vec!["[::]:8080"]);
        let (tree, out) = run(
            "server:\n  listen: ['127.0.0.1:8080']\n",
            &[("HOSTNAME", "3f2a9c1b7d")],
        );
        assert_eq!(listen(&tree), vec!["127.0.0.1:8080"]);
        assert!(out.warnings[0].contains("HOSTNAME"), "{:?}", out.warnings);
        assert!(out.overrides.is_empty());
    }

    #[test]
    fn dev_bypass_from_env_and_node_env_production() {
        let (tree, out) = run(
            "",
            &[
                ("CORTEX_DEV_BYPASS_TOKEN", "dev-secret"),
                ("CORTEX_DEV_BYPASS_SCOPES", "mcp:demo:read, mcp:demo:write"),
            ],
        );
        let bypass = tree.get("auth").unwrap().get("dev_bypass").unwrap();
        assert_eq!(bypass.get("token").unwrap().as_str(), Some("dev-secret"));
        assert_eq!(
            out.overrides,
            vec!["CORTEX_DEV_BYPASS_TOKEN", "CORTEX_DEV_BYPASS_SCOPES"]
        );

        let (_, out) = run("", &[("CORTEX_DEV_BYPASS_ROLE", "viewer")]);
        assert!(
            out.warnings[0].contains("no dev bypass token"),
            "{:?}",
            out.warnings
        );

        let (tree, out) = run(
            "",
            &[
                ("CORTEX_DEV_BYPASS_TOKEN", "dev-secret"),
                ("NODE_ENV", "production"),
            ],
        );
        assert!(tree.get("auth").unwrap().get("dev_bypass").is_none());
        assert!(out
            .warnings
            .iter()
            .any(|w| w.contains("NODE_ENV=production")));
    }

    #[test]
    fn unsupported_cortex_variables_are_named() {
        let (_, out) = run("", &[("CRON_SECRET", "100")]);
        assert!(out.warnings[0].starts_with("CRON_SECRET is set but not supported"));
    }

    #[test]
    fn protection_variables_take_their_cortex_meaning() {
        let (tree, out) = run(
            "",
            &[
                ("CORTEX_RATE_LIMIT_PER_MINUTE", "30"),
                ("RATE_LIMIT_DISABLED", "true"),
                ("CORTEX_TOOL_INTEGRITY_MODE", "BLOCK"),
                ("CORTEX_TOOL_BASELINE_FILE", "memory"),
                ("CORTEX_ADMIN_SECRET", "s3cret-0123456789"),
            ],
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        let rl = tree.get("rate_limits").unwrap();
        assert_eq!(rl.get("per_subject").and_then(Node::as_str), Some("30/min"));
        assert!(matches!(
            rl.get("enabled").map(|n| &n.kind),
            Some(Kind::Bool(false))
        ));
        let integrity = tree.get("integrity").unwrap();
        assert_eq!(integrity.get("mode").and_then(Node::as_str), Some("block"));
        assert!(integrity.get("baseline_file").is_none());
        assert_eq!(
            tree.get("admin")
                .unwrap()
                .get("secret")
                .and_then(Node::as_str),
            Some("s3cret-0123456789")
        );
        let (_, out) = run("", &[("RATE_LIMIT_DISABLED", "yes")]);
        assert!(out.warnings[0].contains("only the exact value `true`"));
        let (_, out) = run("", &[("CORTEX_RATE_LIMIT_PER_MINUTE", "lots")]);
        assert!(out.errors[0]
            .to_string()
            .contains("whole number of requests per minute"));
    }

    #[test]
    fn cortex_mcp_servers_become_native_backends() {
        let (tree, out) = run(
            "backends:\n  - id: crm\n    url: http://127.0.0.1:1\n",
            &[
                ("CORTEX_MCP_SERVERS", "Canva, docs, nourl"),
                ("CORTEX_MCP_CANVA_URL", "https://mcp.canva.example/mcp"),
                ("CORTEX_MCP_DOCS_URL", "http://127.0.0.1:9/mcp"),
                ("CORTEX_MCP_DOCS_SCOPE", "mcp:docs:write"),
                ("CORTEX_MCP_CANVA_CLIENT_ID", "x"),
                ("CORTEX_MCP_CANVA_OAUTH_SCOPE", "design:read design:write"),
            ],
        );
        assert_eq!(backend_ids(&tree), vec!["crm", "canva", "docs"]);
        let Kind::Seq(items) = &tree.get("backends").unwrap().kind else {
            panic!("backends is not a list")
        };
        let field = |i: usize, k: &str| items[i].get(k).and_then(Node::as_str).map(str::to_string);
        assert_eq!(field(1, "kind").as_deref(), Some("mcp"));
        assert_eq!(
            field(1, "url").as_deref(),
            Some("https://mcp.canva.example/mcp")
        );
        assert_eq!(field(1, "scope").as_deref(), Some("mcp:canva:read"));
        assert_eq!(field(2, "scope").as_deref(), Some("mcp:docs:write"));
        assert!(
            out.warnings.iter().any(|w| w.contains("`nourl`")),
            "{:?}",
            out.warnings
        );
        // Canva has a per-user client: a vault backend, with a provider of its own.
        assert_eq!(field(1, "vault_provider").as_deref(), Some("canva"));
        assert_eq!(field(2, "vault_provider"), None);
        let Kind::Seq(providers) = &tree.get("vault").unwrap().get("providers").unwrap().kind
        else {
            panic!("vault.providers is not a list")
        };
        assert_eq!(providers.len(), 1);
        let p = &providers[0];
        assert_eq!(p.get("id").and_then(Node::as_str), Some("canva"));
        assert_eq!(
            p.get("resource").and_then(Node::as_str),
            Some("https://mcp.canva.example/mcp")
        );
        assert_eq!(p.get("client_id").and_then(Node::as_str), Some("x"));
        let Some(Kind::Seq(scopes)) = p.get("scopes").map(|s| &s.kind) else {
            panic!("no scopes")
        };
        let scopes: Vec<&str> = scopes.iter().filter_map(Node::as_str).collect();
        assert_eq!(scopes, ["design:read", "design:write"]);
        assert!(
            !out.warnings
                .iter()
                .any(|w| w.contains("CORTEX_MCP_CANVA_CLIENT_ID")),
            "{:?}",
            out.warnings
        );
    }
}
