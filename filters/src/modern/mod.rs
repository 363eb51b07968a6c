//! The modern era of MCP (2026-07-28): every decision the endpoint takes for a request that
//! carries its protocol version and client capabilities in `_meta` instead of a session.
//!
//! # How the gateway uses this module
//!
//! The gateway serves both eras on one endpoint and chooses per request. For each POST it:
//!
//! 1. collects the routing headers once with [`RequestHeaders::from_pairs`] (header names
//!    and raw values; nothing is copied) and parses the body with
//!    [`crate::jsonrpc::parse_body`];
//! 2. asks [`select_era`] which era the request speaks. A legacy request keeps today's path
//!    (session, [`crate::version::from_header`]); a modern one continues here;
//! 3. calls [`envelope::validate`], which checks `_meta`, the `MCP-Protocol-Version`,
//!    `Mcp-Method` and `Mcp-Name` headers and the method table, and returns either the
//!    envelope facts ([`ModernRequest`]: version, client capability bits, method, target
//!    name, log level, progress token, MRTR fields) or a [`Refusal`] carrying the HTTP status,
//!    JSON-RPC code, message and data to write back ([`Refusal::body`]);
//! 4. for `tools/call`, once the tool is routed, checks the `Mcp-Param-*` headers against the
//!    tool's `x-mcp-header` annotations with [`headers::check_param_headers`] (the
//!    annotations come from [`headers::param_headers`], computed once per catalog);
//! 5. before a handler relies on a client capability, calls [`envelope::require`];
//! 6. decorates every result: [`result::decorate`] splices `resultType` (and, for discover,
//!    lists and resource reads, `ttlMs` and `cacheScope`) into the serialized result;
//!    [`result::prepend`] is the cheap form for bytes the gateway built itself, such as cached
//!    list pages;
//! 7. answers `server/discover` with [`discover::discover_result`];
//! 8. answers a call that needs user input with an `InputRequiredResult`
//!    ([`mrtr::input_required_result`]) whose `requestState` is sealed by
//!    [`state::RequestStateSealer`] (bound to the caller, the request and an expiry, with a
//!    nonce for the gateway's replay set). The retry's `inputResponses` are matched with
//!    [`mrtr::match_input_responses`]. The same module translates between a legacy
//!    server-to-client request and an `inputRequests` entry, in both directions, for calls
//!    that cross eras; [`hold`] decides the rest of that bridge (the continuation a state
//!    carries, the bounds on held upstream calls, which notifications a modern request gets);
//! 9. serves `subscriptions/listen` with [`listen`]: parse the filter, acknowledge what it
//!    honours, and decide per event whether the subscriber asked for it.
//!
//! Everything here is pure: no I/O, no clock (`now` is an argument), no shared state.

pub mod discover;
pub mod envelope;
pub mod headers;
pub mod hold;
pub mod listen;
pub mod mrtr;
pub mod result;
pub mod state;
pub mod upstream;

use serde_json::{json, Value};

use crate::jsonrpc::{self, codes, Id, Incoming, Message};
use crate::session::caps;
use crate::version::{self, Era, ProtocolVersion};

pub use envelope::{LogLevel, ModernRequest};
pub use headers::RequestHeaders;

/// The `_meta` key carrying the request's protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key carrying the client's capabilities for this request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key carrying the client's name and version (optional).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// The `_meta` key asking for log messages at or above a level (optional).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// The `_meta` key correlating listen-stream messages with their subscription.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// The result `_meta` key naming the server.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// The `_meta` key of a progress token.
pub const META_PROGRESS_TOKEN: &str = "progressToken";

/// Why a modern request is not served, ready to be written back: the HTTP status, the
/// JSON-RPC error code, a message a person can act on, and the error data the spec defines
/// for the code (if any).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The HTTP status of the answer.
    pub http_status: u16,
    /// The JSON-RPC error code.
    pub code: i64,
    /// The error message.
    pub message: String,
    /// The error `data` member, when the code defines one.
    pub data: Option<Value>,
}

impl Refusal {
    /// HTTP 400 with -32020 (`HeaderMismatch`): a mirrored header is missing, repeated,
    /// malformed or disagrees with the body.
    pub fn header_mismatch(message: impl Into<String>) -> Self {
        Refusal {
            http_status: 400,
            code: codes::HEADER_MISMATCH,
            message: message.into(),
            data: None,
        }
    }

