//! Cortex Gateway: a federated MCP gateway on Pingora.
//!
//! One MCP Streamable HTTP endpoint in front of N contract backends (plain HTTP apps): the
//! gateway discovers their tools, merges them into one catalog filtered by the caller's
//! scopes, and routes every call to the owning app with the caller's identity.
//! The pure decision logic lives in the `cortex-filters` crate; this crate moves the bytes.

pub mod audit;
pub mod auth;
pub mod builtins;
pub mod config;
pub mod demo;
pub mod demo_backend;
pub mod dev_as;
pub mod federation;
pub mod gateway;
pub mod healthcheck;
pub mod logging;
pub mod mcp;
pub mod server;
pub mod state;
pub mod store;
