//! What changes between two configurations, key by key, and whether a running gateway can
//! apply each change live (a reload) or needs a restart. Pure: `check-config --diff` prints
//! it, and a reload decides with it what it may apply.
//!
//! The rule ([`RESTART`]): what the process binds, keys or builds once at start needs a
//! restart — the listeners and worker threads, the canonical URI (token audience, endpoint
//! path, metadata URLs), the session secret and the session store's limits, the catalog
//! refresher's timings, everything under `auth` (token validator, signing keys, dev bypass,
//! fixed principal), the data directory, storage and audit trail, the development
//! authorization server, the webhook delivery service and logging. Everything else decides
//! how a request is answered and is applied live: backends (added, removed, changed or
//! reordered, matched by id), scope implications, origins and hosts, `serverInfo` text, the
//! body limit, the session mode and stream keep-alive, catalog presentation, builtin scopes
//! and ticket routing.
//!
//! Values are compared in their configuration spelling (`10s`, `4MiB`). Secrets are never
//! shown, only that they changed.

use std::fmt::Write as _;

use serde_json::Value;

use super::schema::Config;

/// Keys that need a restart, by key path (a prefix at a `.` boundary; list items are
/// matched whatever their id), and why.
pub const RESTART: &[(&str, &str)] = &[
    ("server.listen", "the listeners are bound at start"),
    ("server.threads", "the worker threads are started at start"),
    (
        "server.tls",
        "the TLS listeners and the certificate's file names are set up at start (the files' contents are re-read live)",
    ),
    (
        "server.limits",
        "the connection cap, deadlines and body budget are set up at start",
    ),
    (
        "server.grace_period",
        "the shutdown settings are fixed at start",
    ),
    (
        "server.canonical_uri",
        "the token audience, the endpoint path and the metadata URLs derive from it at start",
    ),
    (
        "sessions.secret",
        "open sessions are sealed with the key derived from it",
    ),
    (
        "fleet",
        "the Redis connection and the key check are set up at start",
    ),
    (
        "sessions.idle_timeout",
        "the session store is built with it at start",
    ),
    (
        "sessions.absolute_timeout",
        "the session store is built with it at start",
    ),
    (
        "sessions.replay_buffer",
        "the session store is built with it at start",
    ),
    (
        "sessions.max_streams_per_session",
        "the session store is built with it at start",
    ),
    (
        "catalog.refresh",
        "the catalog refresher is started with it",
    ),
    (
        "catalog.stale_grace",
        "the catalog refresher is started with it",
    ),
    (
        "catalog.max_backoff",
        "the catalog refresher is started with it",
    ),
    (
        "auth",
        "the token validator, the signing keys, the dev bypass and the fixed principal are set up at start",
    ),
    (
        "data_dir",
        "the store and the signing keys are opened from it at start",
    ),
    ("storage", "the store is opened at start"),
    (
        "audit",
        "the audit trail's key and writer are set up at start",
    ),
    (
        "dev_authorization_server",
        "its signing key and clients are set up at start",
    ),
    (
        "vault",
        "the vault's key ring and providers are set up at start",
    ),
    (
        "tickets.webhook_url",
        "the webhook delivery service is started with it",
    ),
    (
        "tickets.webhook_secret",
        "the webhook delivery service is started with it",
    ),
    (
        "tickets.webhook_timeout",
        "the webhook delivery service is started with it",
    ),
    (
        "tickets.webhook_max_backoff",
        "the webhook delivery service is started with it",
    ),
    ("logging", "logging is set up once at start"),
    (
        "outbound",
        "the outbound connection pool and the authorization-server client are built at start",
    ),
    ("metrics", "the metrics listener is bound at start"),
    (
        "rate_limits.redis",
        "the shared rate-limit store is connected at start",
    ),
    (
        "integrity.baseline_file",
        "the baseline file is read and verified at start",
    ),
    (
        "integrity.private_key",
        "the baseline signing key is read at start",
    ),
    (
        "integrity.public_key",
        "the baseline verification key is read at start",
    ),
];

