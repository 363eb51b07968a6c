//! The configuration schema: what `conf/gateway.yaml` may say, after `${VAR}` expansion and
//! the `CORTEX_*` / `OAUTH_*` environment overlay. Every field has a sane default so an empty
//! file (or none at all, with a Cortex env file) is a valid start.
//!
//! Unknown keys are rejected (`deny_unknown_fields`) so a typo never silently does nothing.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
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
    /// The gateway's own tools (builtins): the scope each requires and the admin scope.
    pub builtins: BuiltinsConfig,
    /// Missing-capability tickets: ticket-owning backends and the blocking-ticket webhook.
    pub tickets: TicketsConfig,
    /// The built-in development authorization server (off by default; loopback only).
    pub dev_authorization_server: DevAuthServerConfig,
    /// Where the gateway keeps what it persists (generated signing keys, the SQLite store, the
    /// generated audit secret). Default `./data`, relative to the working directory. Created
    /// when first needed.
    pub data_dir: Option<String>,
    /// Persistence of tickets, the webhook outbox and the audit trail: SQLite under a data
    /// directory, or PostgreSQL.
    pub storage: StorageConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// The Prometheus listener (off by default).
    pub metrics: super::protect::MetricsConfig,
    /// Rate limits per caller, per caller and tool, per backend.
    pub rate_limits: super::protect::RateLimitsConfig,
    /// Tool-definition pinning (rug-pull protection).
    pub integrity: super::protect::IntegrityConfig,
    /// The admin API.
    pub admin: super::protect::AdminConfig,
    /// The per-user token vault and the providers users link accounts at (docs/vault.md).
    pub vault: super::vault::VaultConfig,
    /// What the replicas of a fleet share through Redis, and the start-up key check
    /// (docs/fleet.md).
    pub fleet: super::fleet::FleetConfig,
    /// TLS of the gateway's outbound connections: the CA bundle backends and the
    /// authorization server are verified with, and the client certificate shown to backends.
    pub outbound: OutboundConfig,
}

/// TLS of outbound connections (backends, the authorization server).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// PEM CA bundle. Backends are verified with it instead of the system's roots; the
    /// authorization server with it in addition to them.
    pub ca_file: Option<String>,
    /// PEM client certificate shown to `https://` backends that ask for one (mTLS); with
    /// `client_key_file`.
    pub client_cert_file: Option<String>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<String>,
}

/// Listeners, public identity and request limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
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
    /// `name` of the MCP server card at `/.well-known/mcp/server-card.json`
    /// (`CORTEX_SERVER_CARD_NAME`); default: `server.name`.
    pub card_name: Option<String>,
    /// Extra text appended to the `instructions` of `initialize`.
    pub instructions: Option<String>,
    /// Allowed browser origins: exact origins, `*.suffix` or `*` (`CORTEX_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// Extra `Host` values accepted when listening on loopback (DNS-rebinding check).
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body; larger → 413. Default 4 MiB.
    #[serde(with = "crate::config::units::size")]
    #[schemars(schema_with = "crate::config::units::size::schema")]
    pub max_body_bytes: u64,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests before exiting.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub grace_period: Duration,
    /// Idle keep-alive timeout of downstream HTTP/1.1 connections.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub keepalive_timeout: Duration,
    /// TLS listeners (HTTPS; HTTP/2 and HTTP/1.1 chosen by ALPN), next to the plain ones.
    pub tls: Option<TlsConfig>,
    /// Limits of the HTTP edge against slow or greedy clients (docs/security.md).
    pub limits: LimitsConfig,
}

/// Limits of the HTTP edge: how long a client may take to send a request, how many
/// connections it may hold, how much request-body memory all requests together may pin.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The whole request header must arrive within this time of its first byte, else the
    /// connection is closed (slowloris). Default 15s.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub header_timeout: Duration,
    /// The whole request body must arrive within this time of the end of the header, else
    /// 408 and the connection is closed. Default 30s.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub body_timeout: Duration,
    /// Downstream connections open at once; one more is answered 503 and closed. Lowered at
    /// start to what the descriptor limit allows after `reserved_fds`. Default 4096.
    pub max_connections: usize,
    /// File descriptors kept free of client connections, for backend, store and
    /// authorization-server connections, files and logs (at most half the descriptor
    /// limit). Default 256.
    pub reserved_fds: usize,
    /// Request-body bytes all requests together may hold in memory; a request that would
    /// pass it is answered 503 with `Retry-After`. At least `server.max_body_bytes`.
    /// Default 64 MiB.
    #[serde(with = "crate::config::units::size")]
    #[schemars(schema_with = "crate::config::units::size::schema")]
    pub body_budget: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            reserved_fds: 256,
            body_budget: 64 * 1024 * 1024,
        }
    }
}

