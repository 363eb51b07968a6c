//! Multi-round-trip requests (input required), and their bridge to the legacy era.
//!
//! In 2026-07-28 a server never sends a request to the client. When a `tools/call`,
//! `prompts/get` or `resources/read` needs user input (an elicitation, a sampling, the
//! roots), the server answers with an `InputRequiredResult`: `inputRequests` (keyed server
//! requests) and/or a `requestState`; the client retries the original request with
//! `inputResponses` (same keys) and the `requestState` echoed.
//!
//! The gateway meets both eras on both sides, so this module also translates:
//!
//! | direction | from | to |
//! |---|---|---|
//! | legacy upstream → modern client | a server-to-client JSON-RPC request ([`legacy_request_to_input`]) | an `inputRequests` entry |
//! | modern client → legacy upstream | an `inputResponses` entry ([`input_response_to_legacy`]) | the JSON-RPC response the upstream waits for |
//! | modern upstream → legacy client | an `InputRequiredResult` ([`parse_input_required`]) → entries ([`input_to_legacy_request`]) | server-to-client requests on the call's SSE stream |
//! | legacy client → modern upstream | the client's JSON-RPC responses ([`legacy_response_to_input`]) | `inputResponses` of the retried upstream call ([`retry_params`]) |
//!
//! Every direction checks what it can without I/O: the method is one of the three input
//! methods, the client declared the capability the request needs, keys are unique and
//! bounded, answers have the shape of their method's result.

use serde_json::{json, Map, Value};

use super::Refusal;
use crate::jsonrpc::{self, Id};
use crate::session::caps;

/// The most input requests one result may carry (bounds the client's and the gateway's work).
pub const MAX_INPUT_REQUESTS: usize = 16;
/// The longest input request key.
pub const MAX_KEY_LEN: usize = 128;

/// The requests a server may need a client to fulfil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputMethod {
    /// `elicitation/create`.
    Elicit,
    /// `sampling/createMessage`.
    Sample,
    /// `roots/list`.
    ListRoots,
}

impl InputMethod {
    /// Parses a method name.
    pub fn parse(method: &str) -> Option<Self> {
        match method {
            "elicitation/create" => Some(InputMethod::Elicit),
            "sampling/createMessage" => Some(InputMethod::Sample),
            "roots/list" => Some(InputMethod::ListRoots),
            _ => None,
        }
    }

    /// The method name.
    pub const fn as_str(self) -> &'static str {
        match self {
            InputMethod::Elicit => "elicitation/create",
            InputMethod::Sample => "sampling/createMessage",
            InputMethod::ListRoots => "roots/list",
        }
    }
}

/// Whether `method` may be answered with an `InputRequiredResult` (spec: only these three).
pub fn allows_input_required(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// One keyed input request.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    /// The server-assigned key, unique within the result.
    pub key: String,
    /// The request method.
    pub method: InputMethod,
    /// Its params object.
    pub params: Value,
}

impl InputRequest {
    /// A URL-mode elicitation (e.g. "open this page to link your account"). The URL must
    /// carry no personal data and must not be pre-authenticated (spec).
    pub fn elicit_url(key: impl Into<String>, message: &str, url: &str) -> Self {
        InputRequest {
            key: key.into(),
            method: InputMethod::Elicit,
            params: json!({"mode": "url", "message": message, "url": url}),
        }
    }

    /// The client capabilities (bits of [`crate::session::caps`]) this request needs: the
    /// elicitation mode it uses, sampling with tool use or context inclusion when asked,
    /// roots.
    pub fn required_caps(&self) -> u8 {
        match self.method {
            InputMethod::Elicit => {
                if self.params.get("mode").and_then(Value::as_str) == Some("url") {
                    caps::ELICITATION_URL
                } else {
                    caps::ELICITATION_FORM
                }
            }
            InputMethod::Sample => {
                let mut bits = caps::SAMPLING;
                if self.params.get("tools").is_some() || self.params.get("toolChoice").is_some() {
                    bits |= caps::SAMPLING_TOOLS;
                }
                let context = self.params.get("includeContext").and_then(Value::as_str);
                if context.is_some_and(|c| c != "none") {
                    bits |= caps::SAMPLING_CONTEXT;
                }
                bits
            }
            InputMethod::ListRoots => caps::ROOTS,
        }
    }

