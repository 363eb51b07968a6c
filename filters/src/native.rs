//! The decisions of native MCP backends (`kind: mcp` over streamable HTTP, `kind: stdio`):
//! the gateway is an MCP client of the upstream server and relays what happens during a call.
//!
//! Pure rules, no I/O: how an upstream message is classified, which call a notification or a
//! server request belongs to, how progress tokens are remapped so that calls sharing one
//! upstream connection never see each other's progress, the ids the gateway gives relayed
//! server requests, logging levels, scopes from configuration, and list pagination. The
//! plumbing (pipes, HTTP, child processes) is in `src/upstream/native/`.

use serde_json::{json, Map, Value};

/// The most pages the gateway follows for one upstream list (a server whose cursors never
/// end cannot hold discovery forever).
pub const MAX_PAGES: usize = 100;

/// The protocol versions the gateway offers upstream, newest first.
pub const UPSTREAM_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// One message received from an upstream server.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    /// The answer to one of the gateway's requests.
    Response {
        /// The gateway's id.
        id: Value,
        /// `Ok(result)` or `Err(error object)`.
        outcome: Result<Value, Value>,
    },
    /// A request of the server (sampling, elicitation, roots, ping).
    Request {
        /// The server's id (answered with the same id).
        id: Value,
        /// Its method.
        method: String,
        /// Its params (`{}` when absent).
        params: Value,
    },
    /// A notification of the server.
    Notification {
        /// Its method.
        method: String,
        /// Its params (`{}` when absent).
        params: Value,
    },
}

/// Classifies one upstream JSON value; `None` for anything that is not a JSON-RPC message.
pub fn classify(v: Value) -> Option<Upstream> {
    let Value::Object(mut obj) = v else {
        return None;
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return None;
    }
    let id = obj.remove("id").filter(|i| i.is_string() || i.is_number());
    let params = match obj.remove("params") {
        Some(Value::Object(p)) => Value::Object(p),
        _ => Value::Object(Map::new()),
    };
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Some(Upstream::Request { id, method, params }),
        (Some(Value::String(method)), None) => Some(Upstream::Notification { method, params }),
        (None, Some(id)) => {
            let outcome = match obj.remove("result") {
                Some(r) => Ok(r),
                None => Err(obj.remove("error")?),
            };
            Some(Upstream::Response { id, outcome })
        }
        _ => None,
    }
}

/// A JSON-RPC request of the gateway to the upstream.
pub fn request(id: u64, method: &str, params: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .unwrap_or_default()
}

/// A JSON-RPC notification of the gateway to the upstream.
pub fn notification(method: &str, params: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
        .unwrap_or_default()
}

/// The answer to a server request, with the server's own id.
pub fn response(id: &Value, outcome: &Result<Value, Value>) -> Vec<u8> {
    let v = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A JSON-RPC error object.
pub fn error_object(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// `initialize` params the gateway sends upstream: the newest version it speaks, and the
/// client capabilities it relays to its own callers (sampling, elicitation with URL mode,
/// roots).
pub fn initialize_params(client_version: &str) -> Value {
    json!({
        "protocolVersion": UPSTREAM_VERSIONS[0],
        "capabilities": {
            "sampling": {},
            "elicitation": {"form": {}, "url": {}},
            "roots": {"listChanged": true},
        },
        "clientInfo": {"name": "cortex-gateway", "version": client_version},
    })
}

/// What an upstream's `initialize` result says, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Initialized {
    /// The version the server chose (one the gateway offered).
    pub version: String,
    /// `capabilities.resources.subscribe`.
    pub subscribe: bool,
    /// Which optional lists it has: prompts, resources (with templates), completions.
    pub prompts: bool,
    /// `capabilities.resources`.
    pub resources: bool,
    /// `capabilities.completions`.
    pub completions: bool,
}

/// Checks an upstream's `initialize` result.
pub fn initialized(result: &Value) -> Result<Initialized, String> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or("initialize result without protocolVersion")?;
    if !UPSTREAM_VERSIONS.contains(&version) {
        return Err(format!(
            "the server chose protocol version {version}, which the gateway does not speak ({})",
            UPSTREAM_VERSIONS.join(", ")
        ));
    }
    let caps = result.get("capabilities").cloned().unwrap_or(Value::Null);
    Ok(Initialized {
        version: version.to_string(),
        subscribe: caps
            .pointer("/resources/subscribe")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        prompts: caps.get("prompts").is_some(),
        resources: caps.get("resources").is_some(),
        completions: caps.get("completions").is_some(),
    })
}

