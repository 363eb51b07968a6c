//! The configuration schema: what `conf/gateway.yaml` may say, after `${VAR}` expansion and
//! the `CORTEX_*` / `OAUTH_*` environment overlay. Every field has a sane default so an empty
//! file (or none at all, with a Cortex env file) is a valid start.
//!
//! Unknown keys are rejected (`deny_unknown_fields`) so a typo never silently does nothing.

use std::time::Duration;

use serde::Deserialize;

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, identity, limits.
    pub server: ServerConfig,
    /// `Mcp-Session-Id` sessions and the notification stream.
    pub sessions: SessionsConfig,
    /// Catalog discovery and listing.
    pub catalog: CatalogConfig,
    /// Caller authentication.
    pub auth: AuthConfig,
    /// Scope implications.
    pub scopes: ScopesConfig,
    /// Token sent on catalog discovery calls (`CORTEX_TECHNICAL_TOKEN`).
    pub technical_token: Option<String>,
    /// Allow `http://` backends that are not on loopback (`CORTEX_ALLOW_INSECURE_BACKENDS`).
    pub allow_insecure_backends: bool,
    /// The federated backends, in priority order (the first wins a name collision).
    pub backends: Vec<BackendConfig>,
    /// Log output.
    pub logging: LoggingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            sessions: SessionsConfig::default(),
            catalog: CatalogConfig::default(),
            auth: AuthConfig::default(),
            scopes: ScopesConfig::default(),
            technical_token: None,
            allow_insecure_backends: false,
            backends: Vec::new(),
            logging: LoggingConfig::default(),
        }
    }
}

/// Listeners, public identity and request limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen addresses `host:port` (`HOSTNAME` + `PORT` override: one listener).
    pub listen: Vec<String>,
    /// The public URI of the MCP endpoint (`CORTEX_CANONICAL_URI`); its path is the endpoint
    /// path, and it is the default token audience. Default `http://127.0.0.1:<port>/mcp`
    /// derived from the first listener.
    pub canonical_uri: Option<String>,
    /// `serverInfo.name` (`CORTEX_SERVER_NAME`).
    pub name: String,
    /// `serverInfo.websiteUrl` (`CORTEX_WEBSITE_URL`); default: the canonical URI's origin.
    pub website_url: Option<String>,
    /// Extra text appended to the `instructions` of `initialize`.
    pub instructions: Option<String>,
    /// Allowed browser origins: exact origins, `*.suffix` or `*` (`CORTEX_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// Extra `Host` values accepted when listening on loopback (DNS-rebinding check).
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body; larger → 413. Default 4 MiB.
    #[serde(with = "crate::config::units::size")]
    pub max_body_bytes: u64,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests before exiting.
    #[serde(with = "crate::config::units::duration")]
    pub grace_period: Duration,
    /// Idle keep-alive timeout of downstream HTTP/1.1 connections.
    #[serde(with = "crate::config::units::duration")]
    pub keepalive_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:3213".into()],
            canonical_uri: None,
            name: "cortex-gateway".into(),
            website_url: None,
            instructions: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            threads: 2,
            grace_period: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(75),
        }
    }
}

/// Whether a session id is required on requests other than `initialize`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Requests without a session id are served statelessly (Cortex behaviour).
    #[default]
    Optional,
    /// A missing session id on anything but `initialize` → 400.
    Required,
}

/// Sessions and notification streams.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// `optional` (default) or `required`.
    pub mode: SessionMode,
    /// A session unused for this long is gone (404).
    #[serde(with = "crate::config::units::duration")]
    pub idle_timeout: Duration,
    /// A session older than this is gone, used or not.
    #[serde(with = "crate::config::units::duration")]
    pub absolute_timeout: Duration,
    /// Secret from which the session-sealing key is derived (≥ 32 characters). Every replica
    /// of a fleet needs the same one. Absent: a random key per process (sessions do not
    /// survive a restart), with a warning at start.
    pub secret: Option<String>,
    /// Events kept per session for `Last-Event-ID` replay.
    pub replay_buffer: usize,
    /// Interval of SSE keepalive comments.
    #[serde(with = "crate::config::units::duration")]
    pub keepalive_interval: Duration,
    /// Most concurrent GET streams per session (older ones are closed).
    pub max_streams_per_session: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            mode: SessionMode::Optional,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(24 * 3600),
            secret: None,
            replay_buffer: 256,
            keepalive_interval: Duration::from_secs(15),
            max_streams_per_session: 4,
        }
    }
}