    /// The `{method, params}` object of an `inputRequests` entry.
    fn entry(&self) -> Value {
        json!({"method": self.method.as_str(), "params": self.params})
    }
}

/// Why a translation between eras failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BridgeError {
    /// Not a JSON-RPC request object with an id and a method.
    #[error("not a JSON-RPC request")]
    NotARequest,
    /// A method other than elicitation, sampling or roots.
    #[error("{0:?} cannot be relayed as an input request")]
    UnsupportedMethod(String),
    /// `params` is present but not an object.
    #[error("input request params must be an object")]
    ParamsNotObject,
    /// The result is not an `InputRequiredResult`.
    #[error("result is not an input_required result")]
    NotInputRequired,
    /// An `InputRequiredResult` with neither `inputRequests` nor `requestState`.
    #[error("input_required result carries neither inputRequests nor requestState")]
    Empty,
    /// More than [`MAX_INPUT_REQUESTS`] requests, or a key that is empty or too long.
    #[error("input requests exceed the limits (at most {MAX_INPUT_REQUESTS}, keys 1..={MAX_KEY_LEN} bytes)")]
    Limits,
    /// The same key twice.
    #[error("input request key {0:?} is used twice")]
    DuplicateKey(String),
    /// The client declined the request with a JSON-RPC error.
    #[error("the client answered with error {code}: {message}")]
    ClientError {
        /// The error code.
        code: i64,
        /// The error message.
        message: String,
    },
    /// An answer that does not have the shape of its method's result.
    #[error("answer to {method} is invalid: {reason}")]
    InvalidResponse {
        /// The input method answered.
        method: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

fn check_keys(requests: &[InputRequest]) -> Result<(), BridgeError> {
    if requests.len() > MAX_INPUT_REQUESTS {
        return Err(BridgeError::Limits);
    }
    for (i, r) in requests.iter().enumerate() {
        if r.key.is_empty() || r.key.len() > MAX_KEY_LEN {
            return Err(BridgeError::Limits);
        }
        if requests[..i].iter().any(|o| o.key == r.key) {
            return Err(BridgeError::DuplicateKey(r.key.clone()));
        }
    }
    Ok(())
}

/// The serialized `InputRequiredResult` (with `resultType: "input_required"`, no caching
/// hints) for a modern client that declared `declared` capabilities.
///
/// Refuses with -32021 when a request needs a capability the client did not declare (the
/// spec forbids sending it), and with -32603 when the result would be empty or break the
/// key limits (a gateway bug, not the client's).
pub fn input_required_result(
    requests: &[InputRequest],
    request_state: Option<&str>,
    declared: u8,
) -> Result<Vec<u8>, Refusal> {
    let internal = |e: BridgeError| {
        Refusal::new(
            500,
            jsonrpc::codes::INTERNAL_ERROR,
            format!("Internal error: {e}"),
        )
    };
    if requests.is_empty() && request_state.is_none() {
        return Err(internal(BridgeError::Empty));
    }
    check_keys(requests).map_err(internal)?;
    let needed = requests.iter().fold(0u8, |acc, r| acc | r.required_caps());
    super::envelope::require(declared, needed)?;
    let mut out = Map::new();
    out.insert("resultType".into(), json!("input_required"));
    if !requests.is_empty() {
        let entries: Map<String, Value> = requests
            .iter()
            .map(|r| (r.key.clone(), r.entry()))
            .collect();
        out.insert("inputRequests".into(), Value::Object(entries));
    }
    if let Some(s) = request_state {
        out.insert("requestState".into(), json!(s));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// The answers of a retried request, matched against the input requests it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct InputMatch<'a> {
    /// Answered keys with their (shape-checked) result, in the order of `expected`.
    pub answered: Vec<(&'a str, &'a Value)>,
    /// Keys with no answer: ask for them again with a new `InputRequiredResult` (the spec
    /// prefers that to an error).
    pub missing: Vec<&'a str>,
}

/// Matches `inputResponses` (from [`super::ModernRequest::input_responses`]) against the
/// expected `(key, method)` pairs. Keys nobody asked for are ignored (spec: ignore what is not
/// recognised); an answer of the wrong shape is refused with HTTP 400, -32602.
pub fn match_input_responses<'a>(
    expected: &[(&'a str, InputMethod)],
    responses: Option<&'a Map<String, Value>>,
) -> Result<InputMatch<'a>, Refusal> {
    let mut m = InputMatch {
        answered: Vec::new(),
        missing: Vec::new(),
    };
    for &(key, method) in expected {
        match responses.and_then(|r| r.get(key)) {
            None | Some(Value::Null) => m.missing.push(key),
            Some(v) => {
                check_response(method, v).map_err(|e| {
                    Refusal::invalid_params(format!("Invalid params: inputResponses[{key:?}]: {e}"))
                })?;
                m.answered.push((key, v));
            }
        }
    }
    Ok(m)
}

/// Checks that `v` has the shape of `method`'s result: `ElicitResult` (`action` accept,
/// decline or cancel; `content` an object when present), `CreateMessageResult` (`role`,
/// `content`, `model`), `ListRootsResult` (`roots` array of objects with a `uri`).
pub fn check_response(method: InputMethod, v: &Value) -> Result<(), BridgeError> {
    let bad = |reason| BridgeError::InvalidResponse {
        method: method.as_str(),
        reason,
    };
    let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
    match method {
        InputMethod::Elicit => {
            match obj.get("action").and_then(Value::as_str) {
                Some("accept" | "decline" | "cancel") => {}
                _ => return Err(bad("action must be accept, decline or cancel")),
            }
            if obj.get("content").is_some_and(|c| !c.is_object()) {
                return Err(bad("content must be an object"));
            }
        }
        InputMethod::Sample => {
            if !obj.get("role").is_some_and(Value::is_string) {
                return Err(bad("role must be a string"));
            }
            if !obj
                .get("content")
                .is_some_and(|c| c.is_object() || c.is_array())
            {
                return Err(bad("content must be a content block or an array of them"));
            }
            if !obj.get("model").is_some_and(Value::is_string) {
                return Err(bad("model must be a string"));
            }
        }
        InputMethod::ListRoots => {
            let roots = obj
                .get("roots")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("roots must be an array"))?;
            if !roots
                .iter()
                .all(|r| r.get("uri").is_some_and(Value::is_string))
            {
                return Err(bad("every root needs a uri"));
            }
        }
    }
    Ok(())
}

/// Legacy upstream → modern client: a server-to-client JSON-RPC request from a legacy
/// upstream (the whole message object) becomes an `inputRequests` entry under `key`. The
/// legacy-only members are dropped from the params: `elicitationId` (2025-11-25 URL mode; the
/// gateway answers the upstream itself) and `task` (task augmentation is an extension in
/// 2026-07-28). The caller keeps `key` → upstream request id to route the answer back.
pub fn legacy_request_to_input(
    key: impl Into<String>,
    request: &Value,
) -> Result<InputRequest, BridgeError> {
    let obj = request.as_object().ok_or(BridgeError::NotARequest)?;
    if obj.get("id").is_none() {
        return Err(BridgeError::NotARequest);
    }
    let method_name = obj
        .get("method")
        .and_then(Value::as_str)
        .ok_or(BridgeError::NotARequest)?;
    let method = InputMethod::parse(method_name)
        .ok_or_else(|| BridgeError::UnsupportedMethod(method_name.to_owned()))?;
    let mut params = match obj.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(BridgeError::ParamsNotObject),
    };
    params.remove("elicitationId");
    params.remove("task");
    let key = key.into();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(BridgeError::Limits);
    }
    Ok(InputRequest {
        key,
        method,
        params: Value::Object(params),
    })
}

