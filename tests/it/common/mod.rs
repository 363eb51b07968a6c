//! The integration-test harness: the real `cortex-gateway` binary started as a child process
//! ([`Gateway`]), an MCP client over HTTP ([`McpClient`], with an SSE reader), and a scriptable
//! contract backend ([`TestBackend`]). Everything binds and targets 127.0.0.1 only.
//!
//! It is a toolkit for every area's tests, so a few of its methods may be unused at a given
//! time; hence the module-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod config;
pub mod demo;
pub mod faulty_backend;
pub mod fixture_backend;
pub mod gateway;
pub mod http_server;
pub mod interop;
pub mod oidc;
pub mod private_pg;
pub mod private_redis;
pub mod process;
pub mod raw;
pub mod rogue_backend;
pub mod rogue_mcp;
pub mod sse;
pub mod usage;

pub use backend::{tool, BackendSpec, Discovery, Recorded, TestBackend};
pub use client::{HttpReply, McpClient};
pub use config::TestConfig;
pub use demo::DemoBackend;
pub use fixture_backend::FixtureBackend;
pub use gateway::{free_port, unused_port, Gateway};
pub use sse::SseEvent;

use std::future::Future;
use std::time::{Duration, Instant};

/// Protocol versions the gateway speaks, newest first.
pub const VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// A 32+ character secret for `sessions.secret`.
pub const SECRET_A: &str = "test-secret-a-0123456789abcdef0123456789";
/// A different one (sessions sealed with A are foreign to a gateway using B).
pub const SECRET_B: &str = "test-secret-b-9876543210fedcba9876543210";

/// Polls `check` every 25 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The gateway's own tools (builtins, from the later issues). Tests about backend federation
/// look at the other entries of the catalog through [`without_builtins`].
pub const BUILTIN_TOOLS: [&str; 7] = [
    "whoami",
    "find_tools",
    "report_missing_capability",
    "list_cortex_tickets",
    "triage_cortex_ticket",
    "list_cortex_resources",
    "read_cortex_resource",
];

/// `names` without the gateway's builtins, order kept.
pub fn without_builtins<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<String> {
    names
        .into_iter()
        .map(|n| n.as_ref().to_owned())
        .filter(|n| !BUILTIN_TOOLS.contains(&n.as_str()))
        .collect()
}

/// The names of the tools in a `tools/list` result.
pub fn tool_names(result: &serde_json::Value) -> Vec<String> {
    result["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `s` without ANSI escape sequences (the gateway colours its logs).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
