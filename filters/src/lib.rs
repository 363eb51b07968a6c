//! Pure, I/O-free request and response logic of Cortex Gateway.
//!
//! Everything that *decides* lives here as plain functions over plain data: parsing and
//! validating JSON-RPC, negotiating a protocol version, matching scopes, merging and filtering
//! the catalog, naming tools, mapping contract replies, checking an Origin, sealing session ids,
//! validating and answering modern-era (2026-07-28) requests.
//! The gateway crate (`src/`) moves the bytes and calls into these functions; nothing here
//! touches a socket, a clock it did not receive, or an async runtime.

pub mod canonical;
pub mod catalog;
pub mod contract;
pub mod fleet;
pub mod jsonrpc;
pub mod modern;
pub mod naming;
pub mod native;
pub mod origin;
pub mod pinning;
pub mod ratelimit;
pub mod scope;
pub mod seal;
pub mod search;
pub mod session;
pub mod sse;
pub mod vault;
pub mod version;
