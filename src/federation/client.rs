//! Calls to contract backends outside the proxy path: discovery, prompts, resources,
//! completions, batches and bodies too large for Pingora's retry buffer. Uses Pingora's own
//! connector so these calls share its connection pool and TLS stack.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cortex_filters::contract::TransportFailure;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use super::backend::Backend;

/// The largest backend reply the gateway accepts (replies are buffered to be mapped).
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A backend reply as received.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `X-Cortex-Reply`.
    pub reply_kind: Option<String>,
    /// Body.
    pub body: Bytes,
}

impl RawReply {
    /// Borrowed view for the contract mappers.
    pub fn as_reply(&self) -> cortex_filters::contract::Reply<'_> {
        cortex_filters::contract::Reply {
            status: self.status,
            content_type: self.content_type.as_deref(),
            reply_kind: self.reply_kind.as_deref(),
            body: &self.body,
        }
    }
}

/// A shared client for contract calls.
pub struct ContractClient {
    connector: Connector,
}

impl Default for ContractClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ContractClient {
    /// A client with its own connection pool.
    pub fn new() -> Self {
        ContractClient {
            connector: Connector::new(None),
        }
    }

    /// POSTs `body` to the backend's contract path with `headers` (name, value), bounded by the
    /// backend timeout as a whole. Never retried: the call may have reached the backend.
    pub async fn post(
        &self,
        backend: &Backend,
        body: Bytes,
        headers: &[(&'static str, String)],
    ) -> Result<RawReply, TransportFailure> {
        let timeout = backend.timeout;
        match tokio::time::timeout(timeout, self.post_inner(backend, body, headers)).await {
            Ok(r) => r,
            Err(_) => Err(TransportFailure::Timeout {
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    async fn post_inner(
        &self,
        backend: &Backend,
        body: Bytes,
        headers: &[(&'static str, String)],
    ) -> Result<RawReply, TransportFailure> {
        let peer = backend
            .peer()
            .ok_or_else(|| TransportFailure::Unreachable {
                reason: format!("host {} does not resolve", backend.host),
            })?;
        let unreachable = |e: Box<pingora::Error>| classify(e, backend.timeout);
        let (mut session, _reused) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(unreachable)?;
        let mut req =
            RequestHeader::build("POST", backend.path.as_bytes(), Some(headers.len() + 4))
                .map_err(unreachable)?;
        let mut insert = |name: &'static str, value: &str| -> Result<(), TransportFailure> {
            req.insert_header(name, value)
                .map_err(|e| TransportFailure::Unreachable {
                    reason: format!("invalid header {name}: {e}"),
                })
        };
        insert("host", &backend.host_header)?;
        insert("content-type", "application/json")?;
        insert("accept", "application/json")?;
        insert("content-length", &body.len().to_string())?;
        for (name, value) in headers {
            insert(name, value)?;
        }
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(unreachable)?;
        session
            .write_request_body(body, false)
            .await
            .map_err(unreachable)?;
        session.finish_request_body().await.map_err(unreachable)?;
        loop {
            session.read_response_header().await.map_err(unreachable)?;
            match session.response_header() {
                Some(h) if h.status.is_informational() => continue,
                Some(_) => break,
                None => {
                    return Err(TransportFailure::Unreachable {
                        reason: "no response header".into(),
                    })
                }
            }
        }
        let (status, content_type, reply_kind) = match session.response_header() {
            Some(h) => (
                h.status.as_u16(),
                header_str(h, "content-type"),
                header_str(h, cortex_filters::contract::REPLY_KIND_HEADER),
            ),
            None => {
                return Err(TransportFailure::Unreachable {
                    reason: "no response header".into(),
                })
            }
        };
        let mut buf = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(unreachable)? {
            if buf.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(TransportFailure::Unreachable {
                    reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        self.connector
            .release_http_session(session, &peer, Some(Duration::from_secs(30)))
            .await;
        Ok(RawReply {
            status,
            content_type,
            reply_kind,
            body: buf.freeze(),
        })
    }
}

fn header_str(h: &pingora::http::ResponseHeader, name: &str) -> Option<String> {
    h.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Maps a pingora error to a transport failure (timeouts are named as such).
pub fn classify(e: Box<pingora::Error>, timeout: Duration) -> TransportFailure {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => TransportFailure::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        },
        ConnectRefused => TransportFailure::Unreachable {
            reason: "connection refused".into(),
        },
        _ => TransportFailure::Unreachable {
            reason: short_reason(&e),
        },
    }
}

fn short_reason(e: &pingora::Error) -> String {
    let mut s = e.etype().as_str().to_string();
    if let Some(ctx) = e.context.as_ref() {
        s.push_str(": ");
        s.push_str(ctx.as_str());
    }
    s.chars().take(200).collect()
}
