//! Configuration: YAML schema, `${VAR}` expansion, Cortex env overlay, validation.
//!
//! Precedence is defaults < YAML file < environment. Loading runs in stages over a tree that
//! remembers the line and column of every value (see [`tree`]):
//! 1. parse the YAML (syntax errors carry line and column);
//! 2. expand `${VAR}` / `${VAR:-default}` in string values ([`expand`]);
//! 3. apply the Cortex environment overlay ([`overlay`]);
//! 4. build the typed [`Config`], rejecting unknown keys with a suggestion ([`de`]);
//! 5. validate ranges, URLs and contradictions ([`validate`]), then any further checks the
//!    caller passes to [`load_with`]: the features that turn the configuration into running
//!    parts (token algorithms, identity propagation, the development authorization server,
//!    audit and storage, the key files they read) check their own settings through
//!    the `preflight` module, with the same positions, so that `check-config` and a reload refuse
//!    everything `serve` would. This module imports no feature; features plug their checks in.
//!
//! Besides loading: [`diff`] tells what changes between two configurations and what a reload
//! can apply, and [`json_schema`] is the JSON Schema of the file for editors.
//!
//! Every stage keeps going after a problem so that one run reports all of them.

mod de;
mod diff;
mod env;
mod error;
mod expand;
pub mod fleet;
mod identity;
mod json_schema;
mod overlay;
pub mod protect;
mod report;
pub mod schema;
mod tree;
pub mod units;
mod validate;
pub mod vault;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use diff::{diff, keep_restart_keys, render_diff, Change, ChangeKind};
pub use env::{parse_env_str, read_env_file, EnvSource, LayeredEnv, MapEnv, ProcessEnv};
pub use error::{ConfigError, ConfigErrors, ConfigIssue};
pub use fleet::FleetConfig;
pub use json_schema::{json_schema, json_schema_text};
pub use protect::*;
pub use report::render_check_report;
pub use schema::*;

use de::{Collector, DeIssue, NodeDe};
use tree::{path_string, Kind, Node, Origin};

/// What further checks work with: the findings they add to, and the paths they name.
pub mod checks {
    pub use super::de::suggest;
    pub use super::tree::Seg;
    pub use super::validate::{http_url, p, pi, pik, Findings};
}

use checks::{Findings, Seg};

/// Further checks of a loaded configuration: `(config, set_in_file, findings)`, where
/// `set_in_file(path)` tells whether a key is written in the file or the environment rather
/// than left at its default.
pub type ExtraChecks<'a> = &'a dyn Fn(&Config, &dyn Fn(&[Seg]) -> bool, &mut Findings);

fn no_extra_checks(_: &Config, _: &dyn Fn(&[Seg]) -> bool, _: &mut Findings) {}

/// Name used in messages when no file is loaded.
const DEFAULTS_NAME: &str = "<defaults>";

/// How many values may fail to deserialize before we stop looking for more.
const MAX_DESERIALIZE_ATTEMPTS: usize = 100;

/// A loaded and validated configuration.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// Things that work but deserve attention (print them at start).
    pub warnings: Vec<String>,
    /// The YAML file, when one was loaded.
    pub source: Option<PathBuf>,
    /// The environment variables that overrode the file, in the order applied.
    pub overrides: Vec<String>,
}

/// Loads YAML from `path` (or starts from the defaults when `path` is None), expands
/// `${VAR}` from `env`, applies the `CORTEX_*`/`OAUTH_*`/`PORT`/`HOSTNAME` overlay and
/// validates. All problems found are returned together.
///
/// This checks the file; `preflight::load` (a module above the features) also checks what `serve` sets up at start
/// (key files, algorithms, the development authorization server): use that one wherever a
/// configuration is about to run or be reported on.
pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<LoadedConfig, ConfigErrors> {
    load_with(path, env, &no_extra_checks)
}

