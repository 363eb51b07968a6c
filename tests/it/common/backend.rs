//! A scriptable contract backend (hyper) on an ephemeral 127.0.0.1 port.
//!
//! Discovery methods (`list_tools`, `list_prompts`, `list_resource_templates`) answer from the
//! current spec, which tests change at runtime ([`TestBackend::set_tools`]) or make fail
//! ([`TestBackend::set_discovery`]). Any other method is a tool call: answered as scripted
//! ([`TestBackend::respond`], [`TestBackend::delay`]) or, by default, echoed back as
//! `{"method","params","headers","body"}` so tests can see exactly what the gateway sent.
//! Every request is recorded ([`TestBackend::requests`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Map, Value};

use super::http_server::{self, Server};

/// The contract path.
pub const CONTRACT_PATH: &str = "/api/cortex/backend";

/// A tool definition with a scope and the `params` shorthand `{message: string?}`.
pub fn tool(name: &str, scope: &str) -> Value {
    json!({
        "name": name,
        "scope": scope,
        "description": format!("Test tool {name}."),
        "params": { "message": "string?" },
        "version": "1.0.0"
    })
}

/// What a backend offers at start.
#[derive(Debug, Clone, Default)]
pub struct BackendSpec {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub templates: Vec<Value>,
}

impl BackendSpec {
    /// Tools with the given names, all with scope `scope`.
    pub fn tools(names: &[&str], scope: &str) -> BackendSpec {
        BackendSpec {
            tools: names.iter().map(|n| tool(n, scope)).collect(),
            ..BackendSpec::default()
        }
    }
}

/// How discovery answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// From the spec.
    Ok,
    /// 500 `{"error":"discovery broken"}`.
    Fail500,
    /// Never answers (the gateway's timeout must fire).
    Hang,
}

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub http_method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// `method` of the contract body ("" if the body was not a contract call).
    pub method: String,
    /// `params` of the contract body (Null if absent).
    pub params: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted reply to one tool.
#[derive(Debug, Clone)]
struct Scripted {
    status: u16,
    content_type: String,
    body: Bytes,
    extra_headers: Vec<(String, String)>,
}

#[derive(Debug)]
struct State {
    spec: BackendSpec,
    discovery: Discovery,
    scripted: HashMap<String, Scripted>,
    delays: HashMap<String, Duration>,
    requests: Vec<Recorded>,
}

/// A running test backend; stops on drop.
pub struct TestBackend {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl TestBackend {
    /// Starts on an ephemeral port of 127.0.0.1 in the current tokio runtime.
    pub async fn start(spec: BackendSpec) -> TestBackend {
        let state = Arc::new(Mutex::new(State {
            spec,
            discovery: Discovery::Ok,
            scripted: HashMap::new(),
            delays: HashMap::new(),
            requests: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let server = Server::start(move |req| handle(Arc::clone(&shared), req))
            .await
            .expect("bind 127.0.0.1:0");
        TestBackend { state, server }
    }

    /// `http://127.0.0.1:<port>` (the base URL; the contract path is the default one).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the tool list (seen at the gateway's next refresh).
    pub fn set_tools(&self, tools: Vec<Value>) {
        self.state().spec.tools = tools;
    }

    /// Replaces the prompt list.
    pub fn set_prompts(&self, prompts: Vec<Value>) {
        self.state().spec.prompts = prompts;
    }

    /// Makes discovery succeed, fail with 500 or hang.
    pub fn set_discovery(&self, discovery: Discovery) {
        self.state().discovery = discovery;
    }

    /// Answers calls of `tool` with `status` and JSON `body`.
    pub fn respond(&self, tool: &str, status: u16, body: Value) {
        self.respond_raw(
            tool,
            status,
            "application/json",
            body.to_string().as_bytes(),
        );
    }

    /// Answers calls of `tool` with `status`, `content_type` and raw `body`.
    pub fn respond_raw(&self, tool: &str, status: u16, content_type: &str, body: &[u8]) {
        self.state().scripted.insert(
            tool.to_owned(),
            Scripted {
                status,
                content_type: content_type.to_owned(),
                body: Bytes::copy_from_slice(body),
                extra_headers: Vec::new(),
            },
        );
    }

    /// Like [`respond`](Self::respond) with extra response headers.
    pub fn respond_with_headers(
        &self,
        tool: &str,
        status: u16,
        body: Value,
        headers: &[(&str, &str)],
    ) {
        self.state().scripted.insert(
            tool.to_owned(),
            Scripted {
                status,
                content_type: "application/json".into(),
                body: Bytes::from(body.to_string()),
                extra_headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        );
    }

    /// Makes calls of `method` (tool or discovery method) wait `delay` before answering.
    pub fn delay(&self, method: &str, delay: Duration) {
        self.state().delays.insert(method.to_owned(), delay);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Requests whose contract method is `method`.
    pub fn calls(&self, method: &str) -> Vec<Recorded> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == method)
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Waits (bounded) until at least `n` calls of `method` were received.
    pub async fn wait_for_calls(&self, method: &str, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls(method);
            if calls.len() >= n {
                return calls;
            }
            if Instant::now() >= deadline {
                panic!(
                    "backend got {} `{method}` calls, wanted {n} within {timeout:?}",
                    calls.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting and drops open connections.
    pub fn stop(&self) {
        self.server.stop();
    }
}

fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    http_server::json_response(status, body.to_string())
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let http_method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return json_response(400, json!({"error":"unreadable body"})),
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = parsed["method"].as_str().unwrap_or("").to_owned();
    let params = parsed.get("params").cloned().unwrap_or(Value::Null);
    let (discovery, delay, scripted, spec) = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.requests.push(Recorded {
            at: Instant::now(),
            http_method: http_method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
            method: method.clone(),
            params: params.clone(),
        });
        (
            st.discovery,
            st.delays.get(&method).copied(),
            st.scripted.get(&method).cloned(),
            st.spec.clone(),
        )
    };
    if path != CONTRACT_PATH {
        return json_response(404, json!({"error":"Not found"}));
    }
    if http_method != "POST" {
        return json_response(405, json!({"error":"POST only"}));
    }
    if parsed.is_null() {
        return json_response(400, json!({"error":"Invalid JSON body"}));
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let is_discovery = matches!(
        method.as_str(),
        "list_tools" | "list_prompts" | "list_resource_templates"
    );
    if is_discovery {
        match discovery {
            Discovery::Ok => {}
            Discovery::Fail500 => return json_response(500, json!({"error":"discovery broken"})),
            Discovery::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        return match method.as_str() {
            "list_tools" => json_response(200, json!({ "tools": spec.tools })),
            "list_prompts" => json_response(200, json!({ "prompts": spec.prompts })),
            _ => json_response(200, json!({ "resourceTemplates": spec.templates })),
        };
    }
    if let Some(s) = scripted {
        let mut builder = Response::builder()
            .status(s.status)
            .header("content-type", s.content_type);
        for (k, v) in s.extra_headers {
            builder = builder.header(k, v);
        }
        return builder.body(Full::new(s.body)).expect("response");
    }
    let mut echoed_headers = Map::new();
    for (name, value) in &headers {
        echoed_headers.insert(
            name.as_str().to_owned(),
            Value::String(value.to_str().unwrap_or("<non-ascii>").to_owned()),
        );
    }
    json_response(
        200,
        json!({
            "method": method,
            "params": params,
            "headers": echoed_headers,
            "body": String::from_utf8_lossy(&body),
            "bodyLength": body.len(),
        }),
    )
}
