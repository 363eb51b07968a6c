//! The `server/discover` result: supported versions, capabilities, instructions, identity and
//! caching hints, built from plain inputs.

use serde_json::{json, Map, Value};

use super::result::{CacheHint, ResultType};
use super::META_SERVER_INFO;
use crate::version::{self, ProtocolVersion};

/// The gateway's identity (`Implementation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo<'a> {
    /// `name`.
    pub name: &'a str,
    /// `version`.
    pub version: &'a str,
    /// `title`, a display name.
    pub title: Option<&'a str>,
    /// `websiteUrl`.
    pub website_url: Option<&'a str>,
}

impl ServerInfo<'_> {
    /// The `Implementation` object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("version".into(), json!(self.version));
        if let Some(t) = self.title {
            m.insert("title".into(), json!(t));
        }
        if let Some(u) = self.website_url {
            m.insert("websiteUrl".into(), json!(u));
        }
        Value::Object(m)
    }

    /// The serialized object, as [`super::result::Decoration::server_info`] takes it (build
    /// once at start).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }
}

/// What the endpoint offers (`ServerCapabilities`), as flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCapabilities {
    /// Offers tools.
    pub tools: bool,
    /// Sends `notifications/tools/list_changed` on listen streams.
    pub tools_list_changed: bool,
    /// Offers prompts.
    pub prompts: bool,
    /// Sends `notifications/prompts/list_changed`.
    pub prompts_list_changed: bool,
    /// Offers resources.
    pub resources: bool,
    /// Sends `notifications/resources/list_changed`.
    pub resources_list_changed: bool,
    /// Honours `resourceSubscriptions` (sends `notifications/resources/updated`).
    pub resources_subscribe: bool,
    /// Answers `completion/complete`.
    pub completions: bool,
    /// May send `notifications/message` when a request asks for a log level.
    pub logging: bool,
    /// Extensions offered: identifier and settings object.
    pub extensions: Vec<(String, Value)>,
}

impl ServerCapabilities {
    /// The `ServerCapabilities` object; an absent capability is an absent member.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.tools {
            m.insert(
                "tools".into(),
                json!({ "listChanged": self.tools_list_changed }),
            );
        }
        if self.prompts {
            m.insert(
                "prompts".into(),
                json!({ "listChanged": self.prompts_list_changed }),
            );
        }
        if self.resources {
            m.insert(
                "resources".into(),
                json!({
                    "listChanged": self.resources_list_changed,
                    "subscribe": self.resources_subscribe,
                }),
            );
        }
        if self.completions {
            m.insert("completions".into(), json!({}));
        }
        if self.logging {
            m.insert("logging".into(), json!({}));
        }
        if !self.extensions.is_empty() {
            let ext: Map<String, Value> = self.extensions.iter().cloned().collect();
            m.insert("extensions".into(), Value::Object(ext));
        }
        Value::Object(m)
    }
}

/// Everything a discover answer says.
#[derive(Debug, Clone, Copy)]
pub struct Discover<'a> {
    /// The versions served, newest first (normally [`crate::version::ALL`]; the same list the
    /// -32022 refusals carry).
    pub versions: &'a [ProtocolVersion],
    /// The capabilities offered.
    pub capabilities: &'a ServerCapabilities,
    /// Guidance for the model, when there is any.
    pub instructions: Option<&'a str>,
    /// The gateway's identity.
    pub server_info: &'a ServerInfo<'a>,
    /// Freshness and scope: `public` only when nothing above depends on the caller.
    pub cache: CacheHint,
}

/// The serialized `DiscoverResult` (the `result` member of the answer), with `resultType`,
/// `ttlMs` and `cacheScope`.
pub fn discover_result(d: &Discover<'_>) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("resultType".into(), json!(ResultType::Complete.as_str()));
    m.insert(
        "supportedVersions".into(),
        json!(version::wire_list(d.versions)),
    );
    m.insert("capabilities".into(), d.capabilities.to_json());
    if let Some(i) = d.instructions {
        m.insert("instructions".into(), json!(i));
    }
    m.insert(
        "_meta".into(),
        json!({ META_SERVER_INFO: d.server_info.to_json() }),
    );
    m.insert("ttlMs".into(), json!(d.cache.ttl_ms));
    m.insert("cacheScope".into(), json!(d.cache.scope.as_str()));
    Value::Object(m).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modern::result::CacheScope;

    #[test]
    fn discover_carries_every_required_field() {
        let caps = ServerCapabilities {
            tools: true,
            tools_list_changed: true,
            prompts: true,
            prompts_list_changed: true,
            resources: true,
            resources_list_changed: true,
            resources_subscribe: false,
            completions: true,
            logging: true,
            extensions: vec![],
        };
        let info = ServerInfo {
            name: "cortex-gateway",
            version: "0.1.0",
            title: Some("Cortex Gateway"),
            website_url: None,
        };
        let out = discover_result(&Discover {
            versions: &version::ALL,
            capabilities: &caps,
            instructions: Some("Use find_tools first."),
            server_info: &info,
            cache: CacheHint {
                ttl_ms: 300_000,
                scope: CacheScope::Private,
            },
        });
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "resultType": "complete",
                "supportedVersions": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
                "capabilities": {
                    "tools": {"listChanged": true},
                    "prompts": {"listChanged": true},
                    "resources": {"listChanged": true, "subscribe": false},
                    "completions": {},
                    "logging": {}
                },
                "instructions": "Use find_tools first.",
                "_meta": {"io.modelcontextprotocol/serverInfo": {
                    "name": "cortex-gateway", "version": "0.1.0", "title": "Cortex Gateway"}},
                "ttlMs": 300000,
                "cacheScope": "private"
            })
        );
    }

    #[test]
    fn minimal_discover_and_extensions() {
        let caps = ServerCapabilities {
            extensions: vec![(
                "io.modelcontextprotocol/ui".into(),
                json!({"mimeTypes": []}),
            )],
            ..ServerCapabilities::default()
        };
        let info = ServerInfo {
            name: "g",
            version: "1",
            title: None,
            website_url: Some("https://example.test"),
        };
        let v: Value = serde_json::from_slice(&discover_result(&Discover {
            versions: &version::MODERN,
            capabilities: &caps,
            instructions: None,
            server_info: &info,
            cache: CacheHint {
                ttl_ms: 0,
                scope: CacheScope::Public,
            },
        }))
        .unwrap();
        assert_eq!(v["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(
            v["capabilities"],
            json!({"extensions": {"io.modelcontextprotocol/ui": {"mimeTypes": []}}})
        );
        assert!(v.get("instructions").is_none());
        assert_eq!(
            (v["ttlMs"].clone(), v["cacheScope"].clone()),
            (json!(0), json!("public"))
        );
        assert_eq!(
            v["_meta"]["io.modelcontextprotocol/serverInfo"]["websiteUrl"],
            json!("https://example.test")
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&info.to_json_bytes()).unwrap(),
            info.to_json()
        );
    }
}