/// TLS listeners and their certificate. The certificate and key are read again whenever
/// their files change on disk (no restart); the listen addresses are bound at start.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Addresses of the TLS listeners, `host:port` like `server.listen`.
    pub listen: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:3213".into()],
            canonical_uri: None,
            name: "cortex-gateway".into(),
            website_url: None,
            card_name: None,
            instructions: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            threads: 2,
            grace_period: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(75),
            tls: None,
            limits: LimitsConfig::default(),
        }
    }
}

/// Whether a session id is required on requests other than `initialize`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Requests without a session id are served statelessly (Cortex behaviour).
    #[default]
    Optional,
    /// A missing session id on anything but `initialize` → 400.
    Required,
}

/// Sessions and notification streams.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// `optional` (default) or `required`.
    pub mode: SessionMode,
    /// A session unused for this long is gone (404).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub idle_timeout: Duration,
    /// A session older than this is gone, used or not.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub absolute_timeout: Duration,
    /// Secret from which the session-sealing key is derived (≥ 32 characters). Every replica
    /// of a fleet needs the same one. Absent: a random key per process (sessions do not
    /// survive a restart), with a warning at start.
    pub secret: Option<String>,
    /// Events kept per session for `Last-Event-ID` replay.
    pub replay_buffer: usize,
    /// Interval of SSE keepalive comments.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub keepalive_interval: Duration,
    /// Most concurrent GET streams per session (older ones are closed).
    pub max_streams_per_session: usize,
    /// How long a native call held for a 2026-07-28 caller's input (its upstream asked for an
    /// elicitation, a sampling or the roots) waits for the retry that brings the answer;
    /// then it is ended upstream. At most 300s (how long a native server waits for an answer).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub held_call_timeout: Duration,
    /// Most native calls one caller may have held for its input at once.
    pub max_held_calls_per_caller: usize,
    /// Most native calls held for callers' input at once on this gateway.
    pub max_held_calls: usize,
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
            held_call_timeout: Duration::from_secs(120),
            max_held_calls_per_caller: 8,
            max_held_calls: 1024,
        }
    }
}

/// Catalog discovery and listing.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// How often every backend is re-discovered (±10 % jitter).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub refresh: Duration,
    /// How long a failing backend's last good entries stay listed (marked stale).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub stale_grace: Duration,
    /// Longest wait between retries of a failing backend (exponential backoff from 1 s).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub max_backoff: Duration,
    /// Entries per `*/list` page.
    pub page_size: usize,
    /// Default presentation of `tools/list` (`CORTEX_TOOL_MODE`): `full`, or `search`
    /// (one-sentence descriptions, bare schemas, `find_tools` listed). A request's
    /// `X-Cortex-Tool-Mode` header wins.
    pub tool_mode: ToolMode,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            refresh: Duration::from_secs(60),
            stale_grace: Duration::from_secs(600),
            max_backoff: Duration::from_secs(60),
            page_size: 500,
            tool_mode: ToolMode::Full,
        }
    }
}

/// How callers authenticate.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every request is the configured principal. Loopback listeners only.
    None,
    /// OAuth 2.1 bearer tokens (`OAUTH_ISSUER`). Default.
    #[default]
    Oauth,
}

/// Caller authentication.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
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
    /// Tokens minted by the gateway for `identity: mint` backends.
    pub mint: MintConfig,
}

/// A fixed identity (auth mode `none`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
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