/// Modern client → legacy upstream: the answer found in `inputResponses` becomes the
/// JSON-RPC response (bytes) to the upstream's request `upstream_id`. A `resultType` the
/// client may have added is dropped (legacy results have none).
pub fn input_response_to_legacy(upstream_id: &Id, response: &Value) -> Vec<u8> {
    match response {
        Value::Object(m) if m.contains_key("resultType") => {
            let mut m = m.clone();
            m.remove("resultType");
            jsonrpc::success(upstream_id, &Value::Object(m))
        }
        other => jsonrpc::success(upstream_id, other),
    }
}

/// A modern upstream's `InputRequiredResult`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamInputRequired {
    /// The input requests, in key order.
    pub requests: Vec<InputRequest>,
    /// The state to echo on the retried upstream call.
    pub request_state: Option<String>,
}

/// Modern upstream → legacy client, step 1: reads an upstream result that is an
/// `InputRequiredResult` (`resultType: "input_required"`), with the same limits as ours.
pub fn parse_input_required(result: &Value) -> Result<UpstreamInputRequired, BridgeError> {
    if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
        return Err(BridgeError::NotInputRequired);
    }
    let request_state = match result.get("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(BridgeError::NotInputRequired),
    };
    let mut requests = Vec::new();
    match result.get("inputRequests") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            if entries.len() > MAX_INPUT_REQUESTS {
                return Err(BridgeError::Limits);
            }
            for (key, entry) in entries {
                let name = entry
                    .get("method")
                    .and_then(Value::as_str)
                    .ok_or(BridgeError::NotARequest)?;
                let method = InputMethod::parse(name)
                    .ok_or_else(|| BridgeError::UnsupportedMethod(name.to_owned()))?;
                let params = match entry.get("params") {
                    None | Some(Value::Null) => json!({}),
                    Some(p @ Value::Object(_)) => p.clone(),
                    Some(_) => return Err(BridgeError::ParamsNotObject),
                };
                requests.push(InputRequest {
                    key: key.clone(),
                    method,
                    params,
                });
            }
        }
        Some(_) => return Err(BridgeError::NotInputRequired),
    }
    check_keys(&requests)?;
    if requests.is_empty() && request_state.is_none() {
        return Err(BridgeError::Empty);
    }
    Ok(UpstreamInputRequired {
        requests,
        request_state,
    })
}

