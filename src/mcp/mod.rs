//! The MCP endpoint: transport framing, sessions, the method table.

pub mod dispatch;
pub mod http;
pub mod sessions;
pub mod transport;
