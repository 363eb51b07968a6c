//! The gateway as a 2026-07-28 client of a modern upstream (`kind: mcp` with
//! `protocol: 2026-07-28`): what every outgoing request carries, how the upstream's
//! `server/discover` is read, and how its results are told apart (complete, or input
//! required: the rounds the gateway relays to its caller and retries upstream).
//!
//! The gateway keeps no upstream session with a modern server: each request carries the
//! version and the client capabilities in `_meta`, and the mirrored `Mcp-Method` /
//! `Mcp-Name` headers. The capabilities declared upstream are the caller's own (only those
//! the gateway can relay: roots, sampling, elicitation), so a well-behaved upstream never
//! asks for input the caller cannot give; an upstream that asks anyway is refused here
//! ([`server_request_for`]) with the -32021 error naming what is missing.

use serde_json::{json, Map, Value};

use super::mrtr::{self, BridgeError, InputMethod, InputRequest, UpstreamInputRequired};
use super::{Refusal, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION};
use crate::native::Initialized;
use crate::session::caps;

/// The protocol version the gateway speaks to a modern upstream.
pub const MODERN_VERSION: &str = "2026-07-28";

/// The most input-required rounds one upstream call may take before the gateway gives up
/// (an upstream that never stops asking must not hold a caller forever).
pub const MAX_INPUT_ROUNDS: u32 = 8;

/// The capability bits the gateway can relay to a caller (and so may declare upstream).
const RELAYABLE: u8 = caps::ROOTS
    | caps::SAMPLING
    | caps::SAMPLING_TOOLS
    | caps::SAMPLING_CONTEXT
    | caps::ELICITATION
    | caps::ELICITATION_FORM
    | caps::ELICITATION_URL;

/// `params` with the request `_meta` of 2026-07-28 set: the protocol version and the client
/// capabilities `client_caps` (bits of [`caps`]; only those the gateway can relay). Other
/// `_meta` members (a progress token) are kept; params that are not an object become one.
pub fn with_request_meta(params: Value, client_caps: u8) -> Value {
    let mut p = match params {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut meta = match p.remove("_meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.insert(META_PROTOCOL_VERSION.into(), json!(MODERN_VERSION));
    meta.insert(
        META_CLIENT_CAPABILITIES.into(),
        caps::to_json(client_caps & RELAYABLE),
    );
    p.insert("_meta".into(), Value::Object(meta));
    Value::Object(p)
}

/// What a 2026-07-28 upstream request takes over from the caller's request, beyond the
/// operation itself: the log level a 2026-07-28 caller asked for in its `_meta` (the upstream
/// then sends log messages at that level, which reach only that request), and the
/// `inputResponses` of a first call (answers the upstream did not have to ask for).
pub fn carry_caller_fields(
    params: &mut Value,
    caller_meta: Option<&Value>,
    input_responses: Option<&Value>,
) {
    let Value::Object(p) = params else { return };
    if let Some(level) = caller_meta.and_then(|m| m.get(super::META_LOG_LEVEL)) {
        let meta = p.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(m) = meta {
            m.insert(super::META_LOG_LEVEL.into(), level.clone());
        }
    }
    if let Some(responses) = input_responses {
        p.insert("inputResponses".into(), responses.clone());
    }
}

/// The headers a modern request mirrors from its body: `MCP-Protocol-Version`, `Mcp-Method`,
/// and `Mcp-Name` for the methods that name a target (encoded in the base64 form when the
/// name is not plain visible ASCII). Lower-case names.
pub fn mirrored_headers(method: &str, params: &Value) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (super::headers::PROTOCOL_VERSION, MODERN_VERSION.to_string()),
        (super::headers::METHOD, method.to_string()),
    ];
    if let Some(field) = super::envelope::name_source(method) {
        if let Some(name) = params.get(field).and_then(Value::as_str) {
            out.push((
                super::headers::NAME,
                super::headers::encode_value(name).into_owned(),
            ));
        }
    }
    out
}

