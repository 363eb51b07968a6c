//! Validation of one modern request: `_meta`, mirrored headers, the method table.
//!
//! The checks run in the order that tells a client the most useful thing first, and the
//! first failure wins:
//!
//! 1. the message kind (a modern client sends requests and notifications, never responses)
//!    and the HTTP method (POST only);
//! 2. `params._meta` with its required `protocolVersion` (string) and `clientCapabilities`
//!    (object) → else HTTP 400, -32602;
//! 3. `MCP-Protocol-Version` present once and equal to the `_meta` version → else HTTP 400,
//!    -32020 (before the next step, so a client that disagrees with itself is told so);
//! 4. the version is one the endpoint serves in this era → else HTTP 400, -32022 with
//!    `data.supported` and `data.requested`;
//! 5. `Mcp-Method` present once and equal to the body's method → else HTTP 400, -32020;
//! 6. the method is served under the version → else HTTP 404, -32601 (a retired method's
//!    message names the version that removed it);
//! 7. for `tools/call` and `prompts/get` (`params.name`) and `resources/read`
//!    (`params.uri`): the body value is a string (→ else -32602) and `Mcp-Name` is present
//!    once and equal to it after decoding (→ else HTTP 400, -32020);
//! 8. the optional fields: `logLevel` (one of the eight levels), `progressToken` (string or
//!    integer), `requestState` (string), `inputResponses` (object) → else HTTP 400, -32602.
//!
//! Nothing here depends on an earlier request: each request is judged on what it carries.

use serde_json::{Map, Value};

use super::headers::{self, HeaderSlot, RequestHeaders};
use super::{
    Refusal, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_PROGRESS_TOKEN,
    META_PROTOCOL_VERSION,
};
use crate::jsonrpc::{codes, Id, Message};
use crate::session::caps;
use crate::version::{self, Era, MethodStatus, ProtocolVersion};

/// What the endpoint serves in the modern era.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'p> {
    /// The versions advertised (`server/discover`'s `supportedVersions`, and the `supported`
    /// list of a -32022), newest first. The modern ones among them are accepted in `_meta`.
    pub supported: &'p [ProtocolVersion],
}

impl Default for Policy<'static> {
    /// Both eras advertised, as a dual-era endpoint does.
    fn default() -> Self {
        Policy {
            supported: &version::ALL,
        }
    }
}

/// The syslog severities of `notifications/message`, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `notice`.
    Notice,
    /// `warning`.
    Warning,
    /// `error`.
    Error,
    /// `critical`.
    Critical,
    /// `alert`.
    Alert,
    /// `emergency`.
    Emergency,
}

impl LogLevel {
    /// Parses the wire form (exact, lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "notice" => LogLevel::Notice,
            "warning" => LogLevel::Warning,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            "alert" => LogLevel::Alert,
            "emergency" => LogLevel::Emergency,
            _ => return None,
        })
    }

    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }
}

/// The self-reported client identity (for logs and audit only; never for decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// `name`.
    pub name: &'a str,
    /// `version`, when given.
    pub version: Option<&'a str>,
}

/// The envelope facts of a valid modern request: everything the handlers need to know about
/// the caller's protocol state, borrowed from the parsed message.
#[derive(Debug, Clone, PartialEq)]
pub struct ModernRequest<'a> {
    /// The request's protocol version (a modern one).
    pub version: ProtocolVersion,
    /// The JSON-RPC id; `None` for a notification.
    pub id: Option<&'a Id>,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The whole `params` object (with `_meta`), when present.
    pub params: Option<&'a Value>,
    /// `params.name` for `tools/call` and `prompts/get`, `params.uri` for `resources/read`.
    pub name: Option<&'a str>,
    /// The declared client capabilities as [`crate::session::caps`] bits.
    pub client_caps: u8,
    /// The declared `ClientCapabilities` object, for anything the bits do not cover
    /// (`extensions`, `experimental`).
    pub client_capabilities: Option<&'a Value>,
    /// `clientInfo`, when it names the client.
    pub client_info: Option<ClientInfo<'a>>,
    /// The least severe level the client wants log messages for; `None` means none at all.
    pub log_level: Option<LogLevel>,
    /// The progress token (a string or an integer), when progress is asked for.
    pub progress_token: Option<&'a Value>,
    /// `params.requestState` of a retried multi-round-trip request.
    pub request_state: Option<&'a str>,
    /// `params.inputResponses` of a retried multi-round-trip request.
    pub input_responses: Option<&'a Map<String, Value>>,
}