/// [`load`], then `extra` on the typed configuration; its findings are reported with file
/// positions like every other problem.
pub fn load_with(
    path: Option<&Path>,
    env: &dyn EnvSource,
    extra: ExtraChecks<'_>,
) -> Result<LoadedConfig, ConfigErrors> {
    let Some(path) = path else {
        let tree = Node::new(Kind::Null, Origin::Synthetic);
        return load_tree(tree, DEFAULTS_NAME, None, env, extra);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(ConfigIssue::new(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        )))
    })?;
    let name = path.display().to_string();
    let tree = tree::parse_yaml(&text, &name).map_err(ConfigErrors::one)?;
    load_tree(tree, &name, Some(path.to_path_buf()), env, extra)
}

/// Same as [`load`], from a YAML string; `name` stands for the file in messages.
pub fn load_str(yaml: &str, name: &str, env: &dyn EnvSource) -> Result<LoadedConfig, ConfigErrors> {
    load_str_with(yaml, name, env, &no_extra_checks)
}

/// Same as [`load_with`], from a YAML string.
pub fn load_str_with(
    yaml: &str,
    name: &str,
    env: &dyn EnvSource,
    extra: ExtraChecks<'_>,
) -> Result<LoadedConfig, ConfigErrors> {
    let tree = tree::parse_yaml(yaml, name).map_err(ConfigErrors::one)?;
    load_tree(tree, name, None, env, extra)
}

/// An issue with its sort key (file position; problems without one come last).
struct Located {
    issue: ConfigIssue,
    position: Option<(u64, u64)>,
}

/// Turns a path and origin into an issue: file position, or the variable that set the value.
fn located(name: &str, path: &[Seg], origin: Option<&Origin>, message: String) -> Located {
    let position = match origin {
        Some(Origin::File { line, column }) => Some((*line, *column)),
        _ => None,
    };
    let message = match origin.and_then(Origin::env_var) {
        Some(var) => format!("{message} (set by {var})"),
        None => message,
    };
    Located {
        issue: ConfigIssue::new(message)
            .at_path(path_string(path))
            .at_location(origin.and_then(|o| o.location(name))),
        position,
    }
}

fn load_tree(
    mut tree: Node,
    name: &str,
    source: Option<PathBuf>,
    env: &dyn EnvSource,
    extra: ExtraChecks<'_>,
) -> Result<LoadedConfig, ConfigErrors> {
    if !matches!(tree.kind, Kind::Map(_) | Kind::Null) {
        let issue = ConfigIssue::new(
            "the configuration must be a mapping of keys (server:, auth:, backends:, …)",
        )
        .at_location(tree.origin.location(name));
        return Err(ConfigErrors::one(issue));
    }
    let mut errors: Vec<Located> = Vec::new();

    // A value whose expansion failed is removed, so it is reported once (not again as an
    // invalid duration, say); a required key it leaves missing is not reported either.
    let mut unexpanded: Vec<Vec<Seg>> = Vec::new();
    for (path, problem) in expand::expand_tree(&mut tree, env) {
        let origin = tree.at(&path).map(|n| n.origin.clone());
        errors.push(located(name, &path, origin.as_ref(), problem.message()));
        unexpanded.push(path);
    }
    for path in &unexpanded {
        tree.remove_at(path);
    }

    let overlay = overlay::apply(&mut tree, env);
    errors.extend(overlay.errors.into_iter().map(|issue| Located {
        issue,
        position: None,
    }));

    let (config, de_issues) = deserialize(&mut tree);
    let config = config.map(unset_blank_text);
    for issue in de_issues.into_iter().filter(|i| !caused_by(i, &unexpanded)) {
        errors.push(located(
            name,
            &issue.path,
            issue.origin.as_ref(),
            issue.message,
        ));
    }

    let mut warnings: Vec<String> = overlay.warnings;
    if let Some(config) = &config {
        let mut findings = validate::validate(config);
        let set_in_file = |path: &[Seg]| tree.locate(path).1.is_some();
        extra(config, &set_in_file, &mut findings);
        for (path, message) in findings.errors {
            // A key left out because its `${VAR}` did not expand is reported once, above.
            let unexpanded_key = unexpanded.iter().any(|u| {
                matches!(u.split_last(), Some((Seg::Key(key), parent))
                    if parent == path.as_slice()
                        && message.starts_with(&format!("missing required key `{key}`")))
            });
            if unexpanded_key {
                continue;
            }
            let (file_path, origin) = tree.locate(&path);
            errors.push(located(name, &file_path, origin.as_ref(), message));
        }
        for (path, message) in findings.warnings {
            let (file_path, origin) = tree.locate(&path);
            warnings.push(
                located(name, &file_path, origin.as_ref(), message)
                    .issue
                    .to_string(),
            );
        }
    }

    match config {
        Some(config) if errors.is_empty() => Ok(LoadedConfig {
            config,
            warnings,
            source,
            overrides: overlay.overrides,
        }),
        _ => {
            // File order first, then problems that come from the environment.
            errors.sort_by_key(|e| e.position.unwrap_or((u64::MAX, u64::MAX)));
            let mut issues: Vec<ConfigIssue> = Vec::new();
            for e in errors {
                if !issues.contains(&e.issue) {
                    issues.push(e.issue);
                }
            }
            Err(ConfigErrors(issues))
        }
    }
}