/// The `nextCursor` of a list page, when there is a next page.
pub fn next_cursor(result: &Value) -> Option<String> {
    result
        .get("nextCursor")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Params asking for the page after `cursor`.
pub fn page_params(cursor: Option<&str>) -> Value {
    match cursor {
        Some(c) => json!({ "cursor": c }),
        None => json!({}),
    }
}

/// The progress token the gateway sends upstream for its call number `call`: unique on the
/// connection, so a progress notification names exactly one call even when callers share
/// one upstream session or one child process.
pub fn upstream_progress_token(call: u64) -> String {
    format!("cortex-{call}")
}

/// Sets `_meta.progressToken` of request params (an object).
pub fn set_progress_token(params: &mut Value, token: &str) {
    if let Value::Object(p) = params {
        let meta = p
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(m) = meta {
            m.insert("progressToken".into(), Value::String(token.into()));
        }
    }
}

/// The caller's `progressToken` of a request's `_meta`, when it is a string or a number.
pub fn progress_token(meta: &Value) -> Option<&Value> {
    meta.get("progressToken")
        .filter(|t| t.is_string() || t.is_number())
}

/// Rewrites an upstream progress notification's params for the caller: the caller's own
/// token replaces the gateway's.
pub fn restore_progress_token(params: &mut Value, caller_token: &Value) {
    if let Value::Object(p) = params {
        p.insert("progressToken".into(), caller_token.clone());
    }
}

/// A call of the gateway in flight on one upstream connection, as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The gateway's key for the call.
    pub key: u64,
    /// The progress token it sent upstream, if the caller asked for progress.
    pub progress_token: Option<String>,
}

/// Where an upstream message that is not a response goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// To the caller of this call (the key of [`InFlight`]).
    Call(u64),
    /// The server's list of tools, prompts or resources changed: discover it again.
    ListChanged,
    /// A resource changed: tell the callers subscribed to it.
    ResourceUpdated(String),
    /// Answered by the gateway itself (`ping`).
    Gateway,
    /// Nobody can be told for sure: dropped (a server request is answered with an error).
    Nobody,
}

/// Routes a notification or server request received on a connection where `in_flight` are
/// the gateway's calls. `on_call_stream` is true when the message came on the stream of one
/// call (a streamable HTTP POST answered as SSE): it belongs to that call by construction.
/// On a shared pipe (stdio), a progress notification belongs to the call whose token it
/// carries; other call-time messages (log messages, server requests) carry no call of their
/// own, so they go to the one call in flight, and to nobody when several are (never to a
/// caller they may not belong to).
pub fn route(
    method: &str,
    params: &Value,
    in_flight: &[InFlight],
    on_call_stream: Option<u64>,
) -> Delivery {
    match method {
        "notifications/tools/list_changed"
        | "notifications/prompts/list_changed"
        | "notifications/resources/list_changed" => return Delivery::ListChanged,
        "notifications/resources/updated" => {
            return match params.get("uri").and_then(Value::as_str) {
                Some(uri) => Delivery::ResourceUpdated(uri.to_string()),
                None => Delivery::Nobody,
            }
        }
        "ping" => return Delivery::Gateway,
        _ => {}
    }
    if let Some(key) = on_call_stream {
        return Delivery::Call(key);
    }
    if method == "notifications/progress" {
        let token = params.get("progressToken").and_then(Value::as_str);
        return in_flight
            .iter()
            .find(|c| c.progress_token.is_some() && c.progress_token.as_deref() == token)
            .map_or(Delivery::Nobody, |c| Delivery::Call(c.key));
    }
    match in_flight {
        [only] => Delivery::Call(only.key),
        _ => Delivery::Nobody,
    }
}