/// Modern upstream → legacy client, step 2: an input request becomes a server-to-client
/// JSON-RPC request (bytes) with the gateway-chosen `id`, for the legacy call's SSE stream.
/// `session_caps` are the legacy session's capability bits: a request the client did not
/// declare is refused with -32021 (the gateway then fails the call instead). A URL-mode
/// elicitation gets the `elicitationId` that 2025-11-25 requires (the input key).
pub fn input_to_legacy_request(
    req: &InputRequest,
    id: &Id,
    session_caps: u8,
) -> Result<Vec<u8>, Refusal> {
    super::envelope::require(session_caps, req.required_caps())?;
    let mut params = req.params.clone();
    if req.method == InputMethod::Elicit
        && params.get("mode").and_then(Value::as_str) == Some("url")
    {
        if let Value::Object(p) = &mut params {
            p.entry("elicitationId").or_insert_with(|| json!(req.key));
        }
    }
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"method\":\"");
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.extend_from_slice(b"\",\"params\":");
    out.extend_from_slice(params.to_string().as_bytes());
    out.push(b'}');
    Ok(out)
}

/// Legacy client → modern upstream: the legacy client's JSON-RPC response (the whole message)
/// to a relayed request of `method` becomes the `inputResponses` value. An error response
/// becomes [`BridgeError::ClientError`] (the gateway decides whether to fail the call).
pub fn legacy_response_to_input(
    method: InputMethod,
    response: &Value,
) -> Result<Value, BridgeError> {
    if let Some(err) = response.get("error") {
        return Err(BridgeError::ClientError {
            code: err
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(jsonrpc::codes::INTERNAL_ERROR),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        });
    }
    let result = response.get("result").ok_or(BridgeError::NotARequest)?;
    check_response(method, result)?;
    Ok(result.clone())
}

