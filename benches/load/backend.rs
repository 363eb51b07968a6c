//! The fast contract echo backend: hyper 1, HTTP/1.1, one OS thread with a current-thread
//! Tokio runtime (like the peer benchmark's `cortex-echo`), any number of 127.0.0.1 listeners.
//!
//! Each listener answers `list_tools` with a pre-serialized catalog of its own size, the other
//! discovery methods (`list_prompts`, …) with 404 (not offered), and every other method with
//! `{"echoed":<params>}`: the params are echoed as raw JSON, so a call costs one borrowed
//! parse and one small write. No authentication: the cost measured is the gateway's.

use std::borrow::Cow;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fixtures;
use crate::http_server::{self, json_response};
use crate::procfs;

/// One listener: the backend id its tool names are generated for, and how many tools.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Backend id used in the generated descriptions and scopes.
    pub id: String,
    /// Tools its `list_tools` returns.
    pub tools: usize,
}

/// The running backend thread; stopped and joined on drop.
pub struct EchoBackend {
    addrs: Vec<SocketAddr>,
    list_bytes: Vec<usize>,
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
                    for (listener, list) in listeners.into_iter().zip(lists) {
                        match TcpListener::from_std(listener) {
                            Ok(l) => {
                                let handler = move |req| handle(req, list.clone());
                                tokio::spawn(http_server::serve(l, handler, stop_rx.clone()));
                            }
                            Err(e) => eprintln!("echo backend: listener: {e}"),
                        }
                    }
                    // Serve until the harness drops the handle (or is gone).
                    let _ = stop_rx.wait_for(|s| *s).await;
                });
            })?;
        let backend = EchoBackend {
            addrs,
            list_bytes,
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
