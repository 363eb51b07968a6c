//! A small MCP Streamable HTTP client for tests, over reqwest (plain HTTP to loopback).
//!
//! Deliberately thin: tests need to send malformed and unusual requests, so everything is
//! reachable at the HTTP level ([`McpClient::post`]); the JSON-RPC helpers build on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::sse::{parse_sse_body, SseStream};

/// One HTTP reply.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpReply {
    /// The body as JSON; for an SSE body, the last `message` event's data. Panics with the
    /// body when it is neither (tests want to see what came back).
    pub fn json(&self) -> Value {
        if self.is_sse() {
            let events = parse_sse_body(&self.body);
            return events
                .iter()
                .rev()
                .find_map(|e| serde_json::from_str(&e.data).ok())
                .unwrap_or_else(|| panic!("SSE body without JSON data: {}", self.text()));
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is an SSE stream.
    pub fn is_sse(&self) -> bool {
        self.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    }
}

/// An MCP client bound to one endpoint, with optional session and protocol version that are
/// sent on every request once set (by [`McpClient::initialize`] or by the test).
#[derive(Debug)]
pub struct McpClient {
    pub http: reqwest::Client,
    pub url: String,
    /// Sent as `Mcp-Session-Id` when set.
    pub session: Option<String>,
    /// Sent as `MCP-Protocol-Version` when set.
    pub protocol_version: Option<String>,
    /// Extra headers on every request (e.g. `X-Dev-Mode`).
    pub headers: Vec<(String, String)>,
    next_id: AtomicU64,
}

impl Clone for McpClient {
    fn clone(&self) -> Self {
        McpClient {
            http: self.http.clone(),
            url: self.url.clone(),
            session: self.session.clone(),
            protocol_version: self.protocol_version.clone(),
            headers: self.headers.clone(),
            next_id: AtomicU64::new(self.next_id.load(Ordering::Relaxed)),
        }
    }
}

impl McpClient {
    /// A client for `url` (no session, no version header).
    pub fn new(url: &str) -> McpClient {
        McpClient {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            url: url.to_owned(),
            session: None,
            protocol_version: None,
            headers: Vec::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Adds a header sent on every request.
    pub fn with_header(mut self, name: &str, value: &str) -> McpClient {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The default headers of a request, overridden by `extra` (same name, any case) and with
    /// `extra` entries whose value is empty meaning "do not send this header".
    fn header_map(&self, defaults: &[(&str, &str)], extra: &[(&str, &str)]) -> HeaderMap {
        let mut all: Vec<(String, String)> = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(session) = &self.session {
            all.push(("mcp-session-id".into(), session.clone()));
        }
        if let Some(version) = &self.protocol_version {
            all.push(("mcp-protocol-version".into(), version.clone()));
        }
        all.extend(self.headers.iter().cloned());
        let mut map = HeaderMap::new();
        for (k, v) in all {
            let name = HeaderName::from_bytes(k.as_bytes()).expect("header name");
            map.insert(name, HeaderValue::from_str(&v).expect("header value"));
        }
        for (k, v) in extra {
            let name = HeaderName::from_bytes(k.as_bytes()).expect("header name");
            if v.is_empty() {
                map.remove(&name);
            } else {
                map.insert(name, HeaderValue::from_str(v).expect("header value"));
            }
        }
        map
    }

    /// POSTs `body` (JSON) with the default headers plus `headers`.
    pub async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> HttpReply {
        self.post_raw(body.to_string().into_bytes(), headers).await
    }

    /// POSTs raw bytes (for malformed bodies).
    pub async fn post_raw(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> HttpReply {
        let map = self.header_map(
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ],
            headers,
        );
        let resp = self
            .http
            .post(&self.url)
            .headers(map)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.url));
        reply(resp).await
    }

    /// POSTs `body` and returns the reply as a live stream (a call a native backend answers
    /// as server-sent events while it runs). A JSON reply arrives as one "event" whose data
    /// is the whole body, so callers read both forms alike.
    pub async fn post_stream(&self, body: &Value) -> SseStream {
        let map = self.header_map(
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ],
            &[],
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client");
        let resp = http
            .post(&self.url)
            .headers(map)
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.url));
        SseStream::new(resp)
    }

    /// Sends any HTTP method to the endpoint with the default headers plus `headers`.
    pub async fn request(&self, method: &str, headers: &[(&str, &str)]) -> HttpReply {
        let map = self.header_map(&[], headers);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .http
            .request(method.clone(), &self.url)
            .headers(map)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {}: {e}", self.url));
        reply(resp).await
    }

    /// `DELETE` the endpoint (ends the session when one is set).
    pub async fn delete(&self, headers: &[(&str, &str)]) -> HttpReply {
        self.request("DELETE", headers).await
    }

    /// A fresh JSON-RPC id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A JSON-RPC request object.
    pub fn request_body(&self, method: &str, params: Value) -> Value {
        json!({ "jsonrpc": "2.0", "id": self.next_id(), "method": method, "params": params })
    }

    /// Sends a request and returns the whole JSON-RPC response (result or error). Panics
    /// unless the HTTP status is 200.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = self.request_body(method, params);
        let reply = self.post(&body, &[]).await;
        assert_eq!(
            reply.status,
            200,
            "{method}: HTTP {} {}",
            reply.status,
            reply.text()
        );
        let response = reply.json();
        assert_eq!(response["id"], body["id"], "{method}: id echoed");
        assert_eq!(response["jsonrpc"], "2.0");
        response
    }

    /// Sends a request and returns its `result`; panics on a JSON-RPC error.
    pub async fn result(&self, method: &str, params: Value) -> Value {
        let response = self.rpc(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// Sends a request and returns its `error`; panics on success.
    pub async fn error(&self, method: &str, params: Value) -> Value {
        let response = self.rpc(method, params).await;
        assert!(
            response.get("result").is_none(),
            "{method} should fail: {response}"
        );
        response["error"].clone()
    }

    /// `tools/call` → the `CallToolResult` (panics on a JSON-RPC error).
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Value {
        self.result(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
    }

    /// Sends a notification; asserts 202 with an empty body.
    pub async fn notify(&self, method: &str, params: Value) {
        let reply = self
            .post(
                &json!({ "jsonrpc": "2.0", "method": method, "params": params }),
                &[],
            )
            .await;
        assert_eq!(reply.status, 202, "{method}: {}", reply.text());
        assert!(reply.body.is_empty(), "202 has no body: {}", reply.text());
    }

    /// The `initialize` request body for `version`.
    pub fn initialize_body(&self, version: &str) -> Value {
        self.request_body(
            "initialize",
            json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": { "name": "cortex-gateway-tests", "version": "0.0.0" }
            }),
        )
    }

    /// `initialize` with `version`, then `notifications/initialized`. Stores the session id
    /// (from `Mcp-Session-Id`) and the negotiated version for later requests; returns the
    /// result.
    pub async fn initialize(&mut self, version: &str) -> Value {
        let reply = self.post(&self.initialize_body(version), &[]).await;
        assert_eq!(reply.status, 200, "initialize: {}", reply.text());
        let response = reply.json();
        let result = response["result"].clone();
        assert!(result.is_object(), "initialize failed: {response}");
        self.session = reply.header("mcp-session-id").map(str::to_owned);
        self.protocol_version = result["protocolVersion"].as_str().map(str::to_owned);
        self.notify("notifications/initialized", json!({})).await;
        result
    }

    /// Every tool, following `nextCursor` (bounded to 1000 pages).
    pub async fn list_all_tools(&self) -> Vec<Value> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.result("tools/list", params).await;
            tools.extend(page["tools"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return tools,
            }
        }
        panic!("tools/list pagination did not end after 1000 pages");
    }

    /// Names of every tool.
    pub async fn tool_names(&self) -> Vec<String> {
        self.list_all_tools()
            .await
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Names of every tool except the gateway's builtins (the backends' tools).
    pub async fn backend_tool_names(&self) -> Vec<String> {
        super::without_builtins(self.tool_names().await)
    }

    /// `GET` the endpoint as an SSE stream (`Accept: text/event-stream`, session and version
    /// headers, plus `headers`, e.g. `Last-Event-ID`). The stream is returned whatever the
    /// status; check [`SseStream::status`].
    pub async fn open_stream(&self, headers: &[(&str, &str)]) -> SseStream {
        let map = self.header_map(&[("accept", "text/event-stream")], headers);
        // No overall timeout on a stream; reads are bounded by `next_event`'s timeout.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client");
        let resp = http
            .get(&self.url)
            .headers(map)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.url));
        SseStream::new(resp)
    }
}

async fn reply(resp: reqwest::Response) -> HttpReply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    HttpReply {
        status,
        headers,
        body,
    }
}
