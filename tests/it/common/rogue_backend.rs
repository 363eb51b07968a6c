//! A contract backend that misbehaves on purpose, on raw sockets (a well-behaved HTTP
//! library would refuse to send most of these replies).
//!
//! Discovery answers normally and offers one tool per misbehaviour ([`ROGUE_TOOLS`]); a
//! call of the tool gets that misbehaviour:
//!
//! | tool | reply |
//! | --- | --- |
//! | `no_content` | `204`, no body |
//! | `empty_ok` | `200`, `Content-Length: 0` |
//! | `redirect` | `302` to elsewhere, no body |
//! | `not_found_empty` | `404`, no body |
//! | `error_empty` | `500`, no body |
//! | `cut` | `200` announcing 100 bytes, 10 sent, connection closed |
//! | `cut_chunked` | `200` chunked, one chunk, connection closed without the last chunk |
//! | `drip` | `200` announcing 1000 bytes, one byte every 300 ms |
//! | `forever` | `200` chunked, 64 KiB chunks until the gateway hangs up |
//!
//! Any request whose body is over 64 KiB gets `413` with a JSON `error` at once, before its
//! body is read (an early reply while the gateway still writes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The tools the rogue backend offers, one per misbehaviour.
pub const ROGUE_TOOLS: [&str; 9] = [
    "no_content",
    "empty_ok",
    "redirect",
    "not_found_empty",
    "error_empty",
    "cut",
    "cut_chunked",
    "drip",
    "forever",
];

/// Bodies over this get an early 413.
pub const EARLY_413_OVER: usize = 64 * 1024;
/// The `error` of the early 413.
pub const EARLY_413_ERROR: &str = "payload too large for the rogue backend";

/// Longest time any one connection is served (every loop here is bounded).
const MAX_CONN_TIME: Duration = Duration::from_secs(60);

/// What the rogue backend observed.
#[derive(Debug, Default)]
pub struct RogueStats {
    /// Bytes of the endless reply written so far.
    pub forever_bytes: AtomicU64,
    /// The gateway hung up on the endless reply.
    pub forever_closed: AtomicBool,
    /// The gateway hung up on the dripping reply.
    pub drip_closed: AtomicBool,
    /// Early 413s sent.
    pub early_413s: AtomicU64,
}

/// A running rogue backend; stops accepting on drop.
pub struct RogueBackend {
    port: u16,
    stats: Arc<RogueStats>,
    task: JoinHandle<()>,
}

impl Drop for RogueBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RogueBackend {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> RogueBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(RogueStats::default());
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let stats = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(MAX_CONN_TIME, serve(stream, stats)).await;
                });
            }
        });
        RogueBackend { port, stats, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it observed.
    pub fn stats(&self) -> &RogueStats {
        &self.stats
    }

    /// Whether the endless reply was hung up on.
    pub fn forever_closed(&self) -> bool {
        self.stats.forever_closed.load(Ordering::SeqCst)
    }

    /// Whether the dripping reply was hung up on.
    pub fn drip_closed(&self) -> bool {
        self.stats.drip_closed.load(Ordering::SeqCst)
    }
}

fn tool(name: &str) -> Value {
    json!({"name": name, "scope": "mcp:rogue", "description": format!("Misbehaves: {name}."), "params": {}, "version": "1.0.0"})
}

/// Reads one request (header and, unless it is over [`EARLY_413_OVER`], body). Returns the
/// body, or `None` after answering an early 413 or when the connection is gone.
async fn read_request(stream: &mut TcpStream, stats: &RogueStats) -> Option<Vec<u8>> {
    let head = super::raw::read_request_head(stream).await?;
    if head.length > EARLY_413_OVER {
        stats.early_413s.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": EARLY_413_ERROR}).to_string();
        let reply = format!(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        // Drain what the gateway still sends, for a while, then hang up.
        let mut chunk = [0u8; 8192];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
        })
        .await;
        return None;
    }
    super::raw::read_request_body(stream, head).await
}

async fn write_json(stream: &mut TcpStream, status: &str, body: Value) -> std::io::Result<()> {
    let body = body.to_string();
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await
}

async fn serve(mut stream: TcpStream, stats: Arc<RogueStats>) {
    while let Some(body) = read_request(&mut stream, &stats).await {
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = parsed["method"].as_str().unwrap_or("").to_string();
        let keep = match method.as_str() {
            "list_tools" => {
                let tools: Vec<Value> = ROGUE_TOOLS.iter().map(|t| tool(t)).collect();
                write_json(&mut stream, "200 OK", json!({ "tools": tools }))
                    .await
                    .is_ok()
            }
            "list_prompts" => write_json(&mut stream, "200 OK", json!({"prompts": []}))
                .await
                .is_ok(),
            "list_resource_templates" => {
                write_json(&mut stream, "200 OK", json!({"resourceTemplates": []}))
                    .await
                    .is_ok()
            }
            other => misbehave(&mut stream, other, &stats).await,
        };
        if !keep {
            return;
        }
    }
}

/// Answers a call of `tool`; whether the connection stays usable (a complete reply).
async fn misbehave(stream: &mut TcpStream, tool: &str, stats: &RogueStats) -> bool {
    let raw = |s: &'static str| s.as_bytes();
    let complete = matches!(
        tool,
        "no_content" | "empty_ok" | "redirect" | "not_found_empty" | "error_empty"
    );
    let written = match tool {
        "no_content" => stream.write_all(raw("HTTP/1.1 204 No Content\r\n\r\n")).await,
        "empty_ok" => stream.write_all(raw("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await,
        "redirect" => {
            stream
                .write_all(raw(
                    "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0\r\n\r\n",
                ))
                .await
        }
        "not_found_empty" => {
            stream.write_all(raw("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")).await
        }
        "error_empty" => {
            stream
                .write_all(raw("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"))
                .await
        }
        "cut" => {
            stream
                .write_all(raw(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":",
                ))
                .await
        }
        "cut_chunked" => {
            stream
                .write_all(raw(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\na\r\n{\"partial\"\r\n",
                ))
                .await
        }
        "drip" => {
            let mut r = stream
                .write_all(raw(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n",
                ))
                .await;
            // At most 100 bytes (30 s); the gateway must give up long before.
            for _ in 0..100 {
                if r.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                r = stream.write_all(b"x").await;
            }
            if r.is_err() {
                stats.drip_closed.store(true, Ordering::SeqCst);
            }
            r
        }
        "forever" => {
            let mut r = stream
                .write_all(raw(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
                ))
                .await;
            let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
            chunk.extend(std::iter::repeat_n(b'y', 64 * 1024));
            chunk.extend_from_slice(b"\r\n");
            // At most 4 GiB; the gateway must hang up after its 16 MiB reply limit.
            for _ in 0..65_536 {
                if r.is_err() {
                    break;
                }
                r = stream.write_all(&chunk).await;
                if r.is_ok() {
                    stats
                        .forever_bytes
                        .fetch_add(64 * 1024, Ordering::SeqCst);
                }
            }
            if r.is_err() {
                stats.forever_closed.store(true, Ordering::SeqCst);
            }
            r
        }
        _ => write_json(stream, "404 Not Found", json!({"error": format!("no tool {tool}")})).await,
    };
    let flushed = stream.flush().await;
    complete && written.is_ok() && flushed.is_ok()
}
