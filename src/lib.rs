//! Cortex Gateway: a federated MCP gateway on Pingora.
pub mod config;
