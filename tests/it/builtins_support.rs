//! Helpers for the builtin tests (the `builtins_*` modules): tool-call shortcuts, a webhook
//! receiver that can be down and come up on a fixed port, signature checking, and a
//! realistic synthetic catalog.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::common::http_server::{json_response, Server};
use crate::common::McpClient;

/// Calls a builtin and returns its `structuredContent`; panics on a JSON-RPC error or an
/// `isError` result.
pub async fn call_ok(client: &McpClient, name: &str, args: Value) -> Value {
    let r = client.call_tool(name, args).await;
    assert!(r.get("isError").is_none(), "{name} failed: {r}");
    let text = r["content"][0]["text"].as_str().unwrap_or("");
    let sc = r["structuredContent"].clone();
    assert!(sc.is_object(), "{name}: no structuredContent: {r}");
    if name != "read_cortex_resource" {
        let parsed: Value = serde_json::from_str(text).expect("text content is the JSON");
        assert_eq!(parsed, sc, "{name}: text and structuredContent agree");
    }
    sc
}

/// Calls a builtin that must answer `isError: true`; returns its `structuredContent`.
pub async fn call_is_error(client: &McpClient, name: &str, args: Value) -> Value {
    let r = client.call_tool(name, args).await;
    assert_eq!(r["isError"], true, "{name} should fail: {r}");
    r["structuredContent"].clone()
}

/// A request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Recomputes `X-Cortex-Signature` (HMAC-SHA256 of `<timestamp>.<body>`) and compares.
pub fn signature_valid(secret: &str, r: &Received) -> bool {
    let (Some(sig), Some(ts)) = (
        r.header("x-cortex-signature"),
        r.header("x-cortex-timestamp"),
    ) else {
        return false;
    };
    let Some(hex) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == hex
}

/// A webhook receiver on a fixed 127.0.0.1 port, answering `status` (200 by default).
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
    _server: Server,
}

impl WebhookReceiver {
    /// Listens on `127.0.0.1:port` (e.g. a port given to the gateway while nothing listened).
    pub async fn start_on(port: u16) -> WebhookReceiver {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind webhook port");
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(200u16));
        let (log, answer) = (received.clone(), status.clone());
        let server = Server::spawn(listener, move |req: Request<Incoming>| {
            let (log, answer) = (log.clone(), answer.clone());
            async move {
                let path = req.uri().to_string();
                let headers = req.headers().clone();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let code = *answer.lock().unwrap();
                log.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                json_response(code, Bytes::from_static(b"{\"ok\":true}"))
            }
        })
        .expect("webhook receiver address");
        WebhookReceiver {
            addr: server.addr(),
            received,
            status,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/cortex?src=test", self.addr)
    }

    /// Answers every later request with `status`.
    pub fn set_status(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "webhook got {} requests, wanted {n} within {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Words for synthetic but realistic tool catalogs.
const NOUNS: [&str; 15] = [
    "contact",
    "invoice",
    "order",
    "ticket",
    "shipment",
    "payment",
    "product",
    "report",
    "calendar_event",
    "document",
    "project",
    "employee",
    "subscription",
    "campaign",
    "lead",
];
const VERBS: [&str; 5] = ["list", "get", "create", "update", "archive"];

/// `n` tools of a business app: multi-sentence descriptions and JSON Schemas with described,
/// typed properties, as real SaaS connectors publish them.
pub fn realistic_tools(app: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let noun = NOUNS[i % NOUNS.len()];
            let verb = VERBS[(i / NOUNS.len()) % VERBS.len()];
            let series = i / (NOUNS.len() * VERBS.len());
            let name = if series == 0 {
                format!("{verb}_{noun}")
            } else {
                format!("{verb}_{noun}_v{}", series + 1)
            };
            let readable = noun.replace('_', " ");
            let description = format!(
                "{} the {readable} records of the {app} workspace that the caller may access. \
                 Results are paginated with `cursor` and sorted by last modification, newest first; \
                 archived {readable}s are excluded unless `include_archived` is true. \
                 Use `fields` to limit the attributes returned and keep responses small. \
                 Requires the {app} permission to read {readable}s; writes are audited.",
                capitalize(verb)
            );
            json!({
                "name": name,
                "scope": format!("mcp:{app}:read"),
                "description": description,
                "version": "2.3.0",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": format!("Identifier of the {readable}, e.g. `{noun}_8f3a2c`.")},
                        "query": {"type": "string", "description": format!("Full-text filter over the {readable} name, notes and tags.")},
                        "status": {"type": "string", "enum": ["active", "pending", "closed", "archived"], "description": "Only records in this state."},
                        "owner_email": {"type": "string", "format": "email", "description": "Only records owned by this user."},
                        "updated_after": {"type": "string", "format": "date-time", "description": "Only records changed after this instant (RFC 3339)."},
                        "fields": {"type": "array", "items": {"type": "string"}, "description": "Attributes to return; default all."},
                        "include_archived": {"type": "boolean", "default": false},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        "cursor": {"type": "string", "description": "Opaque cursor from a previous page."}
                    },
                    "required": ["query"],
                    "additionalProperties": false
                },
                "annotations": {"readOnlyHint": verb == "list" || verb == "get"}
            })
        })
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
