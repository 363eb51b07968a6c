//! The fast contract echo backend: hyper 1, HTTP/1.1, one OS thread with a current-thread
//! Tokio runtime (like the peer benchmark's `cortex-echo`), any number of 127.0.0.1 listeners.
//!
//! A contract listener answers `list_tools` with a pre-serialized catalog of its own size, the
//! other discovery methods (`list_prompts`, …) with 404 (not offered), and every other method
//! with `{"echoed":<params>}`: the params are echoed as raw JSON, so a call costs one borrowed
//! parse and one small write. No authentication: the cost measured is the gateway's.
//!
//! An MCP listener ([`Kind::Mcp`]) is a minimal native MCP server on streamable HTTP, always
//! answering in JSON (never an event stream): `initialize` (with an `Mcp-Session-Id`),
//! notifications (202), `tools/list` with one `echo` tool, `tools/call` echoing the
//! `message` argument as text, `ping`; GET answers 405 (no standalone stream), DELETE 204.
//! The same server is called directly and through the gateway as a `kind: mcp` backend
//! (issue 17 §2: the work the peers were measured on).
//!
//! Every listener counts the connections it accepted ([`EchoBackend::connections`]), so the
//! cells can show whether the gateway reuses its backend connections.

use std::borrow::Cow;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fixtures;
use crate::http_server::json_response;
use crate::procfs;

/// One listener: the backend id its tool names are generated for, and how many tools.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Backend id used in the generated descriptions and scopes.
    pub id: String,
    /// Tools its `list_tools` returns (contract listeners).
    pub tools: usize,
    /// What it speaks.
    pub kind: Kind,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The Cortex backend contract (`POST /api/cortex/backend`).
    Contract,
    /// Native MCP on streamable HTTP (JSON replies, one `echo` tool).
    Mcp,
}

/// The running backend thread; stopped and joined on drop.
pub struct EchoBackend {
    addrs: Vec<SocketAddr>,
    list_bytes: Vec<usize>,
    accepted: Arc<AtomicU64>,
    tid: Arc<AtomicI32>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// A contract call `{"method":…,"params":…}`, borrowed from the request body.
#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

impl EchoBackend {
    /// Binds every listener on 127.0.0.1 (ephemeral ports) and starts the serving thread.
    pub fn start(specs: &[ListenerSpec]) -> std::io::Result<EchoBackend> {
        let mut listeners = Vec::with_capacity(specs.len());
        let mut addrs = Vec::with_capacity(specs.len());
        for _ in specs {
            let l = StdListener::bind("127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            addrs.push(l.local_addr()?);
            listeners.push(l);
        }
        let lists: Vec<Bytes> = specs
            .iter()
            .map(|s| {
                let reply = fixtures::list_tools_reply(&s.id, s.tools);
                Bytes::from(serde_json::to_vec(&reply).unwrap_or_default())
            })
            .collect();
        let list_bytes = lists.iter().map(Bytes::len).collect();
        let kinds: Vec<Kind> = specs.iter().map(|s| s.kind).collect();
        let accepted = Arc::new(AtomicU64::new(0));
        let accepted_in = accepted.clone();
        let tid = Arc::new(AtomicI32::new(0));
        let tid_in = tid.clone();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("echo-backend".into())
            .spawn(move || {
                tid_in.store(procfs::gettid(), Ordering::SeqCst);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("echo backend: cannot build its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    for ((listener, list), kind) in listeners.into_iter().zip(lists).zip(kinds) {
                        let l = match TcpListener::from_std(listener) {
                            Ok(l) => l,
                            Err(e) => {
                                eprintln!("echo backend: listener: {e}");
                                continue;
                            }
                        };
                        let stop = stop_rx.clone();
                        let count = accepted_in.clone();
                        match kind {
                            Kind::Contract => {
                                let handler = move |req| handle(req, list.clone());
                                tokio::spawn(serve_counted(l, handler, stop, count));
                            }
                            Kind::Mcp => {
                                tokio::spawn(serve_counted(l, handle_mcp, stop, count));
                            }
                        }
                    }
                    // Serve until the harness drops the handle (or is gone).
                    let _ = stop_rx.wait_for(|s| *s).await;
                });
            })?;
        let backend = EchoBackend {
            addrs,
            list_bytes,
            accepted,
            tid,
            stop: stop_tx,
            thread: Some(thread),
        };
        // The thread id is needed for CPU accounting; it is set first thing by the thread.
        let deadline = Instant::now() + Duration::from_secs(5);
        while backend.tid.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(backend)
    }

    /// The address of listener `i` (in the order of the specs).
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Size in bytes of listener `i`'s `list_tools` reply.
    pub fn list_bytes(&self, i: usize) -> usize {
        self.list_bytes[i]
    }

