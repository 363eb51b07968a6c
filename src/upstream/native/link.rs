//! What both native transports offer a call: send a request and receive what the server
//! sends for it (its notifications and requests during the call, then its response), send a
//! notification, answer a server request. Streamable HTTP ([`super::http`]) and stdio
//! ([`super::stdio`]) implement it; the backend ([`super::NativeBackend`]) drives calls over
//! it without knowing which one it has.

use std::sync::Arc;

use async_trait::async_trait;
use cortex_filters::native::Upstream;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Sink;

/// One item of a request's exchange.
#[derive(Debug)]
pub enum Exchanged {
    /// A message of the server for this request (its response ends the exchange).
    Message(Upstream),
    /// The exchange cannot go on: the connection broke, the process exited, the reply was
    /// garbage. Said once, as the last item.
    Failed(String),
}

/// The receiving side of one request.
pub type Exchange = mpsc::Receiver<Exchanged>;

/// How many items of one exchange may wait for the call's driver (the server waits beyond).
pub const EXCHANGE_QUEUE: usize = 64;

/// Why a request could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The upstream session is gone (HTTP 404 on a session): initialize again, once.
    SessionGone,
    /// The server refused the request's credential (HTTP 401): a per-user credential source
    /// may renew it once ([`super::UpstreamAuth::rejected`]).
    Unauthorized(String),
    /// Anything else, in words for the caller.
    Failed(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::SessionGone => f.write_str("the upstream session expired"),
            LinkError::Unauthorized(why) | LinkError::Failed(why) => f.write_str(why),
        }
    }
}

/// A call as its transport needs to know it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The gateway's key of the call (routing on a shared pipe).
    pub key: u64,
    /// The progress token the gateway put in the request, if any.
    pub progress_token: Option<String>,
    /// The `Authorization` value for this request (HTTP only), if any.
    pub authorization: Option<String>,
    /// The caller's client capabilities (bits of `cortex_filters::session::caps`): declared
    /// in the request's `_meta` to a 2026-07-28 upstream; 0 for discovery.
    pub client_caps: u8,
    /// Headers of this request alone (a 2026-07-28 upstream's `Mcp-Param-*`), lower-case.
    pub headers: Vec<(String, String)>,
}

/// A connection to one upstream server (an HTTP session, or a child's pipes).
#[async_trait]
pub trait Link: Send + Sync {
    /// Sends request `method` with `params`; the returned exchange carries what the server
    /// sends for it. The id is the link's own.
    async fn request(
        &self,
        method: &str,
        params: Value,
        call: Outgoing,
    ) -> Result<(Value, Exchange), LinkError>;

    /// Sends a notification.
    async fn notify(&self, method: &str, params: Value, authorization: Option<String>);

    /// Answers the server's request `id`.
    async fn respond(
        &self,
        id: Value,
        outcome: Result<Value, Value>,
        authorization: Option<String>,
    );

    /// Whether the link can still be used (a child that exited cannot).
    fn alive(&self) -> bool;
}

/// An initialized connection: the link and what the server said in `initialize`.
pub struct Peer {
    /// The link.
    pub link: Arc<dyn Link>,
    /// The server's `initialize` result, checked.
    pub init: cortex_filters::native::Initialized,
}

/// Delivers what is not for one call (catalog changes, resource updates); kept by the links.
pub type SinkRef = Arc<Sink>;