/// Deserializes the typed configuration. A value that fails is reported and removed, and the
/// pass is repeated, so that every bad value is found rather than only the first.
fn deserialize(tree: &mut Node) -> (Option<Config>, Vec<DeIssue>) {
    let mut issues: Vec<DeIssue> = Vec::new();
    for _ in 0..MAX_DESERIALIZE_ATTEMPTS {
        let collector = Collector::default();
        let result = Config::deserialize(NodeDe::root(tree, &collector));
        for issue in collector.issues.into_inner() {
            if !issues.contains(&issue) {
                issues.push(issue);
            }
        }
        match result {
            Ok(config) => return (Some(config), issues),
            Err(error) => {
                let path = error.path.clone().unwrap_or_default();
                let mut issue = DeIssue {
                    path: path.clone(),
                    origin: error.origin,
                    message: error.message,
                };
                issue.message = with_hint(tree, &issue);
                issues.push(issue);
                if !tree.remove_at(&path) {
                    return (None, issues);
                }
            }
        }
    }
    (None, issues)
}

/// `key: ""` on an optional text setting means the same as leaving the key out: an empty
/// token, URL or secret is never meant literally. Keys where `""` has a meaning of its own
/// (`builtins.scopes.*`: any caller) are deliberately not listed.
fn unset_blank_text(mut config: Config) -> Config {
    fn blank(value: &mut Option<String>) {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *value = None;
        }
    }
    let server = &mut config.server;
    for value in [
        &mut server.canonical_uri,
        &mut server.website_url,
        &mut server.instructions,
    ] {
        blank(value);
    }
    blank(&mut config.sessions.secret);
    blank(&mut config.technical_token);
    let principal = &mut config.auth.principal;
    for value in [
        &mut principal.email,
        &mut principal.role,
        &mut principal.pool,
        &mut principal.token,
    ] {
        blank(value);
    }
    let oauth = &mut config.auth.oauth;
    for value in [
        &mut oauth.issuer,
        &mut oauth.audience,
        &mut oauth.jwks_url,
        &mut oauth.required_pool,
        &mut oauth.introspection.url,
        &mut oauth.introspection.client_id,
        &mut oauth.introspection.client_secret,
        &mut oauth.token_exchange.client_id,
        &mut oauth.token_exchange.client_secret,
        &mut oauth.token_exchange.token_endpoint,
    ] {
        blank(value);
    }
    let mint = &mut config.auth.mint;
    for value in [&mut mint.issuer, &mut mint.key_file] {
        blank(value);
    }
    blank(&mut config.storage.database_url);
    for backend in &mut config.backends {
        blank(&mut backend.technical_token);
    }
    config
}

/// Whether a deserialization issue only repeats a failed `${VAR}` expansion.
fn caused_by(issue: &DeIssue, unexpanded: &[Vec<Seg>]) -> bool {
    unexpanded.iter().any(|path| {
        if *path == issue.path {
            return true;
        }
        match path.split_last() {
            Some((Seg::Key(key), parent)) => {
                parent == issue.path.as_slice()
                    && issue
                        .message
                        .starts_with(&format!("missing required key `{key}`"))
            }
            _ => false,
        }
    })
}