/// OAuth 2.1 resource-server settings (`auth.mode: oauth`); see docs/authentication.md.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
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
    /// Accepted JWS algorithms (RS/PS 256/384/512, ES256, ES384, EdDSA). `none` and HMAC
    /// algorithms are never accepted, whatever this says.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub leeway: Duration,
    /// How often the issuer's metadata and JWKS are refreshed in the background.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub jwks_refresh: Duration,
    /// Shortest interval between two JWKS fetches triggered by an unknown `kid`.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub jwks_min_refetch: Duration,
    /// How long a validated token is remembered (never beyond its `exp`); `0s` disables.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub token_cache_ttl: Duration,
    /// Most validated tokens remembered.
    pub token_cache_size: u64,
    /// Timeout of each call to the authorization server.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub http_timeout: Duration,
    /// `resource_name` of the protected-resource metadata; default `server.name`.
    pub resource_name: Option<String>,
    /// `resource_documentation` of the protected-resource metadata; default `server.website_url`.
    pub resource_documentation: Option<String>,
    /// RFC 7662 token introspection (`OAUTH_INTROSPECT_*`), for revocation.
    pub introspection: IntrospectionConfig,
    /// The gateway's own client at the authorization server, for RFC 8693 token exchange.
    pub token_exchange: TokenExchangeConfig,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            issuer: None,
            audience: None,
            jwks_url: None,
            required_scopes: Vec::new(),
            required_pool: None,
            algorithms: [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            leeway: Duration::from_secs(60),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
            token_cache_ttl: Duration::from_secs(30),
            token_cache_size: 10_000,
            http_timeout: Duration::from_secs(10),
            resource_name: None,
            resource_documentation: None,
            introspection: IntrospectionConfig::default(),
            token_exchange: TokenExchangeConfig::default(),
        }
    }
}

/// RFC 7662 token introspection: every token is also checked at the authorization server
/// (cached), so revoked tokens stop working before they expire.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntrospectionConfig {
    /// Introspection endpoint (`OAUTH_INTROSPECT_URL`); absent: no introspection.
    pub url: Option<String>,
    /// Client id for Basic auth (`OAUTH_INTROSPECT_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Client secret (`OAUTH_INTROSPECT_CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// How long an answer is cached (`OAUTH_INTROSPECT_CACHE_TTL_SECONDS`), never beyond `exp`.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub cache_ttl: Duration,
    /// Accept a signature-valid token when the endpoint fails (5xx, network). Default false:
    /// fail closed (503), unlike Cortex, which failed open.
    pub fail_open: bool,
}

impl Default for IntrospectionConfig {
    fn default() -> Self {
        IntrospectionConfig {
            url: None,
            client_id: None,
            client_secret: None,
            cache_ttl: Duration::from_secs(60),
            fail_open: false,
        }
    }
}

/// How the gateway authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    ClientSecretBasic,
    /// Form fields (`client_secret_post`).
    ClientSecretPost,
}

/// The gateway's client credentials for RFC 8693 token exchange (backends with
/// `identity: exchange`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TokenExchangeConfig {
    /// Client id.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: Option<String>,
    /// Token endpoint; default the issuer metadata's `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub auth_method: ClientAuthMethod,
}

/// Tokens the gateway signs itself for backends with `identity: mint`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MintConfig {
    /// `iss` of minted tokens; default the canonical URI's origin.
    pub issuer: Option<String>,
    /// Lifetime of a minted token.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub ttl: Duration,
    /// `ES256` (default) or `EdDSA` for generated keys, or `RS256` with an RSA `key_file`. With
    /// a `key_file` the key decides, and an `algorithm` written in the file must match it.
    pub algorithm: String,
    /// A PKCS#8 PEM private key file to sign with; default a key generated and persisted under
    /// `<data_dir>/keys/`.
    pub key_file: Option<String>,
    /// Generated keys are replaced after this long; the previous key stays published in the
    /// JWKS until the tokens it signed have expired.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub rotate_after: Duration,
}

