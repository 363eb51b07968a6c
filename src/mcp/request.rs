//! One request on the MCP endpoint: the per-request context Pingora carries across phases,
//! the request's facts copied once, and how a request stops early (a refusal recorded with
//! its stage and reason, or an answer).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Method;
use pingora::proxy::Session;

use crate::edge::{BodyPermit, Conn};
use crate::http::{header, request_host, Answer};
use crate::record::{RequestRecord, Stage};

/// Per-request state carried across Pingora phases.
pub struct RequestCtx {
    /// The request's record (audit trail, metrics).
    pub record: RequestRecord,
    /// The allowed browser origin, echoed in CORS headers.
    pub cors_origin: Option<String>,
    /// When the request arrived.
    pub started: Instant,
    /// Counts the request as in flight until the context is dropped (graceful shutdown
    /// waits for it).
    pub in_flight: Option<crate::drain::InFlight>,
    /// The connection's reading state (its deadlines), when it came through the edge.
    pub conn: Option<Arc<Conn>>,
    /// The body-budget bytes this request holds, released when it ends.
    pub body_permit: BodyPermit,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            record: RequestRecord::default(),
            cors_origin: None,
            started: Instant::now(),
            in_flight: None,
            conn: None,
            body_permit: BodyPermit::default(),
        }
    }
}

/// The `Mcp-Session-Id` header as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionHeader {
    /// No header.
    Absent,
    /// A header of visible ASCII.
    Present(String),
    /// A header that cannot be a session id (non-ASCII bytes): answered like a tampered id.
    Unreadable,
}

impl SessionHeader {
    /// The id, when one is readable.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SessionHeader::Present(s) => Some(s),
            _ => None,
        }
    }
}

/// What the transport needs of the request head, copied once.
#[derive(Debug)]
pub struct RequestFacts {
    /// HTTP method.
    pub method: Method,
    /// `Host` (or the authority of an absolute-form target).
    pub host: Option<String>,
    /// Browser `Origin`.
    pub origin: Option<String>,
    /// `Mcp-Session-Id`.
    pub session_id: SessionHeader,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `X-Dev-Mode` (the Cortex development bypass).
    pub dev_mode: Option<String>,
    /// The peer's address.
    pub peer: Option<IpAddr>,
    /// `Accept`.
    pub accept: Option<String>,
    /// `X-Cortex-Tool-Mode`.
    pub tool_mode: Option<String>,
    /// `X-Cortex-Backends`.
    pub backends: Option<String>,
    /// `Last-Event-ID`.
    pub last_event_id: Option<String>,
    /// `MCP-Protocol-Version`, as sent.
    pub protocol_version: Option<http::HeaderValue>,
}

impl RequestFacts {
    /// Copies the facts of `session`'s request head.
    pub fn of(session: &Session) -> RequestFacts {
        let owned = |name: &str| header(session, name).map(str::to_string);
        let session_id = match session.req_header().headers.get("mcp-session-id") {
            None => SessionHeader::Absent,
            Some(v) => match v.to_str() {
                Ok(s) => SessionHeader::Present(s.to_string()),
                Err(_) => SessionHeader::Unreadable,
            },
        };
        RequestFacts {
            method: session.req_header().method.clone(),
            host: request_host(session),
            origin: owned("origin"),
            session_id,
            authorization: owned("authorization"),
            dev_mode: owned("x-dev-mode"),
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            accept: owned("accept"),
            tool_mode: owned("x-cortex-tool-mode"),
            backends: owned("x-cortex-backends"),
            last_event_id: owned("last-event-id"),
            protocol_version: session
                .req_header()
                .headers
                .get("mcp-protocol-version")
                .cloned(),
        }
    }
}

/// The gateway refused the request: where, why, and what to answer.
#[derive(Debug)]
pub struct Refusal {
    /// The stage that refused it (recorded).
    pub stage: Stage,
    /// Why, for the record.
    pub reason: Cow<'static, str>,
    /// What the client gets.
    pub answer: Answer,
    /// Whether the connection must be closed after the answer (the rest of a body that was
    /// not read is still on it).
    pub close: bool,
}

impl Refusal {
    /// A refusal at `stage` answered with `answer`.
    pub fn new(stage: Stage, reason: impl Into<Cow<'static, str>>, answer: Answer) -> Self {
        Refusal {
            stage,
            reason: reason.into(),
            answer,
            close: false,
        }
    }

    /// The same refusal, closing the connection after the answer.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

/// Why a request on the MCP endpoint stopped before it was dispatched.
#[derive(Debug)]
pub enum Stop {
    /// Refused (recorded with its stage).
    Refused(Refusal),
    /// Answered without a refusal (a CORS preflight).
    Answered(Answer),
    /// The connection failed.
    Failed(Box<pingora::Error>),
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Self {
        Stop::Refused(r)
    }
}

impl From<Box<pingora::Error>> for Stop {
    fn from(e: Box<pingora::Error>) -> Self {
        Stop::Failed(e)
    }
}