/// `new` with every key that needs a restart ([`RESTART`]) put back to its value in
/// `running`: what a reload puts in force, so that nothing is half-applied (the process keeps
/// running on the restart-only settings it started with, and every other part of the policy
/// agrees with them). Fails only if the result does not read back as a configuration.
pub fn keep_restart_keys(running: &Config, new: &Config) -> Result<Config, String> {
    let old = serde_json::to_value(running).map_err(|e| e.to_string())?;
    let mut merged = serde_json::to_value(new).map_err(|e| e.to_string())?;
    for (path, _) in RESTART {
        let keys: Vec<&str> = path.split('.').collect();
        let Some((last, parents)) = keys.split_last() else {
            continue;
        };
        let running_value = parents
            .iter()
            .try_fold(&old, |v, k| v.get(*k))
            .and_then(|v| v.get(*last))
            .cloned();
        let parent: String = parents.iter().map(|k| format!("/{k}")).collect();
        if let Some(Value::Object(map)) = merged.pointer_mut(&parent) {
            match running_value {
                Some(v) => {
                    map.insert((*last).to_string(), v);
                }
                None => {
                    map.remove(*last);
                }
            }
        }
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

/// Keys whose values are never shown.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "client_secret",
    "token",
    "technical_token",
    "webhook_secret",
    "database_url",
    "key",
    "redis_url",
    "private_key",
];

/// How a key changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Present only in the new configuration (a backend, a map entry).
    Added,
    /// Present only in the old one.
    Removed,
    /// A different value.
    Modified,
}

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key path: `server.allowed_origins`, `backends[crm].url`,
    /// `scopes.implies["mcp:crm:write"]`.
    pub path: String,
    /// Added, removed or modified.
    pub kind: ChangeKind,
    /// The old value as the configuration spells it (secrets hidden); `None` when added.
    pub old: Option<String>,
    /// The new value; `None` when removed.
    pub new: Option<String>,
    /// Whether a running gateway can apply it without a restart.
    pub reloadable: bool,
    /// Why it needs a restart (empty when reloadable).
    pub reason: &'static str,
}

/// One step of a path.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    /// A list item matched by its id.
    Id(String),
}

/// Every changed key from `old` to `new`, in key order.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let old = serde_json::to_value(old).unwrap_or(Value::Null);
    let new = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk(&mut Vec::new(), &old, &new, &mut out);
    out
}

fn walk(path: &mut Vec<Step>, old: &Value, new: &Value, out: &mut Vec<Change>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Array(a), Value::Array(b)) if key_path(path) == "backends" => {
            backends(path, a, b, out);
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, a_value) in a {
                path.push(Step::Key(key.clone()));
                match b.get(key) {
                    Some(b_value) => walk(path, a_value, b_value, out),
                    None => push(path, ChangeKind::Removed, Some(a_value), None, out),
                }
                path.pop();
            }
            for (key, b_value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                path.push(Step::Key(key.clone()));
                push(path, ChangeKind::Added, None, Some(b_value), out);
                path.pop();
            }
        }
        _ => push(path, ChangeKind::Modified, Some(old), Some(new), out),
    }
}

