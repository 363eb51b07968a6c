//! A native MCP server over streamable HTTP that misbehaves on purpose, on raw sockets (one
//! request per connection, `connection: close`). It initializes normally, lists three tools
//! and misbehaves on their calls (docs/reliability.md, "A native MCP backend that fails"):
//!
//! | tool | reply |
//! | --- | --- |
//! | `endless` | an event stream that sends a comment every 100 ms and never the response |
//! | `ask` | an event stream carrying an `elicitation/create` request to the caller, then comments, never the response |
//! | `hang` | nothing: the request is read and never answered |
//! | `huge` | a JSON reply announcing 50 MB, its body sent until the gateway hangs up |
//! | `huge_event` | an event stream whose one event grows to 50 MB (never ended) |
//! | `cut` | a JSON reply announcing 1,000 bytes, closed after 100 |
//! | `flap` | every other call answered (text `flap`), the others reset without a reply |
//!
//! Every stream ends when the gateway hangs up (counted) or after [`MAX_CONN_TIME`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest time one connection is served.
const MAX_CONN_TIME: Duration = Duration::from_secs(60);

/// What the server saw.
#[derive(Debug, Default)]
pub struct RogueMcpStats {
    /// `tools/call` requests received.
    pub calls: AtomicU64,
    /// `notifications/cancelled` received.
    pub cancelled: AtomicU64,
    /// Event streams (and hanging requests) the gateway hung up on.
    pub hung_up: AtomicU64,
    /// Event streams and hanging requests open right now.
    pub open: AtomicU64,
    /// `flap` calls received (the 1st, 3rd, … are answered, the others reset).
    pub flaps: AtomicU64,
}

/// The size the `huge` replies announce or reach: 50 MB.
pub const HUGE_BYTES: usize = 50 * 1000 * 1000;

/// A running rogue MCP server; stops accepting on drop.
pub struct RogueMcp {
    port: u16,
    stats: Arc<RogueMcpStats>,
    task: JoinHandle<()>,
}

impl Drop for RogueMcp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RogueMcp {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> RogueMcp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(RogueMcpStats::default());
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let stats = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(MAX_CONN_TIME, serve(stream, stats)).await;
                });
            }
        });
        RogueMcp { port, stats, task }
    }

    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// What it saw.
    pub fn stats(&self) -> &RogueMcpStats {
        &self.stats
    }

    pub fn count(&self, which: fn(&RogueMcpStats) -> &AtomicU64) -> u64 {
        which(&self.stats).load(Ordering::SeqCst)
    }
}

/// The request line and body of one request, or `None` when the connection is gone.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let head = super::raw::read_request_head(stream).await?;
    let request_line = head.head.lines().next().unwrap_or_default().to_string();
    let body = super::raw::read_request_body(stream, head).await?;
    Some((request_line, body))
}

async fn write(stream: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

async fn write_result(stream: &mut TcpStream, id: &Value, result: Value, extra: &str) {
    let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let extra = format!("content-type: application/json\r\n{extra}");
    write(stream, "200 OK", &extra, &body).await;
}

fn tool(name: &str) -> Value {
    json!({"name": name, "description": format!("Misbehaves: {name}."),
           "inputSchema": {"type": "object", "properties": {}}})
}

/// One SSE chunk (chunked transfer encoding).
fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

/// Writes `total` bytes of filler after `head` in 64 KiB writes (chunked when `chunked`),
/// until done or the gateway hangs up.
async fn write_filler(
    stream: &mut TcpStream,
    head: &[u8],
    chunked: bool,
    total: usize,
    stats: &RogueMcpStats,
) {
    let mut ok = stream.write_all(head).await.is_ok();
    let block = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while ok && sent < total {
        let n = block.len().min(total - sent);
        ok = if chunked {
            stream
                .write_all(&chunk(&String::from_utf8_lossy(&block[..n])))
                .await
                .is_ok()
        } else {
            stream.write_all(&block[..n]).await.is_ok()
        };
        sent += n;
    }
    if !ok {
        stats.hung_up.fetch_add(1, Ordering::SeqCst);
    }
}

/// Writes an event stream: `first` (if any), then a comment every 100 ms until the gateway
/// hangs up.
async fn stream_forever(stream: &mut TcpStream, first: Option<Value>, stats: &RogueMcpStats) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
    if let (true, Some(message)) = (ok, first) {
        ok = stream
            .write_all(&chunk(&format!("event: message\ndata: {message}\n\n")))
            .await
            .is_ok();
    }
    while ok {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ok = stream.write_all(&chunk(": still here\n\n")).await.is_ok();
    }
    stats.hung_up.fetch_add(1, Ordering::SeqCst);
}