    /// HTTP 400 with -32602: the request is malformed (missing `_meta` fields, bad
    /// `requestState`, bad `inputResponses`, …).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Refusal {
            http_status: 400,
            code: codes::INVALID_PARAMS,
            message: message.into(),
            data: None,
        }
    }

    /// HTTP 400 with -32022 (`UnsupportedProtocolVersion`), listing what is supported and
    /// echoing what was requested.
    pub fn unsupported_version(requested: &str, supported: &[ProtocolVersion]) -> Self {
        Refusal {
            http_status: 400,
            code: codes::UNSUPPORTED_PROTOCOL_VERSION,
            message: format!(
                "Unsupported protocol version {requested:?}; supported: {}",
                version::wire_list(supported).join(", ")
            ),
            data: Some(json!({
                "supported": version::wire_list(supported),
                "requested": requested,
            })),
        }
    }

    /// HTTP 400 with -32021 (`MissingRequiredClientCapability`); `missing` are
    /// [`crate::session::caps`] bits, reported as a `ClientCapabilities` object.
    pub fn missing_capabilities(missing: u8) -> Self {
        let required = caps::to_json(missing);
        let names: Vec<&str> = required
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        Refusal {
            http_status: 400,
            code: codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
            message: format!(
                "This request needs client capabilities that were not declared in _meta: {}",
                names.join(", ")
            ),
            data: Some(json!({ "requiredCapabilities": required })),
        }
    }

    /// HTTP 404 with -32601. `retired` names the version that removed the method, so the
    /// message can say so.
    pub fn method_not_found(method: &str, retired: Option<ProtocolVersion>) -> Self {
        let message = match retired {
            Some(v) => format!("Method not found: {method} was removed in MCP {v}"),
            None => format!("Method not found: {method}"),
        };
        Refusal {
            http_status: 404,
            code: codes::METHOD_NOT_FOUND,
            message,
            data: None,
        }
    }

    /// Any other refusal (e.g. 405 for a non-POST, or a message type the era does not
    /// allow).
    pub fn new(http_status: u16, code: i64, message: impl Into<String>) -> Self {
        Refusal {
            http_status,
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same refusal with `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The JSON-RPC error answer; `id` is the request's id (`null` when unknown).
    pub fn body(&self, id: Option<&Id>) -> Vec<u8> {
        jsonrpc::error(id, self.code, &self.message, self.data.as_ref())
    }
}

/// Which era a request speaks, decided from what it carries (spec: a dual-era server serves a
/// request with modern `_meta` statelessly and an `initialize` under legacy semantics).
///
/// In order:
/// - a GET or DELETE (the legacy stream and session end), a batch, or a client's JSON-RPC
///   response → legacy (none exists in the modern era);
/// - an `Mcp-Session-Id` header → legacy (only the handshake mints one);
/// - a `_meta` protocol version in the body → modern (legacy clients never send one; an
///   `initialize` carrying one is a modern request for a retired method);
/// - an `MCP-Protocol-Version` header naming a modern version → modern (so a modern request
///   missing its `_meta` gets the modern -32602, not a session error);
/// - anything else → legacy, whose path answers exactly as before.
pub fn select_era(http_method: &str, headers: &RequestHeaders<'_>, body: &Incoming) -> Era {
    if !http_method.eq_ignore_ascii_case("POST") || headers.session_id {
        return Era::Legacy;
    }
    let message = match body {
        Incoming::Single(m) => m,
        Incoming::Batch(_) => return Era::Legacy,
    };
    let params = match message {
        Message::Request { params, .. } | Message::Notification { params, .. } => params,
        Message::Response { .. } => return Era::Legacy,
    };
    let has_meta_version = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .is_some();
    if has_meta_version {
        return Era::Modern;
    }
    match headers.protocol_version.single() {
        Some(raw) => {
            let modern = std::str::from_utf8(raw)
                .ok()
                .and_then(ProtocolVersion::parse)
                .is_some_and(|v| v.era() == Era::Modern);
            if modern {
                Era::Modern
            } else {
                Era::Legacy
            }
        }
        None => Era::Legacy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Incoming {
        jsonrpc::parse_body(v.to_string().as_bytes()).unwrap()
    }

    fn hdrs<'a>(pairs: &'a [(&'a str, &'a [u8])]) -> RequestHeaders<'a> {
        RequestHeaders::from_pairs(pairs.iter().copied())
    }

    const META: &str = "io.modelcontextprotocol/protocolVersion";

    #[test]
    fn era_selection_follows_what_the_request_carries() {
        let modern_body = parse(json!({"jsonrpc":"2.0","id":1,"method":"tools/list",
            "params":{"_meta":{META: "2026-07-28", "io.modelcontextprotocol/clientCapabilities":{}}}}));
        let plain_body = parse(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}));
        let init = parse(json!({"jsonrpc":"2.0","id":1,"method":"initialize",
            "params":{"protocolVersion":"2025-11-25","capabilities":{}}}));
        let modern_init = parse(json!({"jsonrpc":"2.0","id":1,"method":"initialize",
            "params":{"_meta":{META: "2026-07-28"}}}));
        let none = hdrs(&[]);
        let v_modern = [("MCP-Protocol-Version", &b"2026-07-28"[..])];
        let v_legacy = [("mcp-protocol-version", &b"2025-06-18"[..])];
        let v_unknown = [("mcp-protocol-version", &b"v999"[..])];
        let session = [
            ("Mcp-Session-Id", &b"abc"[..]),
            ("MCP-Protocol-Version", &b"2026-07-28"[..]),
        ];

        assert_eq!(select_era("POST", &none, &modern_body), Era::Modern);
        assert_eq!(select_era("POST", &none, &plain_body), Era::Legacy);
        assert_eq!(
            select_era("POST", &hdrs(&v_modern), &plain_body),
            Era::Modern
        );
        assert_eq!(
            select_era("POST", &hdrs(&v_legacy), &plain_body),
            Era::Legacy
        );
        assert_eq!(
            select_era("POST", &hdrs(&v_unknown), &plain_body),
            Era::Legacy
        );
        assert_eq!(select_era("POST", &none, &init), Era::Legacy);
        assert_eq!(select_era("POST", &none, &modern_init), Era::Modern);
        assert_eq!(
            select_era("POST", &hdrs(&session), &modern_body),
            Era::Legacy
        );
        assert_eq!(
            select_era("GET", &hdrs(&v_modern), &modern_body),
            Era::Legacy
        );
        assert_eq!(select_era("DELETE", &none, &modern_body), Era::Legacy);
        let batch = jsonrpc::parse_body(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap();
        assert_eq!(select_era("POST", &hdrs(&v_modern), &batch), Era::Legacy);
        let response = parse(json!({"jsonrpc":"2.0","id":1,"result":{}}));
        assert_eq!(select_era("POST", &hdrs(&v_modern), &response), Era::Legacy);
        let cancel = parse(json!({"jsonrpc":"2.0","method":"notifications/cancelled",
            "params":{"requestId":1}}));
        assert_eq!(select_era("POST", &hdrs(&v_modern), &cancel), Era::Modern);
        // A repeated version header is not trusted for era selection.
        let twice = [
            ("MCP-Protocol-Version", &b"2026-07-28"[..]),
            ("MCP-Protocol-Version", &b"2026-07-28"[..]),
        ];
        assert_eq!(select_era("POST", &hdrs(&twice), &plain_body), Era::Legacy);
    }

    #[test]
    fn refusals_carry_the_spec_shapes() {
        let r = Refusal::unsupported_version("v999.0.0", &version::ALL);
        assert_eq!((r.http_status, r.code), (400, -32022));
        let body: Value = serde_json::from_slice(&r.body(Some(&json!(301)))).unwrap();
        assert_eq!(body["id"], json!(301));
        assert_eq!(body["error"]["code"], json!(-32022));
        assert_eq!(
            body["error"]["data"],
            json!({"supported":["2026-07-28","2025-11-25","2025-06-18","2025-03-26"],
                   "requested":"v999.0.0"})
        );

        let r = Refusal::missing_capabilities(caps::SAMPLING);
        assert_eq!((r.http_status, r.code), (400, -32021));
        assert_eq!(
            r.data,
            Some(json!({"requiredCapabilities": {"sampling": {}}}))
        );
        assert!(r.message.contains("sampling"));

        let r = Refusal::method_not_found("ping", Some(ProtocolVersion::V2026_07_28));
        assert_eq!((r.http_status, r.code), (404, -32601));
        assert!(r.message.contains("removed in MCP 2026-07-28"));
        let r = Refusal::method_not_found("x/y", None);
        assert_eq!(r.message, "Method not found: x/y");

        let r = Refusal::header_mismatch("nope");
        assert_eq!((r.http_status, r.code, &r.data), (400, -32020, &None));
        let body: Value = serde_json::from_slice(&r.body(None)).unwrap();
        assert_eq!(body["id"], Value::Null);
        assert_eq!(Refusal::invalid_params("x").code, -32602);
        assert_eq!(Refusal::new(405, -32600, "m").http_status, 405);
    }
}
