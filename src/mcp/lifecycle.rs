//! The session era's lifecycle methods: `initialize` (version negotiation, capabilities,
//! the sealed session id), `ping`, the `instructions` text, and `logging/setLevel`.

use cortex_filters::jsonrpc::{self, Id, RpcError};
use cortex_filters::session::caps;
use cortex_filters::version::{self, ProtocolVersion};
use serde::Serialize;
use serde_json::{json, Value};

use crate::GATEWAY_VERSION;

use super::call::{CallContext, Dispatched};

/// `initialize`'s result, serialized straight from this struct (no JSON tree). The fields
/// are in the order a `serde_json::Value` map would hold them (sorted), so the bytes are
/// those of the `json!` tree this replaces.
#[derive(Serialize)]
struct InitializeResult<'a> {
    capabilities: ServerCapabilities,
    instructions: &'a str,
    #[serde(rename = "protocolVersion")]
    protocol_version: &'a str,
    #[serde(rename = "serverInfo")]
    server_info: ServerInfo<'a>,
}

#[derive(Serialize)]
struct ServerCapabilities {
    completions: Empty,
    logging: Empty,
    prompts: ListChanged,
    resources: Resources,
    tools: ListChanged,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct ListChanged {
    #[serde(rename = "listChanged")]
    list_changed: bool,
}

#[derive(Serialize)]
struct Resources {
    #[serde(rename = "listChanged")]
    list_changed: bool,
    subscribe: bool,
}

#[derive(Serialize)]
struct ServerInfo<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    version: &'a str,
    #[serde(rename = "websiteUrl", skip_serializing_if = "Option::is_none")]
    website_url: Option<&'a str>,
}

/// `initialize`: negotiates the version, issues a session bound to the caller.
pub fn initialize(cx: &CallContext<'_>, id: &Id, params: &Value) -> Dispatched {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let negotiated = version::negotiate(requested);
    let client_caps = params.get("capabilities").map_or(0, caps::from_json);
    let config = &cx.policy.config;
    let instructions = instructions(cx);
    let result = InitializeResult {
        capabilities: ServerCapabilities {
            completions: Empty {},
            logging: Empty {},
            prompts: ListChanged { list_changed: true },
            resources: Resources {
                list_changed: true,
                subscribe: cx.policy.upstreams.iter().any(|b| b.kind().is_native()),
            },
            tools: ListChanged { list_changed: true },
        },
        instructions: &instructions,
        protocol_version: negotiated.as_str(),
        server_info: ServerInfo {
            name: &config.server.name,
            title: (negotiated >= ProtocolVersion::V2025_06_18).then_some("Cortex Gateway"),
            version: GATEWAY_VERSION,
            website_url: (negotiated >= ProtocolVersion::V2025_11_25)
                .then_some(cx.policy.website_url.as_str()),
        },
    };
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

/// `instructions` of `initialize`: which apps are live and how to get help. Reads the
/// health table in place (a copy of it would copy every backend's last catalog snapshot).
pub fn instructions(cx: &CallContext<'_>) -> String {
    let config = &cx.policy.config;
    let mut s = String::with_capacity(1024);
    s.push_str(&config.server.name);
    s.push_str(
        " is a gateway federating the tools of several business apps behind one MCP endpoint. ",
    );
    cx.shared.catalog.with_health(|health| {
        let mut live = health.iter().filter(|b| b.snapshot.is_some()).peekable();
        if live.peek().is_none() {
            s.push_str("No app is reachable right now. ");
        } else {
            s.push_str("Live apps: ");
            push_joined(&mut s, live.map(|b| b.id.as_str()));
            s.push_str(". ");
        }
        let mut down = health.iter().filter(|b| b.snapshot.is_none()).peekable();
        if down.peek().is_some() {
            s.push_str("Unreachable right now: ");
            push_joined(&mut s, down.map(|b| b.id.as_str()));
            s.push_str(". ");
        }
    });
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

/// Appends `items` separated by `, `.
fn push_joined<'a>(s: &mut String, items: impl Iterator<Item = &'a str>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(item);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed result serializes to the bytes of the `json!` tree it replaced.
    #[test]
    fn initialize_result_bytes_match_the_json_tree() {
        for (title, website, subscribe) in [
            (None, None, false),
            (Some("Cortex Gateway"), None, true),
            (Some("Cortex Gateway"), Some("https://x.example/"), false),
        ] {
            let typed = InitializeResult {
                capabilities: ServerCapabilities {
                    completions: Empty {},
                    logging: Empty {},
                    prompts: ListChanged { list_changed: true },
                    resources: Resources {
                        list_changed: true,
                        subscribe,
                    },
                    tools: ListChanged { list_changed: true },
                },
                instructions: "Say \"hi\".\n",
                protocol_version: "2025-06-18",
                server_info: ServerInfo {
                    name: "gw",
                    title,
                    version: "1.2.3",
                    website_url: website,
                },
            };
            let mut server_info = json!({"name": "gw", "version": "1.2.3"});
            if let Some(t) = title {
                server_info["title"] = json!(t);
            }
            if let Some(w) = website {
                server_info["websiteUrl"] = json!(w);
            }
            let tree = json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {
                    "tools": {"listChanged": true},
                    "resources": {"listChanged": true, "subscribe": subscribe},
                    "prompts": {"listChanged": true},
                    "completions": {},
                    "logging": {},
                },
                "serverInfo": server_info,
                "instructions": "Say \"hi\".\n",
            });
            let id = json!(1);
            assert_eq!(
                String::from_utf8(jsonrpc::success(&id, &typed)).unwrap(),
                String::from_utf8(jsonrpc::success(&id, &tree)).unwrap()
            );
        }
    }

    #[test]
    fn joined_lists_use_commas() {
        let mut s = String::new();
        push_joined(&mut s, ["a", "b", "c"].into_iter());
        assert_eq!(s, "a, b, c");
    }
}