async fn serve(mut stream: TcpStream, stats: Arc<RogueMcpStats>) {
    let Some((request_line, body)) = read_request(&mut stream).await else {
        return;
    };
    if !request_line.starts_with("POST") {
        // No standalone stream; DELETE of the session accepted.
        let status = if request_line.starts_with("DELETE") {
            "200 OK"
        } else {
            "405 Method Not Allowed"
        };
        return write(&mut stream, status, "", "").await;
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = message["id"].clone();
    let method = message["method"].as_str().unwrap_or("").to_string();
    match method.as_str() {
        "initialize" => {
            let version = message["params"]["protocolVersion"].clone();
            let result = json!({"protocolVersion": version, "capabilities": {"tools": {}},
                                "serverInfo": {"name": "rogue-mcp", "version": "0"}});
            write_result(
                &mut stream,
                &id,
                result,
                "mcp-session-id: rogue-session\r\n",
            )
            .await;
        }
        "tools/list" => {
            let tools = json!({"tools": [tool("endless"), tool("ask"), tool("hang"),
                tool("huge"), tool("huge_event"), tool("cut"), tool("flap")]});
            write_result(&mut stream, &id, tools, "").await;
        }
        "tools/call" => {
            stats.calls.fetch_add(1, Ordering::SeqCst);
            stats.open.fetch_add(1, Ordering::SeqCst);
            match message["params"]["name"].as_str().unwrap_or("") {
                "endless" => stream_forever(&mut stream, None, &stats).await,
                "ask" => {
                    let request = json!({"jsonrpc": "2.0", "id": format!("srv-{id}"),
                        "method": "elicitation/create", "params": {"message": "never answered",
                        "requestedSchema": {"type": "object", "properties": {}}}});
                    stream_forever(&mut stream, Some(request), &stats).await;
                }
                "huge" => {
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE_BYTES}\r\nconnection: close\r\n\r\n");
                    write_filler(&mut stream, head.as_bytes(), false, HUGE_BYTES, &stats).await;
                }
                "huge_event" => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                    let mut head = head.as_bytes().to_vec();
                    head.extend_from_slice(&chunk("event: message\ndata: "));
                    write_filler(&mut stream, &head, true, HUGE_BYTES, &stats).await;
                }
                "cut" => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n";
                    let partial = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(partial.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
                "flap" => {
                    if stats.flaps.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                        let result = json!({"content": [{"type": "text", "text": "flap"}]});
                        write_result(&mut stream, &id, result, "").await;
                    } else {
                        // SO_LINGER 0: the close (when `serve` returns) sends a RST instead
                        // of a FIN (with nothing left to send, it never blocks, which is why
                        // tokio deprecates the method).
                        #[allow(deprecated)]
                        let _ = stream.set_linger(Some(Duration::ZERO));
                    }
                }
                _ => {
                    let mut probe = [0u8; 1];
                    if let Ok(0) = stream.read(&mut probe).await {
                        stats.hung_up.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::SeqCst);
        }
        "notifications/cancelled" => {
            stats.cancelled.fetch_add(1, Ordering::SeqCst);
            write(&mut stream, "202 Accepted", "", "").await;
        }
        "" => write(&mut stream, "202 Accepted", "", "").await,
        _ if id.is_null() => write(&mut stream, "202 Accepted", "", "").await,
        _ => {
            let body = json!({"jsonrpc": "2.0", "id": id,
                              "error": {"code": -32601, "message": "Method not found"}})
            .to_string();
            write(
                &mut stream,
                "200 OK",
                "content-type: application/json\r\n",
                &body,
            )
            .await;
        }
    }
}