/// The `Mcp-Param-*` headers of a `tools/call` to a modern upstream: one per `x-mcp-header`
/// annotation of the tool's `inputSchema` whose argument is present (strings in the base64
/// form when not plain ASCII, integers and booleans as JSON writes them). A schema whose
/// annotations are invalid gets none (the spec has clients drop such a tool). Lower-case
/// names.
pub fn param_headers_for(input_schema: &Value, arguments: Option<&Value>) -> Vec<(String, String)> {
    let Ok(annotations) = super::headers::param_headers(input_schema) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in annotations {
        let mut at = arguments;
        for key in &a.path {
            at = at.and_then(|v| v.get(key));
        }
        let value = match at {
            Some(Value::String(s)) => super::headers::encode_value(s).into_owned(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        out.push((
            format!(
                "{}{}",
                super::headers::PARAM_PREFIX,
                a.header.to_ascii_lowercase()
            ),
            value,
        ));
    }
    out
}

/// The params of the gateway's `server/discover` (no capabilities: discovery has no caller).
pub fn discover_params() -> Value {
    with_request_meta(json!({}), 0)
}

/// Checks an upstream's `server/discover` result: it must support 2026-07-28. The server's
/// capabilities say which optional lists it has, as `initialize` does for a legacy server.
pub fn discovered(result: &Value) -> Result<Initialized, String> {
    let supported: Vec<&str> = result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .ok_or("server/discover result without supportedVersions")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !supported.contains(&MODERN_VERSION) {
        return Err(format!(
            "the server supports {} but not {MODERN_VERSION}; remove `protocol: {MODERN_VERSION}` to speak the session-based protocol to it",
            if supported.is_empty() { "no version".to_string() } else { supported.join(", ") }
        ));
    }
    let caps = result.get("capabilities").cloned().unwrap_or(Value::Null);
    Ok(Initialized {
        version: MODERN_VERSION.to_string(),
        // 2026-07-28 has no resources/subscribe (subscriptions/listen instead).
        subscribe: false,
        prompts: caps.get("prompts").is_some(),
        resources: caps.get("resources").is_some(),
        completions: caps.get("completions").is_some(),
    })
}

/// A modern upstream's final result, told apart.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamResult {
    /// The answer, without the modern-only members (`resultType`, `ttlMs`, `cacheScope`):
    /// the endpoint adds the ones the caller's era wants.
    Complete(Value),
    /// The upstream needs input from the caller before it can answer.
    InputRequired(UpstreamInputRequired),
}

/// Classifies a modern upstream's result. A result without `resultType` counts as complete
/// (lenient to servers that omit it); an unknown `resultType` or a malformed
/// `InputRequiredResult` is an error in words.
pub fn classify_result(result: Value) -> Result<UpstreamResult, String> {
    match result.get("resultType").and_then(Value::as_str) {
        None | Some("complete") => {
            let mut result = result;
            if let Value::Object(m) = &mut result {
                m.remove("resultType");
                m.remove("ttlMs");
                m.remove("cacheScope");
            }
            Ok(UpstreamResult::Complete(result))
        }
        Some("input_required") => mrtr::parse_input_required(&result)
            .map(UpstreamResult::InputRequired)
            .map_err(|e| format!("the server's input_required result is invalid: {e}")),
        Some(other) => Err(format!("the server answered with resultType {other:?}")),
    }
}

/// An upstream input request as the server-to-client request relayed to the caller
/// (method and params), refused with -32021 when the caller did not declare the capability
/// it needs (`caller_caps`). A URL-mode elicitation gets the `elicitationId` the session-based
/// versions require (its input key).
pub fn server_request_for(
    req: &InputRequest,
    caller_caps: u8,
) -> Result<(&'static str, Value), Refusal> {
    super::envelope::require(caller_caps, req.required_caps()).map_err(|mut r| {
        r.message = format!(
            "the upstream asks for {} ({}), which needs a client capability this client did not declare",
            req.method.as_str(),
            req.key
        );
        r
    })?;
    let mut params = req.params.clone();
    if req.method == InputMethod::Elicit
        && params.get("mode").and_then(Value::as_str) == Some("url")
    {
        if let Value::Object(p) = &mut params {
            p.entry("elicitationId").or_insert_with(|| json!(req.key));
        }
    }
    Ok((req.method.as_str(), params))
}

/// The caller's answer to a relayed input request (a result, or a JSON-RPC error object) as
/// the value of `inputResponses` for the retried upstream request. An error, or a result
/// that does not have its method's shape, fails the call (the modern protocol has no error
/// answer to an input request).
pub fn input_response(
    method: InputMethod,
    answer: Result<Value, Value>,
) -> Result<Value, BridgeError> {
    let message = match answer {
        Ok(result) => json!({ "result": result }),
        Err(error) => json!({ "error": error }),
    };
    let mut value = mrtr::legacy_response_to_input(method, &message)?;
    if let Value::Object(m) = &mut value {
        // A modern answer carries no `_meta` of the caller's own session.
        m.remove("resultType");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_meta_carries_version_and_relayable_caps_and_keeps_progress() {
        let p = with_request_meta(
            json!({"name": "t", "_meta": {"progressToken": "p1"}}),
            caps::SAMPLING | caps::ELICITATION | caps::ELICITATION_FORM,
        );
        assert_eq!(p["name"], "t");
        assert_eq!(p["_meta"]["progressToken"], "p1");
        assert_eq!(p["_meta"][META_PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(
            p["_meta"][META_CLIENT_CAPABILITIES],
            json!({"sampling": {}, "elicitation": {"form": {}}})
        );
        let bare = with_request_meta(Value::Null, 0);
        assert_eq!(bare["_meta"][META_CLIENT_CAPABILITIES], json!({}));
        assert_eq!(discover_params(), bare);
    }

    #[test]
    fn the_callers_log_level_and_first_answers_are_carried() {
        let mut p = json!({"name": "t", "_meta": {"progressToken": "g-1"}});
        let caller = json!({"io.modelcontextprotocol/logLevel": "info", "progressToken": "c"});
        let answers = json!({"k": {"action": "accept"}});
        carry_caller_fields(&mut p, Some(&caller), Some(&answers));
        assert_eq!(p["_meta"]["io.modelcontextprotocol/logLevel"], "info");
        assert_eq!(p["_meta"]["progressToken"], "g-1");
        assert_eq!(p["inputResponses"], answers);
        let mut bare = json!({"name": "t"});
        carry_caller_fields(&mut bare, Some(&json!({})), None);
        assert_eq!(bare, json!({"name": "t"}));
    }

    #[test]
    fn mirrored_headers_name_the_target_and_encode_what_is_not_plain() {
        let h = mirrored_headers("tools/call", &json!({"name": "get_weather"}));
        assert_eq!(
            h,
            vec![
                ("mcp-protocol-version", "2026-07-28".to_string()),
                ("mcp-method", "tools/call".to_string()),
                ("mcp-name", "get_weather".to_string()),
            ]
        );
        let h = mirrored_headers("resources/read", &json!({"uri": "file:///é"}));
        assert!(h[2].1.starts_with("=?base64?"), "{h:?}");
        let h = mirrored_headers("tools/list", &json!({}));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn annotated_arguments_become_param_headers() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {
                "depth": {"type": "integer", "x-mcp-header": "Depth"},
                "dry": {"type": "boolean", "x-mcp-header": "Dry"}}},
            "note": {"type": "string"}}});
        let h = param_headers_for(
            &schema,
            Some(&json!({"region": "été", "opts": {"depth": 3, "dry": false}, "note": "x"})),
        );
        assert_eq!(h.len(), 3, "{h:?}");
        let region = h
            .iter()
            .find(|(k, _)| k == "mcp-param-region")
            .expect("region");
        assert!(region.1.starts_with("=?base64?"), "{h:?}");
        assert!(h.contains(&("mcp-param-depth".to_string(), "3".to_string())));
        assert!(h.contains(&("mcp-param-dry".to_string(), "false".to_string())));
        assert!(param_headers_for(&schema, Some(&json!({"note": "x"}))).is_empty());
        assert!(param_headers_for(&schema, None).is_empty());
        let invalid = json!({"properties": {"a": {"type": "array", "x-mcp-header": "A"}}});
        assert!(param_headers_for(&invalid, Some(&json!({"a": []}))).is_empty());
    }

    #[test]
    fn discover_needs_the_modern_version() {
        let ok = discovered(&json!({"supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}, "prompts": {}}}))
        .unwrap();
        assert_eq!(ok.version, "2026-07-28");
        assert!(ok.prompts && !ok.resources && !ok.subscribe);
        let old = discovered(&json!({"supportedVersions": ["2025-11-25"]})).unwrap_err();
        assert!(old.contains("not 2026-07-28"), "{old}");
        assert!(discovered(&json!({})).is_err());
    }

    #[test]
    fn results_are_complete_or_input_required() {
        let c = classify_result(json!({"resultType": "complete", "content": [], "ttlMs": 5,
            "cacheScope": "private"}))
        .unwrap();
        assert_eq!(c, UpstreamResult::Complete(json!({"content": []})));
        let lenient = classify_result(json!({"content": []})).unwrap();
        assert_eq!(lenient, UpstreamResult::Complete(json!({"content": []})));
        let ir = classify_result(json!({"resultType": "input_required",
            "inputRequests": {"name": {"method": "elicitation/create",
                "params": {"message": "Name?", "requestedSchema": {"type": "object"}}}},
            "requestState": "s1"}))
        .unwrap();
        match ir {
            UpstreamResult::InputRequired(u) => {
                assert_eq!(u.request_state.as_deref(), Some("s1"));
                assert_eq!(u.requests.len(), 1);
                assert_eq!(u.requests[0].key, "name");
            }
            other => panic!("{other:?}"),
        }
        assert!(classify_result(json!({"resultType": "later"})).is_err());
        assert!(classify_result(json!({"resultType": "input_required"})).is_err());
        let bad = classify_result(json!({"resultType": "input_required",
            "inputRequests": {"x": {"method": "tools/call"}}}))
        .unwrap_err();
        assert!(bad.contains("tools/call"), "{bad}");
    }

    #[test]
    fn a_request_the_caller_cannot_answer_is_refused_with_32021() {
        let form = InputRequest {
            key: "name".into(),
            method: InputMethod::Elicit,
            params: json!({"message": "Name?"}),
        };
        let refused = server_request_for(&form, caps::SAMPLING).unwrap_err();
        assert_eq!(refused.code, -32021);
        assert!(
            refused.message.contains("elicitation/create"),
            "{}",
            refused.message
        );
        assert_eq!(
            refused.data.unwrap()["requiredCapabilities"],
            json!({"elicitation": {"form": {}}})
        );
        let (method, params) =
            server_request_for(&form, caps::ELICITATION | caps::ELICITATION_FORM).unwrap();
        assert_eq!(method, "elicitation/create");
        assert_eq!(params, json!({"message": "Name?"}));
        let url = InputRequest::elicit_url("link", "Open", "https://example.com/x");
        let (_, params) = server_request_for(&url, caps::ELICITATION_URL).unwrap();
        assert_eq!(params["elicitationId"], "link");
        let roots = InputRequest {
            key: "r".into(),
            method: InputMethod::ListRoots,
            params: json!({}),
        };
        assert!(server_request_for(&roots, 0).is_err());
        assert!(server_request_for(&roots, caps::ROOTS).is_ok());
    }

    #[test]
    fn the_callers_answers_become_input_responses() {
        let v = input_response(
            InputMethod::Elicit,
            Ok(json!({"action": "accept", "content": {"name": "Ann"}})),
        )
        .unwrap();
        assert_eq!(v, json!({"action": "accept", "content": {"name": "Ann"}}));
        let roots = input_response(
            InputMethod::ListRoots,
            Ok(json!({"roots": [{"uri": "file:///a"}]})),
        )
        .unwrap();
        assert_eq!(roots["roots"][0]["uri"], "file:///a");
        let err = input_response(
            InputMethod::Sample,
            Err(json!({"code": -1, "message": "User rejected sampling"})),
        )
        .unwrap_err();
        assert!(err.to_string().contains("User rejected"), "{err}");
        assert!(input_response(InputMethod::ListRoots, Ok(json!({"nope": 1}))).is_err());
    }
}