impl ModernRequest<'_> {
    /// Whether a log message at `level` may be sent on this request's stream: only when the
    /// request asked for a level, and only at or above it.
    pub fn logs(&self, level: LogLevel) -> bool {
        self.log_level.is_some_and(|min| level >= min)
    }

    /// Whether this is a retry carrying multi-round-trip input (its result must not be
    /// cached).
    pub fn is_retry(&self) -> bool {
        self.request_state.is_some() || self.input_responses.is_some()
    }
}

/// The methods that mirror a target name into `Mcp-Name`, and the body field it comes from.
pub fn name_source(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Validates a modern request (see the module documentation for the order of the checks)
/// and returns its envelope facts, or the refusal to write back.
pub fn validate<'a>(
    http_method: &str,
    headers: &RequestHeaders<'_>,
    message: &'a Message,
    policy: &Policy<'_>,
) -> Result<ModernRequest<'a>, Refusal> {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (Some(id), method.as_str(), params.as_ref()),
        Message::Notification { method, params } => (None, method.as_str(), params.as_ref()),
        Message::Response { .. } => {
            return Err(Refusal::new(
                400,
                codes::INVALID_REQUEST,
                "Invalid Request: MCP 2026-07-28 clients send no JSON-RPC responses; \
                 answers to input requests travel in the retried request's inputResponses",
            ))
        }
    };
    if http_method != "POST" {
        return Err(Refusal::new(
            405,
            codes::INVALID_REQUEST,
            "Method Not Allowed: MCP 2026-07-28 requests are sent with POST",
        ));
    }
    if id.is_none() {
        return validate_notification(headers, method, params, policy);
    }

    // 2. `_meta` and its required fields.
    let meta = params
        .and_then(|p| p.get("_meta"))
        .ok_or_else(|| {
            Refusal::invalid_params(format!(
                "Invalid params: a request needs params._meta with {META_PROTOCOL_VERSION:?} and {META_CLIENT_CAPABILITIES:?}"
            ))
        })?
        .as_object()
        .ok_or_else(|| Refusal::invalid_params("Invalid params: params._meta must be an object"))?;
    let requested = match meta.get(META_PROTOCOL_VERSION) {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(Refusal::invalid_params(format!(
                "Invalid params: _meta[{META_PROTOCOL_VERSION:?}] must be a string"
            )))
        }
        None => {
            return Err(Refusal::invalid_params(format!(
                "Invalid params: _meta is missing the required {META_PROTOCOL_VERSION:?}"
            )))
        }
    };
    let client_capabilities = match meta.get(META_CLIENT_CAPABILITIES) {
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(Refusal::invalid_params(format!(
                "Invalid params: _meta[{META_CLIENT_CAPABILITIES:?}] must be an object"
            )))
        }
        None => {
            return Err(Refusal::invalid_params(format!(
                "Invalid params: _meta is missing the required {META_CLIENT_CAPABILITIES:?}"
            )))
        }
    };

    // 3. The version header agrees with `_meta`.
    let header_version = required_plain(&headers.protocol_version, "MCP-Protocol-Version")?;
    if header_version != requested {
        return Err(Refusal::header_mismatch(format!(
            "Header mismatch: MCP-Protocol-Version {header_version:?} does not match _meta protocol version {requested:?}"
        )));
    }

    // 4. The version is served.
    let version = served_version(requested, policy)?;

    // 5. `Mcp-Method` agrees with the body.
    let header_method = required_plain(&headers.method, "Mcp-Method")?;
    if header_method != method {
        return Err(Refusal::header_mismatch(format!(
            "Header mismatch: Mcp-Method {header_method:?} does not match body method {method:?}"
        )));
    }

    // 6. The method table.
    match version::method_status(version, method) {
        MethodStatus::Served => {}
        MethodStatus::Retired { since } => {
            return Err(Refusal::method_not_found(method, Some(since)))
        }
        MethodStatus::Unknown => return Err(Refusal::method_not_found(method, None)),
    }

    // 7. `Mcp-Name` agrees with the body's target.
    let name = match name_source(method) {
        Some(field) => Some(check_name(headers, method, field, params)?),
        None => None,
    };

    // 8. Optional `_meta` and MRTR fields.
    let log_level = match meta.get(META_LOG_LEVEL) {
        None => None,
        Some(v) => Some(v.as_str().and_then(LogLevel::parse).ok_or_else(|| {
            Refusal::invalid_params(format!(
                "Invalid params: _meta[{META_LOG_LEVEL:?}] must be one of debug, info, notice, warning, error, critical, alert, emergency"
            ))
        })?),
    };
    let progress_token = match meta.get(META_PROGRESS_TOKEN) {
        None => None,
        Some(t @ Value::String(_)) => Some(t),
        Some(t @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(t),
        Some(_) => {
            return Err(Refusal::invalid_params(
                "Invalid params: _meta.progressToken must be a string or an integer",
            ))
        }
    };
    let request_state = match params.and_then(|p| p.get("requestState")) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(Refusal::invalid_params(
                "Invalid params: requestState must be the string the server returned",
            ))
        }
    };
    let input_responses = match params.and_then(|p| p.get("inputResponses")) {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(Refusal::invalid_params(
                "Invalid params: inputResponses must be an object keyed like the inputRequests it answers",
            ))
        }
    };
    let client_info = meta.get(META_CLIENT_INFO).and_then(|ci| {
        Some(ClientInfo {
            name: ci.get("name")?.as_str()?,
            version: ci.get("version").and_then(Value::as_str),
        })
    });

    Ok(ModernRequest {
        version,
        id,
        method,
        params,
        name,
        client_caps: caps::from_json(client_capabilities),
        client_capabilities: Some(client_capabilities),
        client_info,
        log_level,
        progress_token,
        request_state,
        input_responses,
    })
}