/// Adds the environment variable that could supply a missing required key.
fn with_hint(tree: &Node, issue: &DeIssue) -> String {
    let message = issue.message.clone();
    let id = match issue.path.as_slice() {
        [Seg::Key(first), Seg::Index(_)] if first == "backends" => tree
            .at(&issue.path)
            .and_then(|b| b.get("id"))
            .and_then(Node::as_str)
            .map(str::to_string),
        _ => None,
    };
    match (message.as_str(), id) {
        ("missing required key `url`", Some(id)) => {
            format!("{message} (or set {})", overlay::backend_var(&id, "URL"))
        }
        ("missing required key `id`", _) => {
            format!("{message}: every backend needs an id (e.g. `id: crm`)")
        }
        ("missing required key `token`", None) if path_string(&issue.path) == "auth.dev_bypass" => {
            format!("{message} (or set CORTEX_DEV_BYPASS_TOKEN)")
        }
        _ => message,
    }
}

/// Parses a listen address: `ip:port`, `[ipv6]:port` or `localhost:port` (→ 127.0.0.1).
/// Host names are not resolved: a listener must be a specific address.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let help = "write host:port with an IP address or `localhost`, e.g. 127.0.0.1:3213, 0.0.0.0:3213 or [::1]:3213";
    match text.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port
            .parse::<u16>()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .map_err(|_| format!("`{text}` has an invalid port; {help}")),
        Some((_, port)) if port.parse::<u16>().is_err() => {
            Err(format!("`{text}` has an invalid port; {help}"))
        }
        Some(_) => Err(format!(
            "`{text}` is not a listen address (host names other than localhost are not resolved); {help}"
        )),
        None => Err(format!("`{text}` has no port; {help}")),
    }
}

impl Config {
    /// The public URI of the MCP endpoint: `server.canonical_uri`, or
    /// `http://<host>:<port>/mcp` from the first listener (127.0.0.1 when it listens on
    /// every interface, since that is the address a local client can always use).
    pub fn canonical_uri(&self) -> String {
        if let Some(uri) = self
            .server
            .canonical_uri
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            return uri.to_string();
        }
        let addr = self
            .listen_addrs()
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3213));
        let ip = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        format!("http://{}/mcp", SocketAddr::new(ip, addr.port()))
    }

    /// The path of the canonical URI (`/mcp` by default); never empty.
    pub fn mcp_path(&self) -> String {
        url::Url::parse(&self.canonical_uri())
            .ok()
            .map(|u| u.path().to_string())
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/mcp".into())
    }

    /// `serverInfo.websiteUrl`: `server.website_url`, or the canonical URI's origin.
    pub fn website_url(&self) -> String {
        if let Some(url) = self.server.website_url.as_deref().filter(|u| !u.is_empty()) {
            return url.to_string();
        }
        let canonical = self.canonical_uri();
        url::Url::parse(&canonical)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or(canonical)
    }

    /// Whether every listener is on a loopback address (and there is at least one).
    pub fn all_listeners_loopback(&self) -> bool {
        let addrs = self.listen_addrs();
        !addrs.is_empty()
            && addrs
                .iter()
                .chain(self.tls_listen_addrs().iter())
                .all(|a| a.ip().is_loopback())
    }

    /// The TLS listen addresses (`server.tls.listen`), validated like
    /// [`Config::listen_addrs`].
    pub fn tls_listen_addrs(&self) -> Vec<SocketAddr> {
        self.server
            .tls
            .iter()
            .flat_map(|t| t.listen.iter())
            .filter_map(|text| parse_listen(text).ok())
            .collect()
    }

    /// The listen addresses. A loaded configuration has validated them all; entries that do
    /// not parse (possible only in a hand-built `Config`) are left out.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.server
            .listen
            .iter()
            .filter_map(|text| parse_listen(text).ok())
            .collect()
    }
}

/// The field list of every struct of the schema met while loading `yaml`, by path. Used to
/// check that the reference file documents every key.
#[cfg(test)]
pub(crate) fn schema_fields(yaml: &str) -> Vec<(String, &'static [&'static str])> {
    let collector = Collector::default();
    if let Ok(tree) = tree::parse_yaml(yaml, "t") {
        let _ = Config::deserialize(NodeDe::root(&tree, &collector));
    }
    collector.structs.into_inner()
}