impl Default for MintConfig {
    fn default() -> Self {
        MintConfig {
            issuer: None,
            ttl: Duration::from_secs(300),
            algorithm: "ES256".into(),
            key_file: None,
            rotate_after: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Scope implications.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScopesConfig {
    /// `granted → [implied…]`, e.g. `mcp:crm:write: [mcp:crm:read]`.
    pub implies: std::collections::BTreeMap<String, Vec<String>>,
}

/// How a backend's names are exposed.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// `<id>_<name>` (default).
    #[default]
    Prefix,
    /// The backend's own names (refused when they collide).
    None,
}

/// One contract backend.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Id: lowercase `[a-z0-9_-]`, unique (`CORTEX_BACKENDS` entry).
    pub id: String,
    /// What the backend is: `contract` (default), `mcp` (an MCP server over streamable HTTP at
    /// `url`) or `stdio` (an MCP server the gateway runs as a child process: `command`).
    #[serde(default)]
    pub kind: BackendKindConfig,
    /// Base URL (`CORTEX_BACKEND_<ID>_URL`) of a contract backend; the MCP endpoint of a
    /// `kind: mcp` backend. Not used by `kind: stdio`.
    #[serde(default)]
    pub url: String,
    /// Contract path (`CORTEX_BACKEND_<ID>_PATH`), default `/api/cortex/backend`.
    #[serde(default = "default_contract_path")]
    pub path: String,
    /// Per-call timeout (`CORTEX_BACKEND_<ID>_TIMEOUT_MS`), default 10 s.
    #[serde(
        default = "default_backend_timeout",
        with = "crate::config::units::duration"
    )]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub timeout: Duration,
    /// Naming of its entries.
    #[serde(default)]
    pub naming: Naming,
    /// Discovery token for this backend; default the global `technical_token`.
    #[serde(default)]
    pub technical_token: Option<String>,
    /// The credential sent on user calls: `passthrough`, `mint`, `exchange`, `vault` or
    /// `none`. Unset: `passthrough` for a contract backend (Cortex), `vault` for a backend
    /// naming a `vault_provider`, `none` for a native backend.
    #[serde(default)]
    pub identity: Option<IdentityMode>,
    /// The backend's audience for `mint` and `exchange`; default its base URL.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8707 `resource` sent on `exchange`; default none (only `audience`).
    #[serde(default)]
    pub resource: Option<String>,
    /// The vault provider (`vault.providers[].id`) whose per-user linked token this backend
    /// receives instead of the caller's (docs/vault.md).
    #[serde(default)]
    pub vault_provider: Option<String>,
    /// `kind: mcp`: extra request headers sent upstream on every request (`${VAR}` allowed),
    /// e.g. an API key header. Never the caller's own token.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// `kind: mcp`: a static bearer token sent as `Authorization: Bearer …` (`${VAR}`).
    #[serde(default)]
    pub bearer: Option<String>,
    /// `kind: mcp`: the protocol the gateway speaks to the server. `legacy` (default): the
    /// session-based versions (`initialize`, one upstream session per user, 2025-11-25 or
    /// earlier). `2026-07-28`: the stateless version (`server/discover`, `_meta` on every
    /// request, no session); the server's input-required results reach the caller in its
    /// own era (docs/mcp-backends.md).
    #[serde(default)]
    pub protocol: Option<UpstreamProtocol>,
    /// Native backends: the catalog to publish instead of discovering it (`tools`, `prompts`,
    /// `resources`, `resource_templates` as the server would list them), e.g. for a vault
    /// backend whose server lists nothing without a user's token.
    #[serde(default)]
    pub static_catalog: Option<StaticCatalogConfig>,
    /// `kind: stdio`: the program to run (looked up in `PATH` when it has no `/`).
    #[serde(default)]
    pub command: Option<String>,
    /// `kind: stdio`: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `kind: stdio`: environment variables set for the child (on top of a minimal
    /// environment: `PATH`, `HOME`, `LANG`; the gateway's own secrets are not inherited).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// `kind: stdio`: working directory of the child; default the gateway's.
    #[serde(default)]
    pub cwd: Option<String>,
    /// `kind: stdio`: one child per user (the caller's subject) instead of one shared child,
    /// for servers that serve a single user; discovery runs its own child.
    #[serde(default)]
    pub per_user: bool,
    /// `kind: stdio` with `per_user`: the most children running at once (default 32); a new
    /// user's call beyond it fails with a clear error until an idle child is reaped.
    #[serde(default)]
    pub max_processes: Option<u32>,
    /// Native backends: a stdio child, or an upstream session of a `kind: mcp` backend,
    /// unused this long is stopped (started again on the next call); default 15m.
    #[serde(
        default = "default_native_idle",
        with = "crate::config::units::duration"
    )]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub idle_timeout: Duration,
    /// Native backends (`mcp`, `stdio`): the scope a caller needs for every entry of this
    /// server (MCP servers declare none); default none (every authenticated caller).
    #[serde(default)]
    pub scope: Option<String>,
    /// Native backends: scopes per entry, by the server's own tool/prompt name or resource
    /// URI, overriding `scope`.
    #[serde(default)]
    pub scopes: std::collections::BTreeMap<String, String>,
}

