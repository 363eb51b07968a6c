//! Cortex Gateway: a federated MCP gateway on Pingora.
//!
//! One MCP Streamable HTTP endpoint in front of N backends: the gateway discovers their
//! tools, merges them into one catalog filtered by the caller's scopes, and routes every call
//! to the owning backend with the caller's identity. The pure decision logic lives in the
//! `cortex-filters` crate; this crate moves the bytes. docs/architecture.md draws the house.

pub mod audit;
pub mod auth;
pub mod builtins;
pub mod check_backend;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod demo_backend;
pub mod dev_as;
pub mod discovery;
pub mod drain;
pub mod edge;
pub mod fleet;
pub mod gateway;
pub mod healthcheck;
pub mod http;
pub mod logging;
pub mod mcp;
pub mod memory;
pub mod preflight;
pub mod record;
pub mod reload;
pub mod server;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod vault;
pub mod well_known;
// Observe and protect the agent ingress (metrics, rate limits, pinning, admin API).
pub mod admin;
pub mod integrity;
pub mod limits;
pub mod metrics;

#[cfg(test)]
mod house_rules;

/// The version the gateway reports in `serverInfo`.
pub const GATEWAY_VERSION: &str = env!("CARGO_PKG_VERSION");