/// A modern client notification: the version header must name a served modern version (a
/// notification carries no required `_meta`), `Mcp-Method` must match when sent, and the
/// method must be one the era defines for clients (an unknown one is refused with HTTP 400,
/// so the client learns it was not accepted).
fn validate_notification<'a>(
    headers: &RequestHeaders<'_>,
    method: &'a str,
    params: Option<&'a Value>,
    policy: &Policy<'_>,
) -> Result<ModernRequest<'a>, Refusal> {
    let header_version = required_plain(&headers.protocol_version, "MCP-Protocol-Version")?;
    let meta_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION));
    if let Some(v) = meta_version {
        if v.as_str() != Some(header_version) {
            return Err(Refusal::header_mismatch(format!(
                "Header mismatch: MCP-Protocol-Version {header_version:?} does not match _meta protocol version {v}"
            )));
        }
    }
    let version = served_version(header_version, policy)?;
    match &headers.method {
        HeaderSlot::Absent => {}
        slot => {
            let m = required_plain(slot, "Mcp-Method")?;
            if m != method {
                return Err(Refusal::header_mismatch(format!(
                    "Header mismatch: Mcp-Method {m:?} does not match body method {method:?}"
                )));
            }
        }
    }
    if version::method_status(version, method) != MethodStatus::Served {
        return Err(Refusal::new(
            400,
            codes::METHOD_NOT_FOUND,
            format!(
                "Notification not accepted: {method} is not a client notification of MCP {version}"
            ),
        ));
    }
    Ok(ModernRequest {
        version,
        id: None,
        method,
        params,
        name: None,
        client_caps: 0,
        client_capabilities: None,
        client_info: None,
        log_level: None,
        progress_token: None,
        request_state: None,
        input_responses: None,
    })
}

/// A modern version listed in the policy, or the -32022 refusal.
fn served_version(requested: &str, policy: &Policy<'_>) -> Result<ProtocolVersion, Refusal> {
    ProtocolVersion::parse(requested)
        .filter(|v| v.as_str() == requested)
        .filter(|v| v.era() == Era::Modern && policy.supported.contains(v))
        .ok_or_else(|| Refusal::unsupported_version(requested, policy.supported))
}

/// A required plain header, sent once, with a well-formed value.
fn required_plain<'h>(slot: &HeaderSlot<'h>, label: &str) -> Result<&'h str, Refusal> {
    match slot {
        HeaderSlot::Absent => Err(Refusal::header_mismatch(format!(
            "Header mismatch: the required {label} header is missing"
        ))),
        HeaderSlot::Repeated => Err(Refusal::header_mismatch(format!(
            "Header mismatch: {label} is sent more than once"
        ))),
        HeaderSlot::One(raw) => headers::plain_value(raw)
            .map_err(|e| Refusal::header_mismatch(format!("Header mismatch: {label} {e}"))),
    }
}