impl Default for BackendConfig {
    /// A contract backend with every default (no id or URL yet).
    fn default() -> Self {
        BackendConfig {
            id: String::new(),
            kind: BackendKindConfig::Contract,
            url: String::new(),
            path: default_contract_path(),
            timeout: default_backend_timeout(),
            naming: Naming::Prefix,
            technical_token: None,
            identity: None,
            audience: None,
            resource: None,
            vault_provider: None,
            static_catalog: None,
            headers: Default::default(),
            bearer: None,
            protocol: None,
            command: None,
            args: Vec::new(),
            env: Default::default(),
            cwd: None,
            per_user: false,
            max_processes: None,
            idle_timeout: default_native_idle(),
            scope: None,
            scopes: Default::default(),
        }
    }
}

/// The MCP protocol the gateway speaks to a `kind: mcp` server (`protocol:`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// The session-based versions: `initialize`, then an upstream session per user.
    #[default]
    #[serde(rename = "legacy")]
    Legacy,
    /// MCP 2026-07-28: `server/discover`, per-request `_meta`, no session.
    #[serde(rename = "2026-07-28")]
    V2026_07_28,
}

/// The kind of a backend (`kind:`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKindConfig {
    /// A plain-HTTP app implementing the backend contract (docs/backend-contract.md).
    #[default]
    Contract,
    /// An MCP server over streamable HTTP (`url`).
    Mcp,
    /// An MCP server run as a child process speaking MCP over stdin/stdout (`command`).
    Stdio,
}

impl BackendConfig {
    /// The identity mode in force: the one written, else the kind's default (`passthrough`
    /// for a contract backend, as in Cortex; `vault` with a `vault_provider`; `none` for a
    /// native backend, which never receives the caller's own token unless told explicitly).
    pub fn identity_mode(&self) -> IdentityMode {
        match (self.identity, &self.vault_provider, self.kind) {
            (Some(m), _, _) => m,
            (None, Some(_), _) => IdentityMode::Vault,
            (None, None, BackendKindConfig::Contract) => IdentityMode::Passthrough,
            (None, None, _) => IdentityMode::None,
        }
    }
}

/// A native backend's catalog written in the configuration (`static_catalog`): the entries
/// as the server's `tools/list`, `prompts/list`, `resources/list` and
/// `resources/templates/list` would return them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StaticCatalogConfig {
    /// Tools (`name`, `description`, `inputSchema`, …).
    pub tools: Vec<serde_json::Value>,
    /// Prompts (`name`, `description`, `arguments`).
    pub prompts: Vec<serde_json::Value>,
    /// Resources (`uri`, `name`, …).
    pub resources: Vec<serde_json::Value>,
    /// Resource templates (`uriTemplate`, `name`, …).
    pub resource_templates: Vec<serde_json::Value>,
}

/// Which credential a backend receives with user calls (see docs/authentication.md and
/// docs/mcp-backends.md).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdentityMode {
    /// The caller's own bearer token plus the `X-Cortex-*` headers (Cortex-compatible; the
    /// default of contract backends). On a native backend only when written, with a warning.
    Passthrough,
    /// A short-lived JWT signed by the gateway for this backend's audience.
    Mint,
    /// An RFC 8693 token exchanged at the authorization server for this backend's audience.
    Exchange,
    /// The caller's own linked account at the backend's `vault_provider` (docs/vault.md).
    Vault,
    /// No per-user credential: only the backend's static `bearer` / `headers` (the default
    /// of native backends).
    None,
}

/// How long a native backend's stdio child or upstream session may stay unused.
pub const DEFAULT_NATIVE_IDLE: Duration = Duration::from_secs(15 * 60);

fn default_native_idle() -> Duration {
    DEFAULT_NATIVE_IDLE
}

/// The most children of a `per_user` stdio backend when `max_processes` is not set.
pub const DEFAULT_MAX_PROCESSES: u32 = 32;