/// Backends are matched by id: added, removed, changed, and reordered (the order is the
/// priority on a name collision).
fn backends(path: &mut Vec<Step>, old: &[Value], new: &[Value], out: &mut Vec<Change>) {
    let id = |b: &Value| {
        b.get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let find = |list: &[Value], wanted: &str| list.iter().find(|b| id(b) == wanted).cloned();
    for a in old {
        path.push(Step::Id(id(a)));
        match find(new, &id(a)) {
            Some(b) => walk(path, a, &b, out),
            None => push(path, ChangeKind::Removed, a.get("url"), None, out),
        }
        path.pop();
    }
    for b in new.iter().filter(|b| find(old, &id(b)).is_none()) {
        path.push(Step::Id(id(b)));
        push(path, ChangeKind::Added, None, b.get("url"), out);
        path.pop();
    }
    let common = |list: &[Value], other: &[Value]| -> Vec<Value> {
        list.iter()
            .filter(|b| find(other, &id(b)).is_some())
            .map(|b| Value::String(id(b)))
            .collect()
    };
    let (a_order, b_order) = (common(old, new), common(new, old));
    if a_order != b_order {
        push(
            path,
            ChangeKind::Modified,
            Some(&Value::Array(a_order)),
            Some(&Value::Array(b_order)),
            out,
        );
    }
}

fn push(
    path: &[Step],
    kind: ChangeKind,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<Change>,
) {
    let rule = key_path(path);
    let secret = matches!(path.last(), Some(Step::Key(k)) if SECRET_KEYS.contains(&k.as_str()));
    let show = |v: &Value| {
        if secret && !v.is_null() {
            "(hidden)".to_string()
        } else {
            display(&redact(v))
        }
    };
    let reason = RESTART
        .iter()
        .find(|(prefix, _)| {
            rule == *prefix
                || rule
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .map(|(_, why)| *why)
        .unwrap_or("");
    out.push(Change {
        path: display_path(path),
        kind,
        old: old.map(show),
        new: new.map(show),
        reloadable: reason.is_empty(),
        reason,
    });
}

/// The path the [`RESTART`] rules are written in: keys only, items' ids left out.
fn key_path(path: &[Step]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Id(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn display_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k)
                if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Key(k) => {
                let _ = write!(out, "[{}]", Value::String(k.clone()));
            }
            Step::Id(id) => {
                let _ = write!(out, "[{id}]");
            }
        }
    }
    out
}

/// Secrets inside a shown value (a dev bypass, a backend) are hidden too.
fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if SECRET_KEYS.contains(&k.as_str()) && !v.is_null() {
                        Value::String("(hidden)".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// A value as a person reads it: text bare, lists in brackets, `unset` for nothing.
fn display(value: &Value) -> String {
    match value {
        Value::Null => "unset".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(display).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The changes for a person: those a reload applies, then those that need a restart.
pub fn render_diff(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".into();
    }
    let mut out = String::new();
    let line = |c: &Change| -> String {
        let what = match (c.kind, &c.old, &c.new) {
            (ChangeKind::Added, _, Some(new)) => format!("+ {} ({new})", c.path),
            (ChangeKind::Added, _, None) => format!("+ {}", c.path),
            (ChangeKind::Removed, Some(old), _) => format!("- {} ({old})", c.path),
            (ChangeKind::Removed, None, _) => format!("- {}", c.path),
            (ChangeKind::Modified, old, new) => format!(
                "~ {}: {} → {}",
                c.path,
                old.as_deref().unwrap_or("unset"),
                new.as_deref().unwrap_or("unset")
            ),
        };
        if c.reloadable {
            what
        } else {
            format!("{what}  ({})", c.reason)
        }
    };
    let (live, restart): (Vec<&Change>, Vec<&Change>) = changes.iter().partition(|c| c.reloadable);
    let plural = |n: usize| if n == 1 { "change" } else { "changes" };
    if !live.is_empty() {
        let _ = writeln!(
            out,
            "{} {} applied live by a reload:",
            live.len(),
            plural(live.len())
        );
        for c in &live {
            let _ = writeln!(out, "  {}", line(c));
        }
    }
    if !restart.is_empty() {
        let _ = writeln!(
            out,
            "{} {} {} a restart:",
            restart.len(),
            plural(restart.len()),
            if restart.len() == 1 { "needs" } else { "need" }
        );
        for c in &restart {
            let _ = writeln!(out, "  {}", line(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, MapEnv};

    fn config(yaml: &str) -> Config {
        match load_str(yaml, "t", &MapEnv::default()) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{yaml}: {e}"),
        }
    }

    const BASE: &str = "\
auth:
  mode: none
technical_token: t
backends:
  - id: crm
    url: http://127.0.0.1:4001
  - id: billing
    url: http://127.0.0.1:4002
";

    fn paths(changes: &[Change]) -> Vec<(&str, ChangeKind, bool)> {
        changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind, c.reloadable))
            .collect()
    }

    #[test]
    fn a_reload_keeps_every_restart_key_and_applies_the_rest() {
        let running = config(BASE);
        let new = config(
            "\
server:
  listen: [\"127.0.0.1:9999\"]
  threads: 7
  grace_period: 42s
  allowed_origins: [\"https://app.example.com\"]
sessions:
  secret: \"0123456789abcdef0123456789abcdef-new\"
  idle_timeout: 99s
catalog:
  refresh: 9s
  page_size: 7
auth:
  mode: none
  principal:
    sub: someone-else
technical_token: t
logging:
  level: debug
backends:
  - id: crm
    url: http://127.0.0.1:4011
",
        );
        let merged = keep_restart_keys(&running, &new).expect("merges");
        let left = diff(&running, &merged);
        assert!(
            left.iter().all(|c| c.reloadable),
            "a restart-only key was applied: {left:?}"
        );
        let applied: Vec<&str> = left.iter().map(|c| c.path.as_str()).collect();
        assert!(applied.contains(&"server.allowed_origins"), "{applied:?}");
        assert!(applied.contains(&"catalog.page_size"), "{applied:?}");
        assert!(applied.contains(&"backends[crm].url"), "{applied:?}");
        assert!(applied.contains(&"backends[billing]"), "{applied:?}");
        // Everything not applied is exactly what the diff calls restart-only.
        let restart: Vec<String> = diff(&running, &new)
            .into_iter()
            .filter(|c| !c.reloadable)
            .map(|c| c.path)
            .collect();
        assert!(restart.len() >= 8, "{restart:?}");
        assert_eq!(
            diff(&merged, &new)
                .into_iter()
                .map(|c| c.path)
                .collect::<Vec<_>>(),
            restart
        );
    }

    #[test]
    fn the_same_configuration_has_no_changes() {
        assert!(diff(&config(BASE), &config(BASE)).is_empty());
        assert_eq!(render_diff(&[]), "no changes\n");
    }

    #[test]
    fn backends_are_matched_by_id() {
        let new = "\
auth:
  mode: none
technical_token: t
backends:
  - id: billing
    url: http://127.0.0.1:4002
    timeout: 3s
  - id: tickets
    url: http://127.0.0.1:4003
";
        let changes = diff(&config(BASE), &config(new));
        assert_eq!(
            paths(&changes),
            vec![
                ("backends[crm]", ChangeKind::Removed, true),
                ("backends[billing].timeout", ChangeKind::Modified, true),
                ("backends[tickets]", ChangeKind::Added, true),
            ]
        );
        assert_eq!(changes[0].old.as_deref(), Some("http://127.0.0.1:4001"));
        assert_eq!(changes[1].old.as_deref(), Some("10s"));
        assert_eq!(changes[1].new.as_deref(), Some("3s"));
        assert_eq!(changes[2].new.as_deref(), Some("http://127.0.0.1:4003"));

        // Same backends in another order: the priority changed.
        let swapped = BASE
            .replace("crm", "x")
            .replace("billing", "crm")
            .replace("x", "billing");
        let changes = diff(&config(BASE), &config(&swapped));
        let order = changes
            .iter()
            .find(|c| c.path == "backends")
            .expect("an order change");
        assert_eq!(order.old.as_deref(), Some("[crm, billing]"));
        assert_eq!(order.new.as_deref(), Some("[billing, crm]"));
        assert!(order.reloadable);
    }

    #[test]
    fn restart_keys_are_flagged_with_their_reason() {
        let new = format!(
            "{BASE}server:\n  listen: ['127.0.0.1:4100']\n  allowed_origins: ['https://app.example.com']\nsessions:\n  secret: {}\n  mode: required\nstorage:\n  database_url: postgres://u:hunter2@127.0.0.1/db\nscopes:\n  implies:\n    'mcp:crm:write': ['mcp:crm:read']\ncatalog:\n  tool_mode: search\n  refresh: 30s\n",
            "s".repeat(40)
        );
        let changes = diff(&config(BASE), &config(&new));
        assert_eq!(
            paths(&changes),
            vec![
                ("catalog.refresh", ChangeKind::Modified, false),
                ("catalog.tool_mode", ChangeKind::Modified, true),
                ("scopes.implies[\"mcp:crm:write\"]", ChangeKind::Added, true),
                ("server.allowed_origins", ChangeKind::Modified, true),
                ("server.listen", ChangeKind::Modified, false),
                ("sessions.mode", ChangeKind::Modified, true),
                ("sessions.secret", ChangeKind::Modified, false),
                ("storage.database_url", ChangeKind::Modified, false),
            ]
        );
        let listen = changes.iter().find(|c| c.path == "server.listen").unwrap();
        assert_eq!(listen.old.as_deref(), Some("[127.0.0.1:3213]"));
        assert_eq!(listen.reason, "the listeners are bound at start");
        let secret = changes
            .iter()
            .find(|c| c.path == "sessions.secret")
            .unwrap();
        assert_eq!(
            (secret.old.as_deref(), secret.new.as_deref()),
            (Some("unset"), Some("(hidden)"))
        );
        let text = render_diff(&changes);
        assert!(
            !text.contains("hunter2") && !text.contains("sssss"),
            "{text}"
        );
        assert!(
            text.starts_with("4 changes applied live by a reload:\n"),
            "{text}"
        );
        assert!(text.contains("4 changes need a restart:\n"), "{text}");
        assert!(
            text.contains("  ~ server.listen: [127.0.0.1:3213] → [127.0.0.1:4100]  (the listeners are bound at start)\n"),
            "{text}"
        );
        assert!(
            text.contains("  + scopes.implies[\"mcp:crm:write\"] ([mcp:crm:read])\n"),
            "{text}"
        );
    }

    #[test]
    fn nested_secrets_are_hidden_and_every_auth_key_needs_a_restart() {
        let new = BASE.replace(
            "  mode: none\n",
            "  mode: none\n  dev_bypass:\n    token: dev-secret-token\n",
        );
        let changes = diff(&config(BASE), &config(&new));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, "auth.dev_bypass");
        assert!(!changes[0].reloadable);
        let shown = changes[0].new.as_deref().unwrap();
        assert!(
            shown.contains("(hidden)") && !shown.contains("dev-secret-token"),
            "{shown}"
        );
    }

    #[test]
    fn every_restart_rule_names_a_real_key() {
        fn collect(value: &Value, prefix: &str, out: &mut Vec<String>) {
            if let Value::Object(map) = value {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    collect(child, &path, out);
                    out.push(path);
                }
            }
        }
        let mut keys = Vec::new();
        collect(
            &serde_json::to_value(Config::default()).unwrap(),
            "",
            &mut keys,
        );
        for (rule, why) in RESTART {
            assert!(!why.is_empty());
            assert!(
                keys.iter().any(|k| k == rule),
                "{rule} is not a configuration key"
            );
        }
    }
}