/// The params of the retried upstream call: the original params with `inputResponses` and
/// `requestState` set (replacing those of an earlier round; `requestState` removed when the
/// upstream sent none, as the spec requires).
pub fn retry_params(
    original: &Value,
    responses: Map<String, Value>,
    request_state: Option<&str>,
) -> Value {
    let mut p = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    p.insert("inputResponses".into(), Value::Object(responses));
    match request_state {
        Some(s) => {
            p.insert("requestState".into(), json!(s));
        }
        None => {
            p.remove("requestState");
        }
    }
    Value::Object(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elicit_form(key: &str) -> InputRequest {
        InputRequest {
            key: key.into(),
            method: InputMethod::Elicit,
            params: json!({"mode": "form", "message": "Your GitHub login?",
                "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}),
        }
    }

    fn sample(key: &str) -> InputRequest {
        InputRequest {
            key: key.into(),
            method: InputMethod::Sample,
            params: json!({"messages": [{"role": "user", "content": {"type": "text", "text": "Capital of France?"}}], "maxTokens": 100}),
        }
    }

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn input_required_result_shape() {
        let all = caps::ELICITATION | caps::ELICITATION_FORM | caps::SAMPLING;
        let out = input_required_result(
            &[elicit_form("github_login"), sample("capital")],
            Some("STATE"),
            all,
        )
        .unwrap();
        let v = parse(&out);
        assert_eq!(v["resultType"], json!("input_required"));
        assert_eq!(v["requestState"], json!("STATE"));
        assert_eq!(
            v["inputRequests"]["github_login"]["method"],
            json!("elicitation/create")
        );
        assert_eq!(
            v["inputRequests"]["capital"]["params"]["maxTokens"],
            json!(100)
        );
        assert!(v.get("ttlMs").is_none() && v.get("cacheScope").is_none());
        // State only (e.g. load shedding) and requests only are both valid.
        assert_eq!(
            parse(&input_required_result(&[], Some("s"), 0).unwrap()),
            json!({"resultType": "input_required", "requestState": "s"})
        );
        assert!(
            parse(&input_required_result(&[sample("k")], None, caps::SAMPLING).unwrap())
                .get("requestState")
                .is_none()
        );
    }

    #[test]
    fn input_required_respects_declared_capabilities() {
        let e = input_required_result(
            &[sample("k")],
            None,
            caps::ELICITATION | caps::ELICITATION_FORM,
        )
        .unwrap_err();
        assert_eq!((e.http_status, e.code), (400, -32021));
        assert_eq!(
            e.data.unwrap()["requiredCapabilities"],
            json!({"sampling": {}})
        );
        let url = InputRequest::elicit_url("link", "Link your account", "https://gw.test/link/abc");
        assert_eq!(url.required_caps(), caps::ELICITATION_URL);
        let form_only = caps::ELICITATION | caps::ELICITATION_FORM;
        assert_eq!(
            input_required_result(std::slice::from_ref(&url), None, form_only)
                .unwrap_err()
                .code,
            -32021
        );
        assert!(
            input_required_result(&[url], None, caps::ELICITATION | caps::ELICITATION_URL).is_ok()
        );
        // Sampling with tools needs sampling.tools; context inclusion needs sampling.context.
        let mut tools = sample("t");
        tools.params["tools"] = json!([]);
        assert_eq!(tools.required_caps(), caps::SAMPLING | caps::SAMPLING_TOOLS);
        let mut ctx = sample("c");
        ctx.params["includeContext"] = json!("thisServer");
        assert_eq!(ctx.required_caps(), caps::SAMPLING | caps::SAMPLING_CONTEXT);
        ctx.params["includeContext"] = json!("none");
        assert_eq!(ctx.required_caps(), caps::SAMPLING);
        let roots = InputRequest {
            key: "r".into(),
            method: InputMethod::ListRoots,
            params: json!({}),
        };
        assert_eq!(roots.required_caps(), caps::ROOTS);
        // Elicitation without a mode is form mode.
        let mut no_mode = elicit_form("f");
        no_mode.params.as_object_mut().unwrap().remove("mode");
        assert_eq!(no_mode.required_caps(), caps::ELICITATION_FORM);
    }

    #[test]
    fn input_required_refuses_gateway_mistakes() {
        assert_eq!(
            input_required_result(&[], None, 0xff).unwrap_err().code,
            -32603
        );
        assert_eq!(
            input_required_result(&[sample("a"), sample("a")], None, 0xff)
                .unwrap_err()
                .code,
            -32603
        );
        assert_eq!(
            input_required_result(&[sample("")], None, 0xff)
                .unwrap_err()
                .code,
            -32603
        );
        let many: Vec<InputRequest> = (0..=MAX_INPUT_REQUESTS)
            .map(|i| sample(&format!("k{i}")))
            .collect();
        assert_eq!(
            input_required_result(&many, None, 0xff).unwrap_err().code,
            -32603
        );
        assert!(allows_input_required("tools/call"));
        assert!(allows_input_required("prompts/get"));
        assert!(allows_input_required("resources/read"));
        assert!(!allows_input_required("tools/list"));
        assert!(!allows_input_required("prompts/list"));
    }

    #[test]
    fn matching_input_responses() {
        let responses = json!({
            "github_login": {"action": "accept", "content": {"name": "octocat"}},
            "unknown_extra_key": {"action": "accept", "content": {"foo": "bar"}},
            "capital": {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m", "stopReason": "endTurn"}
        });
        let r = responses.as_object().unwrap();
        let expected = [
            ("github_login", InputMethod::Elicit),
            ("capital", InputMethod::Sample),
            ("roots", InputMethod::ListRoots),
        ];
        let m = match_input_responses(&expected, Some(r)).unwrap();
        assert_eq!(
            m.answered.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["github_login", "capital"]
        );
        assert_eq!(m.missing, ["roots"]);
        assert_eq!(m.answered[0].1["content"]["name"], json!("octocat"));

        let none = match_input_responses(&expected, None).unwrap();
        assert_eq!(none.missing.len(), 3);
        assert!(none.answered.is_empty());

        for bad in [
            json!({"github_login": 12345}),
            json!({"github_login": {"action": "maybe"}}),
            json!({"github_login": {"action": "accept", "content": "x"}}),
        ] {
            let e = match_input_responses(&expected[..1], bad.as_object()).unwrap_err();
            assert_eq!((e.http_status, e.code), (400, -32602), "{bad}");
            assert!(e.message.contains("github_login"));
        }
    }

    #[test]
    fn response_shapes() {
        assert!(check_response(InputMethod::Elicit, &json!({"action": "decline"})).is_ok());
        assert!(
            check_response(InputMethod::Elicit, &json!({"action": "accept"})).is_ok(),
            "URL mode has no content"
        );
        assert!(check_response(
            InputMethod::Sample,
            &json!({"role": "assistant", "content": [], "model": "m"})
        )
        .is_ok());
        assert!(check_response(
            InputMethod::Sample,
            &json!({"role": "assistant", "content": "text", "model": "m"})
        )
        .is_err());
        assert!(check_response(
            InputMethod::Sample,
            &json!({"role": "assistant", "content": {}})
        )
        .is_err());
        assert!(check_response(
            InputMethod::ListRoots,
            &json!({"roots": [{"uri": "file:///a", "name": "a"}]})
        )
        .is_ok());
        assert!(
            check_response(InputMethod::ListRoots, &json!({"roots": [{"name": "a"}]})).is_err()
        );
        assert!(check_response(InputMethod::ListRoots, &json!({"roots": {}})).is_err());
        assert!(check_response(InputMethod::ListRoots, &json!([])).is_err());
    }

    #[test]
    fn legacy_upstream_request_becomes_an_input_request_and_back() {
        // A legacy upstream elicits mid-call (2025-11-25 URL mode, with its elicitationId).
        let upstream = json!({"jsonrpc": "2.0", "id": 42, "method": "elicitation/create",
            "params": {"mode": "url", "message": "Authorize", "url": "https://up.test/a", "elicitationId": "e-1", "task": {"ttl": 1}}});
        let req = legacy_request_to_input("u42", &upstream).unwrap();
        assert_eq!(req.method, InputMethod::Elicit);
        assert_eq!(
            req.params,
            json!({"mode": "url", "message": "Authorize", "url": "https://up.test/a"})
        );
        let out = input_required_result(
            &[req],
            Some("sealed"),
            caps::ELICITATION | caps::ELICITATION_URL,
        )
        .unwrap();
        assert_eq!(
            parse(&out)["inputRequests"]["u42"]["params"]["url"],
            json!("https://up.test/a")
        );

        // The modern client's answer goes back to the upstream as its JSON-RPC response.
        let answer = json!({"action": "accept", "resultType": "complete"});
        let back = parse(&input_response_to_legacy(&json!(42), &answer));
        assert_eq!(
            back,
            json!({"jsonrpc": "2.0", "id": 42, "result": {"action": "accept"}})
        );
        let back = parse(&input_response_to_legacy(
            &json!("s-1"),
            &json!({"roots": []}),
        ));
        assert_eq!(
            back,
            json!({"jsonrpc": "2.0", "id": "s-1", "result": {"roots": []}})
        );

        // roots/list without params, sampling passes through.
        let r = legacy_request_to_input(
            "r",
            &json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}),
        )
        .unwrap();
        assert_eq!(
            (r.method, r.params.clone()),
            (InputMethod::ListRoots, json!({}))
        );
        let s = legacy_request_to_input(
            "s",
            &json!({"jsonrpc": "2.0", "id": 2, "method": "sampling/createMessage",
            "params": {"messages": [], "maxTokens": 5}}),
        )
        .unwrap();
        assert_eq!(s.params["maxTokens"], json!(5));
    }

    #[test]
    fn legacy_upstream_requests_that_cannot_be_relayed() {
        assert_eq!(
            legacy_request_to_input("k", &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
            Err(BridgeError::UnsupportedMethod("ping".into()))
        );
        assert_eq!(
            legacy_request_to_input("k", &json!({"jsonrpc": "2.0", "method": "roots/list"})),
            Err(BridgeError::NotARequest)
        );
        assert_eq!(
            legacy_request_to_input("k", &json!([1])),
            Err(BridgeError::NotARequest)
        );
        assert_eq!(
            legacy_request_to_input(
                "k",
                &json!({"id": 1, "method": "roots/list", "params": [1]})
            ),
            Err(BridgeError::ParamsNotObject)
        );
        assert_eq!(
            legacy_request_to_input("", &json!({"id": 1, "method": "roots/list"})),
            Err(BridgeError::Limits)
        );
    }

    #[test]
    fn modern_upstream_input_required_becomes_legacy_requests_and_back() {
        let upstream = json!({"resultType": "input_required",
            "inputRequests": {
                "login": {"method": "elicitation/create", "params": {"mode": "url", "message": "Link", "url": "https://up.test/l"}},
                "name": {"method": "elicitation/create", "params": {"message": "Name?", "requestedSchema": {"type": "object", "properties": {}}}}
            },
            "requestState": "upstream-opaque"});
        let parsed = parse_input_required(&upstream).unwrap();
        assert_eq!(parsed.request_state.as_deref(), Some("upstream-opaque"));
        assert_eq!(parsed.requests.len(), 2);
        let login = parsed.requests.iter().find(|r| r.key == "login").unwrap();
        let session_caps = caps::ELICITATION | caps::ELICITATION_URL | caps::ELICITATION_FORM;
        let msg = parse(&input_to_legacy_request(login, &json!("gw-1"), session_caps).unwrap());
        assert_eq!(
            msg,
            json!({"jsonrpc": "2.0", "id": "gw-1", "method": "elicitation/create",
            "params": {"mode": "url", "message": "Link", "url": "https://up.test/l", "elicitationId": "login"}})
        );
        let name = parsed.requests.iter().find(|r| r.key == "name").unwrap();
        let msg = parse(&input_to_legacy_request(name, &json!(5), session_caps).unwrap());
        assert!(msg["params"].get("elicitationId").is_none());
        // A session that did not declare URL elicitation cannot be asked.
        let e =
            input_to_legacy_request(login, &json!(1), caps::ELICITATION | caps::ELICITATION_FORM)
                .unwrap_err();
        assert_eq!(e.code, -32021);

        // The legacy client's answers become the retried upstream call's inputResponses.
        let a = legacy_response_to_input(
            InputMethod::Elicit,
            &json!({"jsonrpc": "2.0", "id": "gw-1", "result": {"action": "accept"}}),
        )
        .unwrap();
        assert_eq!(a, json!({"action": "accept"}));
        let declined = legacy_response_to_input(
            InputMethod::Elicit,
            &json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32601, "message": "no elicitation"}}),
        );
        assert_eq!(
            declined,
            Err(BridgeError::ClientError {
                code: -32601,
                message: "no elicitation".into()
            })
        );
        assert!(matches!(
            legacy_response_to_input(
                InputMethod::Elicit,
                &json!({"id": 5, "result": {"action": "later"}})
            ),
            Err(BridgeError::InvalidResponse { .. })
        ));
        assert_eq!(
            legacy_response_to_input(InputMethod::ListRoots, &json!({"id": 5})),
            Err(BridgeError::NotARequest)
        );

        let mut responses = Map::new();
        responses.insert("login".into(), a);
        let original = json!({"name": "deploy", "arguments": {"x": 1}, "_meta": {"progressToken": 1},
            "inputResponses": {"old": {}}, "requestState": "older"});
        let retry = retry_params(
            &original,
            responses.clone(),
            parsed.request_state.as_deref(),
        );
        assert_eq!(
            retry["inputResponses"],
            json!({"login": {"action": "accept"}})
        );
        assert_eq!(retry["requestState"], json!("upstream-opaque"));
        assert_eq!(retry["arguments"], json!({"x": 1}));
        assert_eq!(retry["_meta"], json!({"progressToken": 1}));
        let retry = retry_params(&original, responses, None);
        assert!(retry.get("requestState").is_none());
    }

    #[test]
    fn upstream_results_that_are_not_input_required() {
        assert_eq!(
            parse_input_required(&json!({"content": []})),
            Err(BridgeError::NotInputRequired)
        );
        assert_eq!(
            parse_input_required(&json!({"resultType": "complete"})),
            Err(BridgeError::NotInputRequired)
        );
        assert_eq!(
            parse_input_required(&json!({"resultType": "input_required"})),
            Err(BridgeError::Empty)
        );
        assert_eq!(
            parse_input_required(&json!({"resultType": "input_required", "requestState": 3})),
            Err(BridgeError::NotInputRequired)
        );
        assert_eq!(
            parse_input_required(&json!({"resultType": "input_required", "inputRequests": []})),
            Err(BridgeError::NotInputRequired)
        );
        assert_eq!(
            parse_input_required(
                &json!({"resultType": "input_required", "inputRequests": {"k": {"method": "tools/call"}}})
            ),
            Err(BridgeError::UnsupportedMethod("tools/call".into()))
        );
        assert_eq!(
            parse_input_required(
                &json!({"resultType": "input_required", "inputRequests": {"k": {"params": {}}}})
            ),
            Err(BridgeError::NotARequest)
        );
        assert_eq!(
            parse_input_required(
                &json!({"resultType": "input_required", "inputRequests": {"k": {"method": "roots/list", "params": 1}}})
            ),
            Err(BridgeError::ParamsNotObject)
        );
        let many: Map<String, Value> = (0..=MAX_INPUT_REQUESTS)
            .map(|i| (format!("k{i}"), json!({"method": "roots/list"})))
            .collect();
        assert_eq!(
            parse_input_required(&json!({"resultType": "input_required", "inputRequests": many})),
            Err(BridgeError::Limits)
        );
        let state_only =
            parse_input_required(&json!({"resultType": "input_required", "requestState": "s"}))
                .unwrap();
        assert!(state_only.requests.is_empty());
        for m in [
            InputMethod::Elicit,
            InputMethod::Sample,
            InputMethod::ListRoots,
        ] {
            assert_eq!(InputMethod::parse(m.as_str()), Some(m));
        }
    }
}