fn default_contract_path() -> String {
    "/api/cortex/backend".into()
}

fn default_backend_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Log format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
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

/// The built-in development OAuth 2.1 authorization server (`cortex-gateway demo --oauth`).
///
/// A convenience for seeing scopes live with real OAuth clients: a one-click user picker, no
/// passwords. It is refused unless every listener and the canonical URI are on loopback;
/// production points `auth.oauth.issuer` at a real authorization server.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DevAuthServerConfig {
    /// Serve it on the gateway's own listeners. Default false.
    pub enabled: bool,
    /// The ES256 signing key (PKCS#8 PEM), created on first start. Default
    /// `<data_dir>/keys/dev-authorization-server.pem`.
    pub key_file: Option<String>,
    /// Lifetime of access tokens. Default 15 minutes.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub access_token_ttl: Duration,
    /// The users offered by the picker page. Default: `reader` (`mcp:demo:read`) and
    /// `writer` (`mcp:demo:read mcp:demo:write`).
    pub users: Vec<DevUserConfig>,
    /// Pre-registered clients (e.g. a confidential client for `client_credentials`).
    pub clients: Vec<DevClientConfig>,
}

impl Default for DevAuthServerConfig {
    fn default() -> Self {
        DevAuthServerConfig {
            enabled: false,
            key_file: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            users: vec![
                DevUserConfig {
                    name: "reader".into(),
                    email: Some("reader@localhost".into()),
                    scopes: vec!["mcp:demo:read".into()],
                },
                DevUserConfig {
                    name: "writer".into(),
                    email: Some("writer@localhost".into()),
                    scopes: vec!["mcp:demo:read".into(), "mcp:demo:write".into()],
                },
            ],
            clients: Vec::new(),
        }
    }
}

/// A user of the development authorization server's picker page.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevUserConfig {
    /// Login name, also the token's `sub`.
    pub name: String,
    /// The token's `email` claim. Default `<name>@localhost`.
    #[serde(default)]
    pub email: Option<String>,
    /// The scopes this user may be granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A client pre-registered with the development authorization server.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevClientConfig {
    /// `client_id`.
    pub id: String,
    /// `client_secret`; absent for a public client (authorization code only).
    #[serde(default)]
    pub secret: Option<String>,
    /// Scopes the client may obtain. Default: every scope of the users.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Redirect URIs for the authorization code flow (loopback http or https).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

/// How `tools/list` presents backend tools (Cortex `X-Cortex-Tool-Mode`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ToolMode {
    /// Full descriptions and input schemas.
    #[default]
    Full,
    /// One-sentence descriptions, `{"type":"object"}` schemas, `find_tools` listed: a
    /// fraction of the tokens; agents fetch full definitions with `find_tools`.
    Search,
}

/// The gateway's own tools.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinsConfig {
    /// The scope of administrators: they triage tickets, see every ticket, the backends'
    /// internal URLs and the names of tools hidden from others. `*` grants it too.
    pub admin_scope: String,
    /// How long `whoami` waits for each backend's own `whoami`.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub whoami_timeout: Duration,
    /// The scope each builtin requires; unset keeps the default, `""` means any
    /// authenticated caller.
    pub scopes: BuiltinScopes,
}

impl Default for BuiltinsConfig {
    fn default() -> Self {
        BuiltinsConfig {
            admin_scope: "cortex:admin".into(),
            whoami_timeout: Duration::from_secs(3),
            scopes: BuiltinScopes::default(),
        }
    }
}

/// Per-builtin scope overrides. Defaults: every builtin is open to any authenticated caller
/// (as in Cortex) except `triage_cortex_ticket`, which requires `builtins.admin_scope`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinScopes {
    /// `whoami`.
    pub whoami: Option<String>,
    /// `find_tools`.
    pub find_tools: Option<String>,
    /// `report_missing_capability`.
    pub report_missing_capability: Option<String>,
    /// `list_cortex_tickets`.
    pub list_cortex_tickets: Option<String>,
    /// `triage_cortex_ticket`.
    pub triage_cortex_ticket: Option<String>,
    /// `list_cortex_resources`.
    pub list_cortex_resources: Option<String>,
    /// `read_cortex_resource` (and `resources/read` of `cortex://architecture`).
    pub read_cortex_resource: Option<String>,
}