/// Checks `Mcp-Name` against `params.<field>` and returns the body value.
fn check_name<'a>(
    headers: &RequestHeaders<'_>,
    method: &str,
    field: &str,
    params: Option<&'a Value>,
) -> Result<&'a str, Refusal> {
    let body = params
        .and_then(|p| p.get(field))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Refusal::invalid_params(format!(
                "Invalid params: {method} needs a string params.{field}"
            ))
        })?;
    let raw = match headers.name {
        HeaderSlot::Absent => {
            return Err(Refusal::header_mismatch(format!(
                "Header mismatch: {method} requires the Mcp-Name header (params.{field})"
            )))
        }
        HeaderSlot::Repeated => {
            return Err(Refusal::header_mismatch(
                "Header mismatch: Mcp-Name is sent more than once",
            ))
        }
        HeaderSlot::One(raw) => raw,
    };
    let decoded = headers::decode_value(raw)
        .map_err(|e| Refusal::header_mismatch(format!("Header mismatch: Mcp-Name {e}")))?;
    if decoded != body {
        return Err(Refusal::header_mismatch(format!(
            "Header mismatch: Mcp-Name does not match params.{field} {body:?}"
        )));
    }
    Ok(body)
}

/// Refuses with -32021 unless every capability in `required` (bits of
/// [`crate::session::caps`]) is among `declared`; call it before relying on one.
pub fn require(declared: u8, required: u8) -> Result<(), Refusal> {
    let missing = required & !declared;
    if missing == 0 {
        Ok(())
    } else {
        Err(Refusal::missing_capabilities(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc;
    use serde_json::json;

    const V: &str = "2026-07-28";

    fn meta() -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": V,
            "io.modelcontextprotocol/clientInfo": {"name": "test-client", "version": "1.0"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}, "sampling": {}}
        })
    }

    fn msg(v: Value) -> Message {
        jsonrpc::parse_message(v).unwrap()
    }

    fn request(method: &str, mut params: Value) -> Message {
        if params.get("_meta").is_none() {
            params["_meta"] = meta();
        }
        msg(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
    }

    fn run<'m>(pairs: &[(&str, &str)], m: &'m Message) -> Result<ModernRequest<'m>, Refusal> {
        let h = RequestHeaders::from_pairs(pairs.iter().map(|(n, v)| (*n, v.as_bytes())));
        validate("POST", &h, m, &Policy::default())
    }

    fn expect(r: Result<ModernRequest<'_>, Refusal>, status: u16, code: i64) -> Refusal {
        let e = r.unwrap_err();
        assert_eq!((e.http_status, e.code), (status, code), "{e:?}");
        e
    }

    #[test]
    fn a_conformant_tools_call_yields_its_envelope() {
        let mut params = json!({"name": "get_weather", "arguments": {"q": 1}});
        let mut m = meta();
        m["io.modelcontextprotocol/logLevel"] = json!("warning");
        m["progressToken"] = json!("p-1");
        params["_meta"] = m;
        let message = request("tools/call", params);
        let r = run(
            &[
                ("MCP-Protocol-Version", V),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "get_weather"),
            ],
            &message,
        )
        .unwrap();
        assert_eq!(r.version, ProtocolVersion::V2026_07_28);
        assert_eq!(r.id, Some(&json!(7)));
        assert_eq!(r.method, "tools/call");
        assert_eq!(r.name, Some("get_weather"));
        assert_eq!(
            r.client_caps,
            caps::ELICITATION | caps::ELICITATION_URL | caps::SAMPLING
        );
        assert_eq!(
            r.client_info,
            Some(ClientInfo {
                name: "test-client",
                version: Some("1.0")
            })
        );
        assert_eq!(r.log_level, Some(LogLevel::Warning));
        assert!(r.logs(LogLevel::Error) && r.logs(LogLevel::Warning));
        assert!(!r.logs(LogLevel::Info));
        assert_eq!(r.progress_token, Some(&json!("p-1")));
        assert!(!r.is_retry());
        assert_eq!(r.params.unwrap()["arguments"], json!({"q": 1}));
    }

    #[test]
    fn header_names_are_case_insensitive_and_values_trimmed() {
        let message = request("tools/call", json!({"name": "t"}));
        let r = run(
            &[
                ("mcp-protocol-version", V),
                ("MCP-METHOD", "tools/call"),
                ("mcp-name", "  t  "),
            ],
            &message,
        )
        .unwrap();
        assert_eq!(r.name, Some("t"));
        assert_eq!(r.log_level, None);
        assert!(!r.logs(LogLevel::Emergency), "no level asked, no log");
    }

    #[test]
    fn missing_meta_fields_are_invalid_params_with_400() {
        let h = [
            ("MCP-Protocol-Version", V),
            ("Mcp-Method", "server/discover"),
        ];
        for params in [
            json!({}),
            json!({"_meta": 5}),
            json!({"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}}),
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": V}}),
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": 2026, "io.modelcontextprotocol/clientCapabilities": {}}}),
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": []}}),
        ] {
            let m = msg(
                json!({"jsonrpc": "2.0", "id": 101, "method": "server/discover", "params": params}),
            );
            expect(run(&h, &m), 400, -32602);
        }
        let m = msg(json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover"}));
        expect(run(&h, &m), 400, -32602);
        // clientInfo is optional.
        let m = msg(
            json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": V,
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
        );
        let r = run(&h, &m).unwrap();
        assert_eq!((r.client_info, r.client_caps), (None, 0));
    }

    #[test]
    fn version_header_must_match_meta_before_support_is_judged() {
        let mut p = json!({});
        p["_meta"] = meta();
        p["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
        let m = request("server/discover", p);
        // Header says 2026-07-28, _meta says v999: mismatch, not "unsupported".
        expect(
            run(
                &[
                    ("MCP-Protocol-Version", V),
                    ("Mcp-Method", "server/discover"),
                ],
                &m,
            ),
            400,
            -32020,
        );
        // Both say v999: unsupported, with the list and the echo.
        let e = expect(
            run(
                &[
                    ("MCP-Protocol-Version", "v999.0.0"),
                    ("Mcp-Method", "server/discover"),
                ],
                &m,
            ),
            400,
            -32022,
        );
        let data = e.data.unwrap();
        assert_eq!(data["requested"], json!("v999.0.0"));
        assert_eq!(data["supported"][0], json!("2026-07-28"));
        // Missing or repeated version header.
        let ok = request("server/discover", json!({}));
        expect(run(&[("Mcp-Method", "server/discover")], &ok), 400, -32020);
        expect(
            run(
                &[
                    ("MCP-Protocol-Version", V),
                    ("MCP-Protocol-Version", V),
                    ("Mcp-Method", "server/discover"),
                ],
                &ok,
            ),
            400,
            -32020,
        );
        expect(
            run(
                &[
                    ("MCP-Protocol-Version", "2026-07-28\u{1}"),
                    ("Mcp-Method", "server/discover"),
                ],
                &ok,
            ),
            400,
            -32020,
        );
    }

    #[test]
    fn a_legacy_version_in_meta_is_unsupported_per_request() {
        let mut p = json!({});
        p["_meta"] = meta();
        p["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
        let m = request("tools/list", p);
        let e = expect(
            run(
                &[
                    ("MCP-Protocol-Version", "2025-11-25"),
                    ("Mcp-Method", "tools/list"),
                ],
                &m,
            ),
            400,
            -32022,
        );
        assert_eq!(e.data.unwrap()["requested"], json!("2025-11-25"));
        // A policy advertising only the modern version lists only that.
        let h = RequestHeaders::from_pairs([
            ("MCP-Protocol-Version", &b"1999-01-01"[..]),
            ("Mcp-Method", &b"tools/list"[..]),
        ]);
        let mut p = json!({});
        p["_meta"] = meta();
        p["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("1999-01-01");
        let m = request("tools/list", p);
        let e = validate(
            "POST",
            &h,
            &m,
            &Policy {
                supported: &version::MODERN,
            },
        )
        .unwrap_err();
        assert_eq!(e.data.unwrap()["supported"], json!(["2026-07-28"]));
        // A padded version string is not the version.
        let mut p = json!({});
        p["_meta"] = meta();
        p["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(" 2026-07-28");
        let m = request("tools/list", p);
        expect(
            run(
                &[
                    ("MCP-Protocol-Version", " 2026-07-28"),
                    ("Mcp-Method", "tools/list"),
                ],
                &m,
            ),
            400,
            -32020,
        );
    }

    #[test]
    fn method_header_must_match_exactly() {
        let m = request("tools/list", json!({}));
        expect(
            run(
                &[("MCP-Protocol-Version", V), ("Mcp-Method", "prompts/list")],
                &m,
            ),
            400,
            -32020,
        );
        expect(run(&[("MCP-Protocol-Version", V)], &m), 400, -32020);
        expect(
            run(
                &[("MCP-Protocol-Version", V), ("Mcp-Method", "TOOLS/LIST")],
                &m,
            ),
            400,
            -32020,
        );
        expect(
            run(
                &[
                    ("MCP-Protocol-Version", V),
                    ("Mcp-Method", "tools/list"),
                    ("mcp-method", "tools/list"),
                ],
                &m,
            ),
            400,
            -32020,
        );
        assert!(run(
            &[("MCP-Protocol-Version", V), ("mcp-method", "tools/list")],
            &m
        )
        .is_ok());
    }

    #[test]
    fn unknown_and_retired_methods_are_404() {
        for method in [
            "initialize",
            "ping",
            "logging/setLevel",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            let m = request(method, json!({}));
            let e = expect(
                run(&[("MCP-Protocol-Version", V), ("Mcp-Method", method)], &m),
                404,
                -32601,
            );
            assert!(e.message.contains("removed"), "{method}: {}", e.message);
        }
        let m = request("unknown/method", json!({}));
        let e = expect(
            run(
                &[
                    ("MCP-Protocol-Version", V),
                    ("Mcp-Method", "unknown/method"),
                ],
                &m,
            ),
            404,
            -32601,
        );
        assert!(!e.message.contains("removed"));
    }

    #[test]
    fn name_header_is_checked_for_named_methods() {
        let call = request("tools/call", json!({"name": "get_weather"}));
        let base = [("MCP-Protocol-Version", V), ("Mcp-Method", "tools/call")];
        let with = |name: &'static str| {
            let mut h = base.to_vec();
            h.push(("Mcp-Name", name));
            h
        };
        expect(run(&base, &call), 400, -32020);
        expect(run(&with("wrong_tool_name"), &call), 400, -32020);
        expect(run(&with("GET_WEATHER"), &call), 400, -32020);
        let mut twice = with("get_weather");
        twice.push(("mcp-name", "get_weather"));
        expect(run(&twice, &call), 400, -32020);
        assert!(run(&with("=?base64?Z2V0X3dlYXRoZXI=?="), &call).is_ok());
        expect(run(&with("=?base64?Z2V0X3dlYXRoZXI?="), &call), 400, -32020);

        let no_name = request("tools/call", json!({"arguments": {}}));
        expect(run(&with("get_weather"), &no_name), 400, -32602);

        let read = request("resources/read", json!({"uri": "file:///projects/ä.json"}));
        let enc = headers::encode_value("file:///projects/ä.json").into_owned();
        assert!(enc.starts_with("=?base64?"));
        let h = [
            ("MCP-Protocol-Version", V),
            ("Mcp-Method", "resources/read"),
            ("Mcp-Name", enc.as_str()),
        ];
        assert_eq!(
            run(&h, &read).unwrap().name,
            Some("file:///projects/ä.json")
        );

        let prompt = request("prompts/get", json!({"name": "p"}));
        let h = [
            ("MCP-Protocol-Version", V),
            ("Mcp-Method", "prompts/get"),
            ("Mcp-Name", "p"),
        ];
        assert_eq!(run(&h, &prompt).unwrap().name, Some("p"));

        // A method without a target ignores Mcp-Name.
        let list = request("tools/list", json!({}));
        let h = [
            ("MCP-Protocol-Version", V),
            ("Mcp-Method", "tools/list"),
            ("Mcp-Name", "whatever"),
        ];
        assert_eq!(run(&h, &list).unwrap().name, None);
    }

    #[test]
    fn optional_fields_are_typed() {
        let h = [("MCP-Protocol-Version", V), ("Mcp-Method", "tools/list")];
        for (key, bad) in [
            ("io.modelcontextprotocol/logLevel", json!("verbose")),
            ("io.modelcontextprotocol/logLevel", json!("INFO")),
            ("io.modelcontextprotocol/logLevel", json!(3)),
            ("progressToken", json!(1.5)),
            ("progressToken", json!({"a": 1})),
            ("progressToken", json!(null)),
        ] {
            let mut p = json!({});
            p["_meta"] = meta();
            p["_meta"][key] = bad.clone();
            let m = request("tools/list", p);
            expect(run(&h, &m), 400, -32602);
        }
        let mut p = json!({});
        p["_meta"] = meta();
        p["_meta"]["progressToken"] = json!(42);
        let m = request("tools/list", p);
        assert_eq!(run(&h, &m).unwrap().progress_token, Some(&json!(42)));

        let ch = [
            ("MCP-Protocol-Version", V),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "t"),
        ];
        for bad in [
            json!({"name": "t", "requestState": 5}),
            json!({"name": "t", "inputResponses": null}),
            json!({"name": "t", "inputResponses": [1]}),
        ] {
            let m = request("tools/call", bad);
            expect(run(&ch, &m), 400, -32602);
        }
        let m = request(
            "tools/call",
            json!({"name": "t", "requestState": "abc", "inputResponses": {"k": {"action": "accept"}}}),
        );
        let r = run(&ch, &m).unwrap();
        assert_eq!(r.request_state, Some("abc"));
        assert!(r.input_responses.unwrap().contains_key("k"));
        assert!(r.is_retry());
        // A clientInfo without a name is ignored, not refused.
        let mut p = json!({"name": "t"});
        p["_meta"] = meta();
        p["_meta"]["io.modelcontextprotocol/clientInfo"] = json!("x");
        let m = request("tools/call", p);
        assert_eq!(run(&ch, &m).unwrap().client_info, None);
    }

    #[test]
    fn responses_and_non_post_are_refused() {
        let resp = msg(json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        expect(run(&[("MCP-Protocol-Version", V)], &resp), 400, -32600);
        let m = request("tools/list", json!({}));
        let h = RequestHeaders::from_pairs([
            ("MCP-Protocol-Version", &b"2026-07-28"[..]),
            ("Mcp-Method", &b"tools/list"[..]),
        ]);
        let e = validate("GET", &h, &m, &Policy::default()).unwrap_err();
        assert_eq!(e.http_status, 405);
    }

    #[test]
    fn notifications() {
        let cancel = msg(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}),
        );
        let r = run(&[("MCP-Protocol-Version", V)], &cancel).unwrap();
        assert_eq!((r.id, r.method), (None, "notifications/cancelled"));
        assert!(run(
            &[
                ("MCP-Protocol-Version", V),
                ("Mcp-Method", "notifications/cancelled")
            ],
            &cancel
        )
        .is_ok());
        expect(
            run(&[("MCP-Protocol-Version", V), ("Mcp-Method", "x")], &cancel),
            400,
            -32020,
        );
        expect(run(&[], &cancel), 400, -32020);
        expect(
            run(&[("MCP-Protocol-Version", "2025-11-25")], &cancel),
            400,
            -32022,
        );
        let init = msg(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        expect(run(&[("MCP-Protocol-Version", V)], &init), 400, -32601);
        let with_meta = msg(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 3, "_meta": {"io.modelcontextprotocol/protocolVersion": "v9"}}}),
        );
        expect(run(&[("MCP-Protocol-Version", V)], &with_meta), 400, -32020);
    }

    #[test]
    fn capability_requirements() {
        assert!(require(caps::SAMPLING | caps::ROOTS, caps::SAMPLING).is_ok());
        assert!(require(0, 0).is_ok());
        let e = require(
            caps::ELICITATION | caps::ELICITATION_FORM,
            caps::ELICITATION_URL,
        )
        .unwrap_err();
        assert_eq!((e.http_status, e.code), (400, -32021));
        assert_eq!(
            e.data.unwrap(),
            json!({"requiredCapabilities": {"elicitation": {"url": {}}}})
        );
        let e = require(0, caps::SAMPLING).unwrap_err();
        assert_eq!(
            e.data.unwrap()["requiredCapabilities"],
            json!({"sampling": {}})
        );
    }

    #[test]
    fn log_levels_order_and_parse() {
        let all = [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Notice,
            LogLevel::Warning,
            LogLevel::Error,
            LogLevel::Critical,
            LogLevel::Alert,
            LogLevel::Emergency,
        ];
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        for l in all {
            assert_eq!(LogLevel::parse(l.as_str()), Some(l));
        }
        assert_eq!(LogLevel::parse("Warning"), None);
        assert_eq!(name_source("tools/call"), Some("name"));
        assert_eq!(name_source("resources/read"), Some("uri"));
        assert_eq!(name_source("tools/list"), None);
    }
}
