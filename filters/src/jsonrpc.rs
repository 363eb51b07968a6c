//! JSON-RPC 2.0 framing for MCP: parse and validate one POST body, build answers.
//!
//! Incoming bodies are parsed once into [`Incoming`]; `params` stay a `serde_json::Value` so
//! unknown fields survive untouched. Answers are built as bytes directly, because most of
//! them are written straight to the socket.

use serde::Serialize;
use serde_json::{Map, Value};

/// JSON-RPC and MCP error codes used by the gateway.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (also: unknown tool, bad cursor).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error, and the code Cortex uses for backend failures.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Session missing or expired (Cortex's code for session errors).
    pub const SESSION_ERROR: i64 = -32001;
    /// Request refused before dispatch (origin, rate limit, auth).
    pub const REQUEST_REFUSED: i64 = -32000;
    /// MCP: resource not found (session-based versions; 2026-07-28 uses -32602 instead).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// MCP 2026-07-28 `HeaderMismatch`: a mirrored HTTP header is missing, malformed or
    /// disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28 `MissingRequiredClientCapability`: the request needs a capability the
    /// client did not declare in `_meta`.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// MCP 2026-07-28 `UnsupportedProtocolVersion`: the request's version is not served.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// The most messages a 2025-03-26 batch may carry; bounds the work one POST can cause.
pub const MAX_BATCH: usize = 64;

/// A JSON-RPC id: a string or a number (kept as its JSON form so it is echoed byte-exact).
pub type Id = Value;

/// One parsed JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that expects an answer.
    Request {
        /// The id to echo.
        id: Id,
        /// The method name.
        method: String,
        /// The params object, when present.
        params: Option<Value>,
    },
    /// A one-way message.
    Notification {
        /// The method name.
        method: String,
        /// The params object, when present.
        params: Option<Value>,
    },
    /// A client's answer to a server request (accepted and acknowledged with 202).
    Response {
        /// The id being answered.
        id: Id,
        /// `Ok(result)` or `Err(error object)`, routed back to the server that asked.
        outcome: Result<Value, Value>,
    },
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }
}

/// A whole POST body.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A single message (the only form from 2025-06-18 on).
    Single(Message),
    /// A 2025-03-26 batch; every element was valid.
    Batch(Vec<Message>),
}

/// A JSON-RPC error the gateway answers with: why a body could not be turned into messages,
/// or why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// A message a person can act on.
    pub message: String,
    /// Structured details (`error.data`).
    pub data: Option<Value>,
    /// The request id when it could be recovered (so the error can be correlated).
    pub id: Option<Id>,
}

impl RpcError {
    /// Builds an error with no id and no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
            id: None,
        }
    }

    /// `-32602 Invalid params` with this message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        RpcError::new(codes::INVALID_PARAMS, message)
    }

    /// `-32603 Internal error` with this message.
    pub fn internal(message: impl Into<String>) -> Self {
        RpcError::new(codes::INTERNAL_ERROR, message)
    }

    /// The same error with `error.data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The JSON-RPC response carrying this error for request `id`.
    pub fn to_response(&self, id: Option<&Id>) -> Vec<u8> {
        error(
            id.or(self.id.as_ref()),
            self.code,
            &self.message,
            self.data.as_ref(),
        )
    }
}

/// Parses one POST body. Batches (arrays) are returned as [`Incoming::Batch`]; whether the
/// negotiated version permits them is the caller's decision.
pub fn parse_body(body: &[u8]) -> Result<Incoming, RpcError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        RpcError::new(
            codes::PARSE_ERROR,
            format!("Parse error: body is not valid JSON ({e})"),
        )
    })?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::new(
                    codes::INVALID_REQUEST,
                    "Invalid Request: empty batch",
                ));
            }
            if items.len() > MAX_BATCH {
                return Err(RpcError::new(
                    codes::INVALID_REQUEST,
                    format!(
                        "Invalid Request: batch of {} messages exceeds the limit of {MAX_BATCH}",
                        items.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(parse_message(item)?);
            }
            Ok(Incoming::Batch(out))
        }
        other => parse_message(other).map(Incoming::Single),
    }
}

/// Validates one JSON value as a JSON-RPC 2.0 message.
pub fn parse_message(value: Value) -> Result<Message, RpcError> {
    let Value::Object(mut obj) = value else {
        return Err(RpcError::new(
            codes::INVALID_REQUEST,
            "Invalid Request: a JSON-RPC message must be a JSON object",
        ));
    };
    let id = obj.remove("id");
    let fail = |msg: String, id: &Option<Value>| RpcError {
        data: None,
        code: codes::INVALID_REQUEST,
        message: msg,
        id: id.clone().filter(valid_id),
    };
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => {
            return Err(fail(
                "Invalid Request: \"jsonrpc\" must be \"2.0\"".into(),
                &id,
            ))
        }
    }
    if let Some(id) = &id {
        if !valid_id(id) {
            return Err(fail(
                "Invalid Request: \"id\" must be a string or an integer (null is not allowed)"
                    .into(),
                &None,
            ));
        }
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            if method.is_empty() {
                return Err(fail("Invalid Request: \"method\" is empty".into(), &id));
            }
            let params = obj.remove("params");
            if let Some(p) = &params {
                if !p.is_object() && !p.is_null() {
                    return Err(RpcError {
                        data: None,
                        code: codes::INVALID_PARAMS,
                        message: "Invalid params: \"params\" must be an object".into(),
                        id,
                    });
                }
            }
            let params = params.filter(|p| !p.is_null());
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(fail(
            "Invalid Request: \"method\" must be a string".into(),
            &id,
        )),
        None => match id {
            Some(id) if obj.contains_key("result") || obj.contains_key("error") => {
                let outcome = match obj.remove("result") {
                    Some(result) => Ok(result),
                    None => Err(obj.remove("error").unwrap_or(Value::Null)),
                };
                Ok(Message::Response { id, outcome })
            }
            _ => Err(fail(
                "Invalid Request: a message needs a \"method\" (request or notification) or a \"result\"/\"error\" (response)".into(),
                &id,
            )),
        },
    }
}

fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// Serializes a success answer `{"jsonrpc":"2.0","id":…,"result":…}`.
pub fn success<T: Serialize + ?Sized>(id: &Id, result: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    write_json(&mut out, id);
    out.extend_from_slice(b",\"result\":");
    write_json(&mut out, result);
    out.push(b'}');
    out
}

/// Serializes a success answer around an already-serialized result (e.g. a cached tools/list).
pub fn success_raw(id: &Id, result_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(result_json.len() + 48);
    success_head_into(&mut out, id);
    out.extend_from_slice(result_json);
    out.push(b'}');
    out
}

/// The start of a success answer, up to its result: `{"jsonrpc":"2.0","id":…,"result":`.
/// Followed by a [`success_end`] it is exactly [`success_raw`]: a result serialized once
/// (a cached list page) is answered as these few bytes plus the shared end, never copied.
pub fn success_head(id: &Id) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    success_head_into(&mut out, id);
    out
}

fn success_head_into(out: &mut Vec<u8>, id: &Id) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    write_json(out, id);
    out.extend_from_slice(b",\"result\":");
}

/// The end of a success answer after [`success_head`]: the serialized result and the
/// envelope's closing brace.
pub fn success_end(result_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(result_json.len() + 1);
    out.extend_from_slice(result_json);
    out.push(b'}');
    out
}

/// Serializes an error answer. `id` is `null` when the request id is unknown.
pub fn error(id: Option<&Id>, code: i64, message: &str, data: Option<&Value>) -> Vec<u8> {
    let mut err = Map::new();
    err.insert("code".into(), Value::from(code));
    err.insert("message".into(), Value::from(message));
    if let Some(d) = data {
        err.insert("data".into(), d.clone());
    }
    let mut out = Vec::with_capacity(96 + message.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    match id {
        Some(id) => write_json(&mut out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"error\":");
    write_json(&mut out, &err);
    out.push(b'}');
    out
}

/// Serializes a notification `{"jsonrpc":"2.0","method":…,"params":…}`.
pub fn notification(method: &str, params: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + method.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":");
    write_json(&mut out, method);
    if let Some(p) = params {
        out.extend_from_slice(b",\"params\":");
        write_json(&mut out, p);
    }
    out.push(b'}');
    out
}

fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing plain data into a Vec cannot fail (no I/O, string keys only).
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_requests_notifications_and_responses() {
        let r = parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert_eq!(
            r,
            Incoming::Single(Message::Request {
                id: json!(1),
                method: "ping".into(),
                params: None
            })
        );
        let n = parse_body(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n, Incoming::Single(Message::Notification { .. })));
        let resp = parse_body(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(
            matches!(resp, Incoming::Single(Message::Response { ref id, .. }) if id == &json!("a"))
        );
    }

    #[test]
    fn rejects_malformed_bodies_with_precise_codes() {
        assert_eq!(
            parse_body(b"{not json").unwrap_err().code,
            codes::PARSE_ERROR
        );
        assert_eq!(parse_body(b"42").unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(
            parse_body(br#"{"id":1,"method":"ping"}"#).unwrap_err().code,
            codes::INVALID_REQUEST
        );
        let e = parse_body(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REQUEST);
        assert!(e.message.contains("null"));
        let e = parse_body(br#"{"jsonrpc":"2.0","id":7,"method":3}"#).unwrap_err();
        assert_eq!(e.id, Some(json!(7)));
        let e = parse_body(br#"{"jsonrpc":"2.0","id":7,"method":"x","params":[1]}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAMS);
        assert_eq!(parse_body(b"[]").unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(
            parse_body(br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#)
                .unwrap_err()
                .code,
            codes::INVALID_REQUEST
        );
    }

    #[test]
    fn batches_are_parsed_and_bounded() {
        let b = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#,
        )
        .unwrap();
        assert!(matches!(b, Incoming::Batch(ref v) if v.len() == 2));
        let big = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"n"}"#; MAX_BATCH + 1].join(",")
        );
        assert!(parse_body(big.as_bytes()).is_err());
    }

    #[test]
    fn answers_are_valid_json() {
        let s: Value = serde_json::from_slice(&success(&json!("x"), &json!({"a":1}))).unwrap();
        assert_eq!(s, json!({"jsonrpc":"2.0","id":"x","result":{"a":1}}));
        let e: Value =
            serde_json::from_slice(&error(None, -32601, "nope \"q\"", Some(&json!({"m":1}))))
                .unwrap();
        assert_eq!(
            e,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"nope \"q\"","data":{"m":1}}})
        );
        for id in [json!(3), json!("a\"b"), json!(-1)] {
            let page = b"{\"tools\":[]}";
            let whole = [success_head(&id), success_end(page)].concat();
            assert_eq!(whole, success_raw(&id, page));
        }
        let r: Value = serde_json::from_slice(&success_raw(&json!(3), b"{\"tools\":[]}")).unwrap();
        assert_eq!(r["result"]["tools"], json!([]));
        let n: Value =
            serde_json::from_slice(&notification("notifications/tools/list_changed", None))
                .unwrap();
        assert_eq!(
            n,
            json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})
        );
    }
}
