//! The configuration of what observes and protects the agent ingress: the Prometheus listener
//! (`metrics`), rate limits (`rate_limits`), tool-definition pinning (`integrity`) and the
//! admin API (`admin`). Limits are written as text (`60/min`, `10/s burst 20`) and parsed by
//! `cortex_filters::ratelimit`; a value that does not parse is reported at load with its
//! position (the `preflight` checks).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Prometheus listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of the metrics listener (e.g. `127.0.0.1:9464`); it serves `GET /metrics`
    /// and nothing else. Absent: no metrics listener (the default).
    pub listen: Option<String>,
}

/// Token-bucket rate limits (`cortex_filters::ratelimit`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Whether limits apply at all (`RATE_LIMIT_DISABLED=true` turns them off).
    pub enabled: bool,
    /// Every request of one caller (token subject) to the MCP endpoint, checked before the
    /// body is read: over it, HTTP 429 with `Retry-After`
    /// (`CORTEX_RATE_LIMIT_PER_MINUTE`: `N/min`). Empty: no per-caller limit.
    pub per_subject: String,
    /// One caller's calls of one tool. Empty (default): none.
    pub per_subject_tool: String,
    /// Every call routed to one backend, whoever makes it, unless `backends` names it.
    /// Empty (default): none.
    pub per_backend: String,
    /// Per backend id: its own limit instead of `per_backend` (empty: none for it).
    pub backends: BTreeMap<String, String>,
    /// Where buckets live: in this process (default), or in Redis so that the replicas of a
    /// fleet share one limit.
    pub redis: Option<RedisLimitsConfig>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            enabled: true,
            per_subject: "200/min".into(),
            per_subject_tool: String::new(),
            per_backend: String::new(),
            backends: BTreeMap::new(),
            redis: None,
        }
    }
}

/// Buckets shared through Redis.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisLimitsConfig {
    /// `redis://host:port[/db]` (or `rediss://` for TLS).
    pub redis_url: String,
    /// Prefix of every key (keep the braces: a Redis Cluster hash tag).
    pub key_prefix: String,
    /// Longest wait for one decision; past it the call is decided by `fail_open`.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub timeout: Duration,
    /// When Redis cannot decide (down, slow, refusing): `true` lets the call through,
    /// `false` refuses it (HTTP 503 / JSON-RPC error). Logged and counted either way.
    pub fail_open: bool,
}

impl Default for RedisLimitsConfig {
    fn default() -> Self {
        RedisLimitsConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "{cortex-rl}".into(),
            timeout: Duration::from_millis(250),
            fail_open: true,
        }
    }
}

/// How changes to tool definitions are handled.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IntegrityMode {
    /// No pinning.
    Off,
    /// Changes are served and reported (log, audit, metric, `list_changed`).
    #[default]
    Warn,
    /// Changed and new tools are quarantined (hidden, not callable) until an admin approves.
    Block,
}

/// Tool-definition pinning (rug-pull protection).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrityConfig {
    /// The mode of every backend not named in `backends` (`CORTEX_TOOL_INTEGRITY_MODE`).
    pub mode: IntegrityMode,
    /// Per backend id: its own mode.
    pub backends: BTreeMap<String, IntegrityMode>,
    /// A backend the baseline has never seen is pinned as it is (trust on first use). Turn
    /// off when approvals come only from a signed baseline file.
    pub pin_first_sight: bool,
    /// The baseline file (`CORTEX_TOOL_BASELINE_FILE`): read at start (a signature that does
    /// not verify refuses the start) and rewritten on every approval, signed when the private
    /// key is set. Absent: baselines persist in the store.
    pub baseline_file: Option<String>,
    /// Ed25519 private key, PKCS#8 PEM (`CORTEX_BASELINE_PRIVATE_KEY`): the gateway signs the
    /// baselines it writes.
    pub private_key: Option<String>,
    /// Ed25519 public key, SPKI PEM (`CORTEX_BASELINE_PUBLIC_KEY`): a baseline file must carry
    /// a signature by it.
    pub public_key: Option<String>,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            mode: IntegrityMode::Warn,
            backends: BTreeMap::new(),
            pin_first_sight: true,
            baseline_file: None,
            private_key: None,
            public_key: None,
        }
    }
}

impl IntegrityConfig {
    /// The mode of `backend`.
    pub fn mode_of(&self, backend: &str) -> IntegrityMode {
        self.backends.get(backend).copied().unwrap_or(self.mode)
    }
}

/// The admin API (`/admin/*` on the gateway's listeners).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Shared secret, sent as `X-Cortex-Admin-Secret` (`CORTEX_ADMIN_SECRET`; at least 16
    /// characters).
    pub secret: Option<String>,
    /// A scope that makes a normal bearer token an admin token. Absent: only the secret.
    /// With neither, `/admin/*` answers 404.
    pub scope: Option<String>,
}
