//! Small HTTP helpers shared by every edge route: answers the gateway writes itself, CORS,
//! request headers, the bounded body read. The bottom floor of the house: it imports no
//! feature.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Headers a browser may send to the MCP endpoint (CORS preflight).
pub const CORS_ALLOW_HEADERS: &str = "content-type, authorization, accept, mcp-session-id, \
     mcp-protocol-version, last-event-id, x-dev-mode, x-cortex-backends, x-cortex-tool-mode";

/// Headers a browser may read from MCP responses.
pub const CORS_EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, www-authenticate";

/// A response built by the gateway itself.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content type (None for an empty body).
    pub content_type: Option<&'static str>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Bytes,
    /// More body after `body`, written as it is: a cached list page shared with the cache,
    /// after the answer's own head (`None` for every other answer; boxed, so that the
    /// refusals carrying an answer stay small).
    pub tail: Option<Box<Bytes>>,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Answer {
            status,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body: body.into(),
            tail: None,
        }
    }

    /// A JSON answer written as `head` then `tail` (no copy of `tail` into one buffer).
    pub fn json_parts(status: u16, head: impl Into<Bytes>, tail: Bytes) -> Self {
        Answer {
            tail: Some(Box::new(tail)),
            ..Answer::json(status, head)
        }
    }

    /// The body's length.
    pub fn body_len(&self) -> usize {
        self.body.len() + self.tail.as_ref().map_or(0, |t| t.len())
    }

    /// An empty answer (202, 204, 405…).
    pub fn empty(status: u16) -> Self {
        Answer {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::new(),
            tail: None,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Writes `answer` (plus CORS headers for an allowed browser origin) and ends the response.
pub async fn write_answer(
    session: &mut Session,
    answer: Answer,
    cors_origin: Option<&str>,
) -> Result<()> {
    let mut h = ResponseHeader::build(answer.status, Some(answer.headers.len() + 5))?;
    if let Some(ct) = answer.content_type {
        h.insert_header("content-type", ct)?;
    }
    let body_len = answer.body_len();
    h.insert_header("content-length", body_len.to_string())?;
    h.insert_header("cache-control", "no-store")?;
    for (name, value) in answer.headers {
        h.append_header(name, value)?;
    }
    if let Some(origin) = cors_origin {
        add_cors(&mut h, origin)?;
    }
    let empty = body_len == 0;
    session.write_response_header(Box::new(h), empty).await?;
    // The head is buffered with the response header; a large tail then goes to the socket
    // as it is.
    let tail = answer.tail.map(|t| *t).filter(|t| !t.is_empty());
    if !answer.body.is_empty() {
        session
            .write_response_body(Some(answer.body), tail.is_none())
            .await?;
    }
    if let Some(tail) = tail {
        session.write_response_body(Some(tail), true).await?;
    }
    Ok(())
}

/// CORS headers for an allowed origin on an actual (non-preflight) response.
pub fn add_cors(h: &mut ResponseHeader, origin: &str) -> Result<()> {
    h.insert_header("access-control-allow-origin", origin)?;
    h.insert_header("access-control-expose-headers", CORS_EXPOSE_HEADERS)?;
    h.append_header("vary", "origin")?;
    Ok(())
}

/// A request header as text (`None` when absent or not visible ASCII).
pub fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// The `Host` the request was sent to: the `Host` header, else the authority of an
/// absolute-form request target.
pub fn request_host(session: &Session) -> Option<String> {
    header(session, "host")
        .map(str::to_string)
        .or_else(|| session.req_header().uri.authority().map(|a| a.to_string()))
}

/// The outcome of reading a request body under a byte limit.
#[derive(Debug)]
pub enum BodyRead {
    /// The whole body.
    Complete(Bytes),
    /// The body is larger than the limit (declared or read); the rest was not read.
    TooLarge,
}

/// Reads the whole request body, at most `limit` bytes. Answers `Expect: 100-continue`
/// first, and refuses a declared `Content-Length` over the limit before reading anything.
pub async fn read_body(session: &mut Session, limit: u64) -> Result<BodyRead> {
    let declared = header(session, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(BodyRead::TooLarge);
    }
    let expects_continue =
        header(session, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        session.write_continue_response().await?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit) as usize);
    while let Some(chunk) = session.read_request_body().await? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Ok(BodyRead::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(BodyRead::Complete(buf.freeze()))
}