/// The RFC 5424 levels of `logging/setLevel`, least severe first.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Whether a `notifications/message` of `level` passes a caller's minimum level (unknown
/// levels pass: the caller decides).
pub fn level_passes(minimum: Option<&str>, params: &Value) -> bool {
    let rank = |l: &str| LOG_LEVELS.iter().position(|x| *x == l);
    let level = params.get("level").and_then(Value::as_str);
    match (minimum.and_then(rank), level.and_then(rank)) {
        (Some(min), Some(l)) => l >= min,
        _ => true,
    }
}

/// Scopes from configuration on the entries of one upstream list (`items`, the list's
/// array): an entry named in `overrides` (by `name`, or `uri` for resources) takes that scope,
/// every other one the backend's `default`. Whatever `scope` the server put on an entry is
/// replaced: a server never chooses its own scopes.
pub fn apply_scopes(
    items: &mut [Value],
    key_field: &str,
    default: Option<&str>,
    overrides: &std::collections::BTreeMap<String, String>,
) {
    for item in items.iter_mut() {
        let Value::Object(obj) = item else { continue };
        let scope = obj
            .get(key_field)
            .and_then(Value::as_str)
            .and_then(|k| overrides.get(k))
            .map(String::as_str)
            .or(default);
        match scope {
            Some(s) => {
                obj.insert("scope".into(), Value::String(s.to_string()));
            }
            None => {
                obj.remove("scope");
            }
        }
    }
}

/// The id the gateway gives a server request it relays to a caller: `cortex-sr-` and a
/// random part, so a caller cannot guess another caller's pending request.
pub fn relayed_request_id(random: u128) -> String {
    format!("cortex-sr-{random:032x}")
}

/// A server request as relayed to the caller, with the gateway's id.
pub fn relayed_request(id: &str, method: &str, params: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .unwrap_or_default()
}

/// A notification as relayed to the caller.
pub fn relayed_notification(method: &str, params: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
        .unwrap_or_default()
}

/// The MCP method and params of a gateway operation on a native backend.
pub fn call_tool_params(name: &str, arguments: Option<&Value>, meta: Option<&Value>) -> Value {
    let mut p = json!({ "name": name });
    if let Some(a) = arguments {
        p["arguments"] = a.clone();
    }
    if let Some(m) = meta.filter(|m| m.is_object()) {
        p["_meta"] = strip_progress(m);
    }
    p
}

/// The caller's `_meta` as an upstream receives it: without its progress token (the gateway
/// sets its own) and without the 2026-07-28 envelope (`io.modelcontextprotocol/protocolVersion`,
/// `clientCapabilities`, `clientInfo`, `logLevel`): those describe the caller's request to the
/// gateway, not the gateway's request upstream, and a session-based server refuses a request
/// that carries them.
fn strip_progress(meta: &Value) -> Value {
    let mut m = meta.clone();
    if let Value::Object(o) = &mut m {
        o.remove("progressToken");
        o.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    }
    m
}

/// Reads a server-sent event stream piece by piece and yields the data of each event (the
/// JSON-RPC messages of a streamable HTTP reply), following the reading rules of the SSE
/// specification: lines end at CRLF, LF or a lone CR (also when a CRLF is split between two
/// reads); a `data` line without a colon adds an empty line of data; comments, `id:`,
/// `event:` and `retry:` lines are skipped. An event or a line larger than the limit is an
/// error (the stream is then abandoned), so an upstream cannot grow the gateway's memory
/// without bound.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last byte read was a CR: an LF right after it ends no further line.
    after_cr: bool,
    max: usize,
}

