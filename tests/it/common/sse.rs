//! A minimal Server-Sent Events reader for the gateway's GET stream and SSE POST replies.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// One SSE event (comments are collected separately).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    /// Data lines joined with `\n` ("" for a priming event).
    pub data: String,
}

impl SseEvent {
    /// The data as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Parses one event block (the text between blank lines). Returns the event (if the block
/// has any field) and its comment lines.
fn parse_block(block: &str) -> (Option<SseEvent>, Vec<String>) {
    let mut event = SseEvent::default();
    let mut has_field = false;
    let mut data_lines = Vec::new();
    let mut comments = Vec::new();
    for line in block.split('\n') {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        has_field = true;
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => data_lines.push(value.to_owned()),
            _ => {}
        }
    }
    event.data = data_lines.join("\n");
    (has_field.then_some(event), comments)
}

/// Parses a complete SSE body into its events.
pub fn parse_sse_body(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(body).replace('\r', "");
    text.split("\n\n")
        .filter_map(|block| parse_block(block).0)
        .collect()
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A live SSE response read event by event.
pub struct SseStream {
    pub status: u16,
    pub headers: HeaderMap,
    stream: ByteStream,
    /// Unparsed bytes (with `\r` removed; kept as bytes so a UTF-8 character split across
    /// chunks is decoded whole).
    buf: Vec<u8>,
    /// Comment lines seen so far (e.g. `keepalive`).
    pub comments: Vec<String>,
    /// Whether the server closed the stream.
    pub closed: bool,
}

impl SseStream {
    pub fn new(resp: reqwest::Response) -> SseStream {
        SseStream {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
            comments: Vec::new(),
            closed: false,
        }
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next event within `timeout` (comments are recorded, not returned); `None` on
    /// timeout or end of stream.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                let (event, comments) = parse_block(&block);
                self.comments.extend(comments);
                if let Some(event) = event {
                    return Some(event);
                }
            }
            if self.closed {
                return None;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return None;
            }
            match tokio::time::timeout(remaining, self.stream.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => self.closed = true,
                Ok(Some(Ok(chunk))) => self.buf.extend(chunk.iter().filter(|b| **b != b'\r')),
            }
        }
    }

    /// The next event carrying JSON data (skips priming events with empty data).
    pub async fn next_message(&mut self, timeout: Duration) -> Option<(SseEvent, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let event = self.next_event(remaining).await?;
            if let Some(json) = event.json() {
                return Some((event, json));
            }
        }
    }

    /// Waits for a JSON message whose `method` is `method`; returns it with its event.
    pub async fn wait_for_method(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Option<(SseEvent, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (event, json) = self.next_message(remaining).await?;
            if json["method"] == method {
                return Some((event, json));
            }
        }
    }
}