    /// Connections accepted so far, all listeners together.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// CPU time (user + system) the backend thread used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        procfs::thread_cpu_ticks(self.tid.load(Ordering::SeqCst))
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(req: Request<Incoming>, list: Bytes) -> Response<Full<Bytes>> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_response(400, Bytes::from_static(br#"{"error":"unreadable body"}"#));
        }
    };
    let Ok(call) = serde_json::from_slice::<Call<'_>>(&body) else {
        return json_response(
            400,
            Bytes::from_static(br#"{"error":"not a contract call"}"#),
        );
    };
    match call.method.as_ref() {
        "list_tools" => json_response(200, list),
        m if m.starts_with("list_") => {
            json_response(404, Bytes::from_static(br#"{"error":"unknown method"}"#))
        }
        _ => {
            let params = call.params.map_or("{}", RawValue::get);
            let mut out = Vec::with_capacity(params.len() + 12);
            out.extend_from_slice(b"{\"echoed\":");
            out.extend_from_slice(params.as_bytes());
            out.push(b'}');
            json_response(200, Bytes::from(out))
        }
    }
}

/// `http_server::serve` (the tests' stand-in server loop) with a count of the accepted connections: the same loop (each
/// connection on a task of its own, closed when `stop` turns true).
async fn serve_counted<H, F>(
    listener: TcpListener,
    handler: H,
    stop: watch::Receiver<bool>,
    accepted: Arc<AtomicU64>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut accept_stop = stop.clone();
    loop {
        let accepted_now = tokio::select! {
            _ = accept_stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted_now {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let reply = handler(req);
                async move { Ok::<_, std::convert::Infallible>(reply.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.wait_for(|s| *s) => {}
            }
        });
    }
}

/// The session id the MCP echo server issues (it keeps no state per session).
const MCP_SESSION: &str = "load-echo-session";

/// A JSON-RPC message as the MCP echo server reads it, borrowed from the body.
#[derive(Deserialize)]
struct Rpc<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<CallParams<'a>>,
}

/// The params the server looks at: a tool call's name and its `message` argument.
#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Args<'a>>,
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Args<'a> {
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

const MCP_TOOLS: &str = r#"{"tools":[{"name":"echo","description":"Echoes its message.","inputSchema":{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}}]}"#;

fn mcp_reply(status: u16, body: Vec<u8>, session: bool) -> Response<Full<Bytes>> {
    let mut r = json_response(status, Bytes::from(body));
    if session {
        r.headers_mut()
            .insert("mcp-session-id", HeaderValue::from_static(MCP_SESSION));
    }
    r
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// `{"jsonrpc":"2.0","id":<id>,"result":<result>}` with the id spliced as sent.
fn rpc_result(id: &RawValue, result: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + result.iter().map(|r| r.len()).sum::<usize>());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","result":"#);
    for r in result {
        out.extend_from_slice(r);
    }
    out.push(b'}');
    out
}

async fn handle_mcp(req: Request<Incoming>) -> Response<Full<Bytes>> {
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return empty(StatusCode::NO_CONTENT),
        _ => return empty(StatusCode::METHOD_NOT_ALLOWED),
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return empty(StatusCode::BAD_REQUEST),
    };
    let Ok(rpc) = serde_json::from_slice::<Rpc<'_>>(&body) else {
        let e = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#;
        return mcp_reply(400, e.to_vec(), false);
    };
    // Notifications and answers to server requests: accepted, nothing to say.
    let Some(id) = rpc.id else {
        return empty(StatusCode::ACCEPTED);
    };
    match rpc.method.as_ref() {
        "initialize" => {
            let version = rpc
                .params
                .as_ref()
                .and_then(|p| p.protocol_version.as_deref())
                .filter(|v| matches!(*v, "2025-06-18" | "2025-03-26" | "2024-11-05"))
                .unwrap_or("2025-06-18");
            let result = format!(
                r#"{{"protocolVersion":"{version}","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"load-echo-mcp","version":"1"}}}}"#
            );
            mcp_reply(200, rpc_result(id, &[result.as_bytes()]), true)
        }
        "tools/list" => mcp_reply(200, rpc_result(id, &[MCP_TOOLS.as_bytes()]), false),
        "tools/call" => {
            let params = rpc.params.as_ref();
            if params.and_then(|p| p.name.as_deref()) != Some("echo") {
                let mut out = br#"{"jsonrpc":"2.0","id":"#.to_vec();
                out.extend_from_slice(id.get().as_bytes());
                out.extend_from_slice(br#","error":{"code":-32602,"message":"Unknown tool"}}"#);
                return mcp_reply(200, out, false);
            }
            let message = params
                .and_then(|p| p.arguments.as_ref())
                .and_then(|a| a.message)
                .map(RawValue::get)
                .filter(|m| m.starts_with('"'))
                .unwrap_or(r#""""#);
            let parts: [&[u8]; 3] = [
                br#"{"content":[{"type":"text","text":"#,
                message.as_bytes(),
                b"}]}",
            ];
            mcp_reply(200, rpc_result(id, &parts), false)
        }
        "ping" => mcp_reply(200, rpc_result(id, &[b"{}"]), false),
        _ => {
            let mut out = br#"{"jsonrpc":"2.0","id":"#.to_vec();
            out.extend_from_slice(id.get().as_bytes());
            out.extend_from_slice(br#","error":{"code":-32601,"message":"Method not found"}}"#);
            mcp_reply(200, out, false)
        }
    }
}