impl SseDecoder {
    /// A decoder accepting events of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            max,
        }
    }

    /// Feeds bytes; returns the data of every event completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        for &b in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            if b == b'\n' && after_cr {
                continue;
            }
            if b != b'\n' && b != b'\r' {
                if self.line.len() >= self.max {
                    return Err(format!("an event stream line exceeds {} bytes", self.max));
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.data));
                    self.has_data = false;
                }
                continue;
            }
            let value = match line.strip_prefix(b"data") {
                Some(b"") => &b""[..],
                Some(rest) => match rest.strip_prefix(b":") {
                    Some(v) => v.strip_prefix(b" ").unwrap_or(v),
                    None => continue,
                },
                None => continue,
            };
            if self.has_data {
                self.data.push(b'\n');
            }
            if self.data.len() + value.len() > self.max {
                return Err(format!("an event exceeds {} bytes", self.max));
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn decodes_event_streams_in_pieces() {
        let mut d = SseDecoder::new(1024);
        let stream =
            b"id: 1\ndata: \n\n: comment\nevent: message\ndata: {\"a\":\r\ndata: 1}\r\n\r\nda";
        let mut events = Vec::new();
        for piece in stream.chunks(3) {
            events.extend(d.feed(piece).unwrap());
        }
        assert_eq!(events, vec![b"".to_vec(), b"{\"a\":\n1}".to_vec()]);
        events = d.feed(b"ta: 2\n\n").unwrap();
        assert_eq!(events, vec![b"2".to_vec()]);
        let mut small = SseDecoder::new(8);
        assert!(small.feed(b"data: 0123456789\n").is_err());
        let mut small = SseDecoder::new(8);
        assert!(small.feed(b"data: 0123\ndata: 4567\n").is_err());
    }

    #[test]
    fn ends_lines_at_a_lone_cr_and_reads_a_bare_data_line() {
        // Found by the `sse` fuzz target (fuzz/corpus/sse/cr-only): lone CRs ended no line,
        // so an upstream writing CR line ends had its events merged into one.
        let stream = b"data: one\r\rdata\r\rdata:two\r\n\r\n";
        let mut d = SseDecoder::new(1024);
        assert_eq!(
            d.feed(stream).unwrap(),
            vec![b"one".to_vec(), b"".to_vec(), b"two".to_vec()]
        );
        // A CRLF split between two reads ends one line, not two.
        let mut d = SseDecoder::new(1024);
        let mut events = d.feed(b"data: a\r").unwrap();
        events.extend(d.feed(b"\ndata: b\r").unwrap());
        events.extend(d.feed(b"\n\r\n").unwrap());
        assert_eq!(events, vec![b"a\nb".to_vec()]);
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(
            classify(json!({"jsonrpc":"2.0","id":3,"result":{"a":1}})),
            Some(Upstream::Response {
                id: json!(3),
                outcome: Ok(json!({"a":1}))
            })
        );
        assert_eq!(
            classify(json!({"jsonrpc":"2.0","id":"x","error":{"code":-1,"message":"m"}})),
            Some(Upstream::Response {
                id: json!("x"),
                outcome: Err(json!({"code":-1,"message":"m"}))
            })
        );
        assert_eq!(
            classify(json!({"jsonrpc":"2.0","id":0,"method":"sampling/createMessage"})),
            Some(Upstream::Request {
                id: json!(0),
                method: "sampling/createMessage".into(),
                params: json!({})
            })
        );
        assert!(matches!(
            classify(
                json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}})
            ),
            Some(Upstream::Notification { .. })
        ));
        assert_eq!(classify(json!({"id": 1, "result": {}})), None);
        assert_eq!(classify(json!([1])), None);
        assert_eq!(classify(json!({"jsonrpc":"2.0","id":1})), None);
    }

    #[test]
    fn progress_goes_to_the_call_whose_token_it_carries() {
        let calls = [
            InFlight {
                key: 1,
                progress_token: Some("cortex-1".into()),
            },
            InFlight {
                key: 2,
                progress_token: Some("cortex-2".into()),
            },
        ];
        let p = json!({"progressToken": "cortex-2", "progress": 1});
        assert_eq!(
            route("notifications/progress", &p, &calls, None),
            Delivery::Call(2)
        );
        let unknown = json!({"progressToken": "other"});
        assert_eq!(
            route("notifications/progress", &unknown, &calls, None),
            Delivery::Nobody
        );
    }

    #[test]
    fn call_time_messages_without_a_call_go_to_the_only_call_or_nobody() {
        let one = [InFlight {
            key: 7,
            progress_token: None,
        }];
        let p = json!({"level": "info"});
        assert_eq!(
            route("notifications/message", &p, &one, None),
            Delivery::Call(7)
        );
        assert_eq!(
            route("elicitation/create", &p, &one, None),
            Delivery::Call(7)
        );
        let two = [
            InFlight {
                key: 1,
                progress_token: None,
            },
            InFlight {
                key: 2,
                progress_token: None,
            },
        ];
        assert_eq!(
            route("sampling/createMessage", &p, &two, None),
            Delivery::Nobody
        );
        assert_eq!(
            route("notifications/message", &p, &[], None),
            Delivery::Nobody
        );
        // On a call's own stream, the message is that call's.
        assert_eq!(
            route("notifications/message", &p, &two, Some(2)),
            Delivery::Call(2)
        );
    }

    #[test]
    fn catalog_and_resource_notifications_are_not_a_call_s() {
        let one = [InFlight {
            key: 7,
            progress_token: None,
        }];
        for m in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ] {
            assert_eq!(route(m, &json!({}), &one, Some(7)), Delivery::ListChanged);
        }
        assert_eq!(
            route(
                "notifications/resources/updated",
                &json!({"uri": "test://a"}),
                &one,
                None
            ),
            Delivery::ResourceUpdated("test://a".into())
        );
        assert_eq!(route("ping", &json!({}), &one, None), Delivery::Gateway);
    }

    #[test]
    fn progress_tokens_are_remapped_both_ways() {
        let mut params = call_tool_params(
            "t",
            Some(&json!({"a": 1})),
            Some(&json!({"progressToken": "caller-1", "other": true})),
        );
        assert_eq!(params["_meta"], json!({"other": true}));
        // A modern caller's envelope stays at the gateway.
        let modern = call_tool_params(
            "t",
            None,
            Some(
                &json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}, "trace": "x"}),
            ),
        );
        assert_eq!(modern["_meta"], json!({"trace": "x"}));
        set_progress_token(&mut params, &upstream_progress_token(9));
        assert_eq!(params["_meta"]["progressToken"], "cortex-9");
        let mut note = json!({"progressToken": "cortex-9", "progress": 50, "total": 100});
        restore_progress_token(&mut note, &json!("caller-1"));
        assert_eq!(note["progressToken"], "caller-1");
        assert_eq!(
            progress_token(&json!({"progressToken": 4})),
            Some(&json!(4))
        );
        assert_eq!(progress_token(&json!({"progressToken": {}})), None);
    }

    #[test]
    fn log_levels_filter() {
        let warning = json!({"level": "warning"});
        assert!(level_passes(None, &warning));
        assert!(level_passes(Some("info"), &warning));
        assert!(!level_passes(Some("error"), &warning));
        assert!(level_passes(Some("error"), &json!({"level": "odd"})));
    }

    #[test]
    fn scopes_come_from_configuration_only() {
        let mut items = vec![
            json!({"name": "read", "scope": "chosen:by:server"}),
            json!({"name": "write"}),
        ];
        let overrides = BTreeMap::from([("write".to_string(), "mcp:x:write".to_string())]);
        apply_scopes(&mut items, "name", Some("mcp:x:read"), &overrides);
        assert_eq!(items[0]["scope"], "mcp:x:read");
        assert_eq!(items[1]["scope"], "mcp:x:write");
        apply_scopes(&mut items, "name", None, &BTreeMap::new());
        assert!(items[0].get("scope").is_none());
    }

    #[test]
    fn initialize_results_are_checked() {
        let ok = initialized(&json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"resources": {"subscribe": true}, "prompts": {}}
        }))
        .unwrap();
        assert_eq!(ok.version, "2025-06-18");
        assert!(ok.subscribe && ok.prompts && ok.resources && !ok.completions);
        assert!(initialized(&json!({"protocolVersion": "2024-11-05"})).is_err());
        assert!(initialized(&json!({})).is_err());
    }

    #[test]
    fn pages_and_ids() {
        assert_eq!(next_cursor(&json!({"nextCursor": "2"})), Some("2".into()));
        assert_eq!(next_cursor(&json!({"nextCursor": ""})), None);
        assert_eq!(next_cursor(&json!({})), None);
        assert_eq!(page_params(Some("c")), json!({"cursor": "c"}));
        let id = relayed_request_id(0xab);
        assert!(id.starts_with("cortex-sr-") && id.len() == 42, "{id}");
        let r: Value = serde_json::from_slice(&response(&json!(5), &Ok(json!({})))).unwrap();
        assert_eq!(r, json!({"jsonrpc":"2.0","id":5,"result":{}}));
    }
}