/// Catalog discovery and listing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// How often every backend is re-discovered (±10 % jitter).
    #[serde(with = "crate::config::units::duration")]
    pub refresh: Duration,
    /// How long a failing backend's last good entries stay listed (marked stale).
    #[serde(with = "crate::config::units::duration")]
    pub stale_grace: Duration,
    /// Longest wait between retries of a failing backend (exponential backoff from 1 s).
    #[serde(with = "crate::config::units::duration")]
    pub max_backoff: Duration,
    /// Entries per `*/list` page.
    pub page_size: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            refresh: Duration::from_secs(60),
            stale_grace: Duration::from_secs(600),
            max_backoff: Duration::from_secs(60),
            page_size: 500,
        }
    }
}

/// How callers authenticate.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every request is the configured principal. Loopback listeners only.
    None,
    /// OAuth 2.1 bearer tokens (`OAUTH_ISSUER`). Default.
    #[default]
    Oauth,
}

/// Caller authentication.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `oauth` (default) or `none`.
    pub mode: AuthMode,
    /// The principal every request runs as under `mode: none`.
    pub principal: PrincipalConfig,
    /// The Cortex development bypass (`X-Dev-Mode`), loopback only.
    pub dev_bypass: Option<DevBypassConfig>,
    /// OAuth settings (`OAUTH_*`).
    pub oauth: OAuthConfig,
}

/// A fixed identity (auth mode `none`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalConfig {
    /// Subject.
    pub sub: String,
    /// Email.
    pub email: Option<String>,
    /// Role (`X-Cortex-User-Role`).
    pub role: Option<String>,
    /// Pool (`X-Cortex-User-Pool`).
    pub pool: Option<String>,
    /// Granted scopes; `*` grants everything.
    pub scopes: Vec<String>,
    /// Bearer token sent to backends on this principal's calls (contract backends usually
    /// require one). Absent: no `Authorization` header is sent.
    pub token: Option<String>,
}

impl Default for PrincipalConfig {
    fn default() -> Self {
        PrincipalConfig {
            sub: "local".into(),
            email: Some("local@localhost".into()),
            role: Some("admin".into()),
            pool: None,
            scopes: vec!["*".into()],
            token: None,
        }
    }
}

/// The Cortex dev bypass: a request whose `X-Dev-Mode` equals `token` runs as `dev:local`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevBypassConfig {
    /// The shared secret (`CORTEX_DEV_BYPASS_TOKEN`).
    pub token: String,
    /// Granted scopes (`CORTEX_DEV_BYPASS_SCOPES`, space or comma separated).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Role (`CORTEX_DEV_BYPASS_ROLE`, default `admin`).
    #[serde(default = "default_admin")]
    pub role: String,
}

fn default_admin() -> String {
    "admin".into()
}

/// OAuth resource-server settings. Issue-3 territory; the keys exist so Cortex env files load.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Issuer (`OAUTH_ISSUER`).
    pub issuer: Option<String>,
    /// Expected audience (`OAUTH_AUDIENCE`); default the canonical URI.
    pub audience: Option<String>,
    /// JWKS URL (`OAUTH_JWKS_URL`); default from discovery.
    pub jwks_url: Option<String>,
    /// Floor scopes every token must carry (`OAUTH_REQUIRED_SCOPES`).
    pub required_scopes: Vec<String>,
    /// Required `pool` claim (`CORTEX_REQUIRED_POOL`).
    pub required_pool: Option<String>,
}

/// Scope implications.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScopesConfig {
    /// `granted → [implied…]`, e.g. `mcp:crm:write: [mcp:crm:read]`.
    pub implies: std::collections::BTreeMap<String, Vec<String>>,
}

/// How a backend's names are exposed.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// `<id>_<name>` (default).
    #[default]
    Prefix,
    /// The backend's own names (refused when they collide).
    None,
}

/// One contract backend.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Id: lowercase `[a-z0-9_-]`, unique (`CORTEX_BACKENDS` entry).
    pub id: String,
    /// Base URL (`CORTEX_BACKEND_<ID>_URL`).
    pub url: String,
    /// Contract path (`CORTEX_BACKEND_<ID>_PATH`), default `/api/cortex/backend`.
    #[serde(default = "default_contract_path")]
    pub path: String,
    /// Per-call timeout (`CORTEX_BACKEND_<ID>_TIMEOUT_MS`), default 10 s.
    #[serde(default = "default_backend_timeout", with = "crate::config::units::duration")]
    pub timeout: Duration,
    /// Naming of its entries.
    #[serde(default)]
    pub naming: Naming,
    /// Discovery token for this backend; default the global `technical_token`.
    #[serde(default)]
    pub technical_token: Option<String>,
}

fn default_contract_path() -> String {
    "/api/cortex/backend".into()
}

fn default_backend_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Log format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `tracing` filter, e.g. `info` or `cortex_gateway=debug,info` (`RUST_LOG` overrides).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}
