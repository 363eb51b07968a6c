//! The session era's lifecycle methods: `initialize` (version negotiation, capabilities,
//! the sealed session id), `ping`, the `instructions` text, and `logging/setLevel`.

use cortex_filters::jsonrpc::{self, Id, RpcError};
use cortex_filters::session::caps;
use cortex_filters::version::{self, ProtocolVersion};
use serde_json::{json, Value};

use crate::GATEWAY_VERSION;

use super::call::{CallContext, Dispatched};

/// `initialize`: negotiates the version, issues a session bound to the caller.
pub fn initialize(cx: &CallContext<'_>, id: &Id, params: &Value) -> Dispatched {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let negotiated = version::negotiate(requested);
    let client_caps = params.get("capabilities").map_or(0, caps::from_json);
    let config = &cx.policy.config;
    let mut server_info = json!({
        "name": config.server.name,
        "version": GATEWAY_VERSION,
    });
    if negotiated >= ProtocolVersion::V2025_06_18 {
        server_info["title"] = json!("Cortex Gateway");
    }
    if negotiated >= ProtocolVersion::V2025_11_25 {
        server_info["websiteUrl"] = json!(cx.policy.website_url);
    }
    let result = json!({
        "protocolVersion": negotiated.as_str(),
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": cx.policy.upstreams.iter().any(|b| b.kind().is_native())},
            "prompts": {"listChanged": true},
            "completions": {},
            "logging": {},
        },
        "serverInfo": server_info,
        "instructions": instructions(cx),
    });
    let session_id = cx.shared.sessions.create(
        &cx.principal.sub,
        negotiated,
        client_caps,
        cx.principal.grants.clone(),
    );
    Dispatched::Initialized {
        body: jsonrpc::success(id, &result),
        session_id,
    }
}

/// The `instructions` of `initialize`: which apps are live and how to get help.
pub fn instructions(cx: &CallContext<'_>) -> String {
    let health = cx.shared.catalog.health();
    let live: Vec<&str> = health
        .iter()
        .filter(|b| b.snapshot.is_some())
        .map(|b| b.id.as_str())
        .collect();
    let down: Vec<&str> = health
        .iter()
        .filter(|b| b.snapshot.is_none())
        .map(|b| b.id.as_str())
        .collect();
    let config = &cx.policy.config;
    let mut s = String::with_capacity(512);
    s.push_str(&format!(
        "{} is a gateway federating the tools of several business apps behind one MCP endpoint. ",
        config.server.name
    ));
    if live.is_empty() {
        s.push_str("No app is reachable right now. ");
    } else {
        s.push_str(&format!("Live apps: {}. ", live.join(", ")));
    }
    if !down.is_empty() {
        s.push_str(&format!("Unreachable right now: {}. ", down.join(", ")));
    }
    s.push_str(
        "Tools are named <app>_<tool> after the app that owns them. Before guessing how an app \
         works, call its <app>_get_help tool when it has one: it explains the app's concepts, \
         workflows and conventions. Each app enforces its own permissions on your identity, so \
         a refusal from an app is final for this account. You only see the tools your token's \
         scopes allow.",
    );
    s.push_str(crate::builtins::INSTRUCTIONS);
    if let Some(extra) = &config.server.instructions {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// `logging/setLevel`: accepts the eight RFC 5424 levels.
pub fn set_level(params: &Value) -> Result<Value, RpcError> {
    const LEVELS: [&str; 8] = [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    match params.get("level").and_then(Value::as_str) {
        Some(l) if LEVELS.contains(&l) => Ok(json!({})),
        _ => Err(RpcError::invalid_params(format!(
            "Invalid params: level must be one of {}",
            LEVELS.join(", ")
        ))),
    }
}
