//! The configuration of a fleet (`fleet:`): the Redis that the replicas behind one load
//! balancer share for session revocations, shared idle tracking, the per-session event log
//! of notification streams and the catalog nudge (docs/fleet.md). Durable records (tickets,
//! webhook outbox, audit chain, vault, pins, the fleet's key fingerprints) live in
//! PostgreSQL (`storage.database_url`); this section only adds what needs to be fast.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `fleet:`: what the replicas share through Redis. Without `redis_url` every replica keeps
/// this state to itself (a single gateway, or a fleet with sticky sessions).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// `redis://host:port[/db]` (or `rediss://`) shared by every replica
    /// (`CORTEX_FLEET_REDIS_URL`). Absent: no shared session state.
    pub redis_url: Option<String>,
    /// Prefix of every key and channel, the same on every replica of one fleet and distinct
    /// between fleets sharing one Redis.
    pub key_prefix: String,
    /// Longest wait for one Redis command; past it the operation counts as failed (logged,
    /// retried in the background, never a panic).
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub timeout: Duration,
    /// Check at start that this replica's keys (session secret, audit secret, mint key,
    /// vault keys) match the fleet's, by fingerprints kept in PostgreSQL; a replica whose
    /// keys differ refuses to start. Only with a PostgreSQL store.
    pub check_keys: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis_url: None,
            key_prefix: "cortex-fleet".into(),
            timeout: Duration::from_millis(500),
            check_keys: true,
        }
    }
}
