//! Reading a request body under the edge's limits: the per-request byte limit, the body
//! deadline, and the process-wide body budget.
//!
//! The budget is a semaphore counted in bytes. A request takes its declared
//! `Content-Length` before reading anything, or (chunked) each chunk as it arrives, and
//! keeps what it took until the request ends ([`BodyPermit`] lives in the request's
//! context): the body, its parsed form and the answer built from it are alive that long.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::{ErrorType, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::header;

use super::{Conn, Edge, EdgeCounters};

/// Body bytes of the budget held by one request.
#[derive(Debug, Default)]
pub struct BodyPermit(Option<OwnedSemaphorePermit>);

impl BodyPermit {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Takes `n` more bytes of `budget`, at once or not at all.
    pub(super) fn grow(&mut self, budget: &Arc<Semaphore>, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match budget.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                match &mut self.0 {
                    Some(held) => held.merge(p),
                    None => self.0 = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// The outcome of reading a request body at the edge.
#[derive(Debug)]
pub enum EdgeBodyRead {
    /// The whole body.
    Complete(Bytes),
    /// Larger than the request's limit (declared or read); the rest was not read.
    TooLarge,
    /// The body budget is spent: try again shortly (503 with `Retry-After`).
    OverBudget,
    /// The body did not arrive within `server.limits.body_timeout` (408).
    TimedOut,
    /// The body's framing is broken (a malformed chunk) (400).
    Malformed(String),
}

/// Reads the whole request body, at most `limit` bytes, under the connection's body
/// deadline and `edge`'s budget (the bytes taken are added to `permit`). Answers
/// `Expect: 100-continue` first, and refuses a declared `Content-Length` over the limit
/// or over the budget before reading anything. Only a broken connection is an `Err`.
pub async fn read_body(
    session: &mut Session,
    limit: u64,
    edge: &Edge,
    conn: Option<&Conn>,
    permit: &mut BodyPermit,
) -> Result<EdgeBodyRead> {
    let outcome = read(session, limit, edge, conn, permit).await;
    if let Some(conn) = conn {
        conn.body_done();
    }
    if matches!(outcome, Ok(EdgeBodyRead::OverBudget)) {
        EdgeCounters::inc(&edge.counters.body_budget_refusals);
    }
    outcome
}

async fn read(
    session: &mut Session,
    limit: u64,
    edge: &Edge,
    conn: Option<&Conn>,
    permit: &mut BodyPermit,
) -> Result<EdgeBodyRead> {
    let declared = header(session, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(EdgeBodyRead::TooLarge);
    }
    let budget = edge.budget();
    if let Some(n) = declared {
        if !permit.grow(budget, n as usize) {
            return Ok(EdgeBodyRead::OverBudget);
        }
    }
    let expects_continue =
        header(session, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        session.write_continue_response().await?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit) as usize);
    loop {
        let chunk = match session.read_request_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                if conn.is_some_and(Conn::body_expired) {
                    return Ok(EdgeBodyRead::TimedOut);
                }
                return match e.etype() {
                    ErrorType::ReadError
                    | ErrorType::ReadTimedout
                    | ErrorType::ConnectionClosed
                    | ErrorType::WriteError => Err(e),
                    _ => Ok(EdgeBodyRead::Malformed(
                        e.context
                            .as_ref()
                            .map(|c| c.as_str().to_string())
                            .unwrap_or_else(|| e.etype().as_str().to_string()),
                    )),
                };
            }
        };
        let len = (buf.len() + chunk.len()) as u64;
        if len > limit {
            return Ok(EdgeBodyRead::TooLarge);
        }
        if declared.is_none() && !permit.grow(budget, chunk.len()) {
            return Ok(EdgeBodyRead::OverBudget);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(EdgeBodyRead::Complete(buf.freeze()))
}
