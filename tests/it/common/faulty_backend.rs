//! A contract backend that can be switched, while it runs, from healthy to one fault at a
//! time (docs/reliability.md, "A contract backend that fails"). It speaks raw HTTP/1.1 on a
//! socket, because most faults are replies no HTTP library would send; the fault applies to
//! every request, discovery included, so the catalog goes stale while it lasts.
//!
//! Healthy, it offers one tool, `echo` (scope `mcp:faulty`), whose call answers
//! `{"ok": true}`; the optional lists are empty.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// The size of the huge reply: 50 MB.
pub const HUGE_BYTES: u64 = 50 * 1024 * 1024;
/// Longest time one connection is served (every loop here is bounded).
const MAX_CONN_TIME: Duration = Duration::from_secs(60);
/// How long a slow reply waits before giving up (well past any test timeout).
const SLOW_FOR: Duration = Duration::from_secs(30);

/// What the backend does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Answers as the contract says.
    Healthy = 0,
    /// Accepts the connection and resets it at once.
    Reset = 1,
    /// Reads the request and never answers (for [`SLOW_FOR`]).
    Slow = 2,
    /// `200`, `application/json`, a body that is not JSON.
    Garbage = 3,
    /// `200` with a 50 MB body, its length announced.
    Huge = 4,
    /// `200` announcing 100 bytes, 10 sent, then the connection is closed.
    Cut = 5,
    /// Every other request answered healthily (then the connection is closed), the others reset.
    Flap = 6,
    /// `200` with a 50 MB body in chunks, no length announced.
    HugeChunked = 7,
}

impl Fault {
    fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::Reset,
            2 => Fault::Slow,
            3 => Fault::Garbage,
            4 => Fault::Huge,
            5 => Fault::Cut,
            6 => Fault::Flap,
            7 => Fault::HugeChunked,
            _ => Fault::Healthy,
        }
    }
}

/// What the backend saw.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Requests read (all modes).
    pub requests: AtomicU64,
    /// Bytes of huge replies written.
    pub huge_written: AtomicU64,
    /// Huge replies the gateway hung up on before their end.
    pub huge_abandoned: AtomicU64,
    /// Huge replies written to their end (the gateway read or buffered all 50 MB).
    pub huge_completed: AtomicU64,
    /// Slow replies the gateway hung up on.
    pub slow_abandoned: AtomicU64,
}

struct Shared {
    fault: AtomicU8,
    flap: AtomicU64,
    stats: FaultStats,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

/// A running faulty backend; everything stops on drop.
pub struct FaultyBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        self.down();
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FaultyBackend {
    /// Starts healthy on an ephemeral port of 127.0.0.1.
    pub async fn start() -> FaultyBackend {
        let listener = listen("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let backend = FaultyBackend {
            addr,
            shared: Arc::new(Shared {
                fault: AtomicU8::new(Fault::Healthy as u8),
                flap: AtomicU64::new(0),
                stats: FaultStats::default(),
                conns: Mutex::new(Vec::new()),
            }),
            accept: Mutex::new(None),
        };
        backend.serve(listener);
        backend
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = shared.clone();
                let conn = tokio::spawn(async move {
                    let _ = tokio::time::timeout(MAX_CONN_TIME, serve(stream, s)).await;
                });
                let mut conns = shared.conns.lock().expect("conns");
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        });
        *self.accept.lock().expect("accept") = Some(task);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches what every following request gets.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// What it saw.
    pub fn stats(&self) -> &FaultStats {
        &self.shared.stats
    }

    /// Goes away: the listener is closed (connections are refused) and every open
    /// connection is dropped.
    pub fn down(&self) {
        if let Some(task) = self.accept.lock().expect("accept").take() {
            task.abort();
        }
        for conn in self.shared.conns.lock().expect("conns").drain(..) {
            conn.abort();
        }
    }

    /// Comes back on the same port (after [`down`](Self::down)).
    pub async fn up(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            // The aborted accept task releases the old listener asynchronously.
            match listen(self.addr) {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

/// Reads one request; its body, or `None` when the connection is gone.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let head = super::raw::read_request_head(stream).await?;
    super::raw::read_request_body(stream, head).await
}

fn healthy_body(method: &str) -> Value {
    match method {
        "list_tools" => json!({"tools": [{
            "name": "echo", "scope": "mcp:faulty", "description": "Answers ok.",
            "params": {}, "version": "1.0.0"
        }]}),
        "list_prompts" => json!({"prompts": []}),
        "list_resource_templates" => json!({"resourceTemplates": []}),
        "list_resources" => json!({"resources": []}),
        _ => json!({"ok": true}),
    }
}

async fn write_healthy(stream: &mut TcpStream, method: &str, close: bool) -> bool {
    let body = healthy_body(method).to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    stream.write_all(reply.as_bytes()).await.is_ok() && !close
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0: the close sends a RST instead of a FIN (and, with nothing left to send,
    // never blocks, which is why tokio deprecates the method).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let fault = Fault::from_u8(shared.fault.load(Ordering::SeqCst));
        if fault == Fault::Reset {
            return reset(stream);
        }
        let Some(body) = read_request(&mut stream).await else {
            return;
        };
        shared.stats.requests.fetch_add(1, Ordering::SeqCst);
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = parsed["method"].as_str().unwrap_or("").to_string();
        // The fault in force when the request arrived.
        let fault = Fault::from_u8(shared.fault.load(Ordering::SeqCst));
        let keep = match fault {
            Fault::Healthy => write_healthy(&mut stream, &method, false).await,
            Fault::Reset => return reset(stream),
            Fault::Flap => {
                if shared.flap.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    write_healthy(&mut stream, &method, true).await
                } else {
                    return reset(stream);
                }
            }
            Fault::Slow => {
                let mut probe = [0u8; 1];
                // Waits for the gateway to hang up (a read of 0), at most SLOW_FOR.
                if let Ok(Ok(0)) = tokio::time::timeout(SLOW_FOR, stream.read(&mut probe)).await {
                    shared.stats.slow_abandoned.fetch_add(1, Ordering::SeqCst);
                }
                false
            }
            Fault::Garbage => {
                let body = "{\"tools\": [this is not JSON";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.is_ok()
            }
            Fault::Huge | Fault::HugeChunked => {
                let chunked = fault == Fault::HugeChunked;
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE_BYTES}\r\n\r\n"
                    )
                };
                let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
                let mut block = Vec::new();
                if chunked {
                    block.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
                }
                block.extend(std::iter::repeat_n(b' ', 64 * 1024));
                if chunked {
                    block.extend_from_slice(b"\r\n");
                }
                let mut sent = 0u64;
                while ok && sent < HUGE_BYTES {
                    ok = stream.write_all(&block).await.is_ok();
                    if ok {
                        sent += 64 * 1024;
                        shared
                            .stats
                            .huge_written
                            .fetch_add(64 * 1024, Ordering::SeqCst);
                    }
                }
                if ok {
                    shared.stats.huge_completed.fetch_add(1, Ordering::SeqCst);
                } else {
                    shared.stats.huge_abandoned.fetch_add(1, Ordering::SeqCst);
                }
                false
            }
            Fault::Cut => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":")
                    .await;
                false
            }
        };
        if !keep {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