/// Missing-capability tickets.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TicketsConfig {
    /// Backends that own their tickets (`CORTEX_TICKET_BACKENDS`): a report whose
    /// `contextApp` is one of them is forwarded to it, and their `list_tickets` are merged
    /// into `list_cortex_tickets`. Others are stored by the gateway.
    pub backends: Vec<String>,
    /// Where a new blocking ticket is POSTed (`CORTEX_TICKET_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key of the `X-Cortex-Signature` header (`CORTEX_TICKET_WEBHOOK_SECRET`).
    /// Without it deliveries are unsigned (a warning at start).
    pub webhook_secret: Option<String>,
    /// Timeout of one webhook delivery attempt.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub webhook_timeout: Duration,
    /// Longest wait between delivery attempts (exponential backoff from 1 s).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub webhook_max_backoff: Duration,
    /// A repeat of the same report by the same caller within this window is merged.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub dedup_window: Duration,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            backends: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(5),
            webhook_max_backoff: Duration::from_secs(300),
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where the gateway keeps tickets, the webhook outbox and the audit trail.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the embedded SQLite database (`cortex-gateway.db`) and of the generated
    /// audit secret (`audit.key`); created if missing, relative to the working directory.
    /// Default: the top-level `data_dir` when set, else `./data`.
    pub data_dir: Option<std::path::PathBuf>,
    /// PostgreSQL URL (`CORTEX_DATABASE_URL`); when set, it replaces SQLite.
    pub database_url: Option<String>,
}

impl Config {
    /// The directory of everything the gateway persists: `data_dir`, else `./data`
    /// (relative to the working directory). Generated signing keys live under
    /// `<data_dir>/keys/`; the store and the audit secret too unless `storage.data_dir`
    /// moves them ([`Config::storage_dir`]).
    pub fn data_dir(&self) -> std::path::PathBuf {
        match &self.data_dir {
            Some(d) if !d.trim().is_empty() => std::path::PathBuf::from(d),
            _ => std::path::PathBuf::from("./data"),
        }
    }

    /// The directory of the SQLite store and of the generated audit secret:
    /// `storage.data_dir`, else [`Config::data_dir`].
    pub fn storage_dir(&self) -> std::path::PathBuf {
        match &self.storage.data_dir {
            Some(d) => d.clone(),
            None => self.data_dir(),
        }
    }
}

/// The audit trail: one record per request reaching the MCP endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Keep the audit trail (default on). Off, no record is kept anywhere: for measuring
    /// what the trail costs, or for a gateway whose calls are audited elsewhere.
    pub enabled: bool,
    /// Key of the HMAC pseudonyms and of the hash chain (at least 32 characters; every
    /// replica of a fleet needs the same one). Absent: a random secret generated once and
    /// kept in `<storage dir>/audit.key`, with a warning.
    pub secret: Option<String>,
    /// Record the caller's subject in clear instead of its pseudonym.
    pub subject_in_clear: bool,
    /// Also write each record as a JSON line on stdout (Cortex's `cortex_audit` line).
    pub stdout: bool,
    /// Records older than this many days are purged (`CORTEX_AUDIT_RETENTION_DAYS`);
    /// 0 keeps them forever.
    pub retention_days: u32,
    /// Records held in memory while the store is slow or down; past that they are dropped
    /// (counted and logged), never the request.
    pub queue: usize,
    /// Append every record to a local spool file before its answer is sent, so that the
    /// records of a replica that dies are replayed into the store (docs/audit.md).
    pub spool: bool,
    /// The spool directory (default `<storage dir>/audit-spool`). Replicas that share it
    /// replay each other's spool files when one dies.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Also `fdatasync` each spool write: records then survive a crash of the machine, at
    /// the cost of a disk flush per request.
    pub spool_fsync: bool,
    /// Most bytes of spool files one process keeps (records past it are not spooled while
    /// the store is down).
    pub spool_max_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            secret: None,
            subject_in_clear: false,
            stdout: true,
            retention_days: 365,
            queue: 10_000,
            spool: true,
            spool_dir: None,
            spool_fsync: false,
            spool_max_bytes: 256 * 1024 * 1024,
        }
    }
}
