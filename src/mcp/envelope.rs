//! The envelope of a request: what it runs under besides its body. For the session-based
//! versions (2025-03-26 to 2025-11-25) that is the `Mcp-Session-Id` (a sealed id naming the
//! negotiated version and the client's capabilities) and the `MCP-Protocol-Version` header;
//! the stateless 2026-07-28 era carries the same facts in each request's `_meta`, and plugs
//! in here so that no handler needs to know which era it serves.
//!
//! Session-id validation lives here once, for POST, GET and DELETE.

use std::sync::Arc;

use cortex_filters::jsonrpc::{self, codes, Id};
use cortex_filters::version::{self, ProtocolVersion};
use serde_json::json;

use crate::auth::Principal;
use crate::config::SessionMode;
use crate::http::Answer;
use crate::record::Stage;
use crate::sessions::SessionState;
use crate::state::Shared;

use super::request::{Refusal, SessionHeader};

/// What a request needs of a session.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// A POST: a session is optional unless `sessions.mode: required`; errors carry the
    /// request's id.
    Post {
        /// `sessions.mode: required`.
        required: bool,
        /// The JSON-RPC id, when the body is one request.
        id: Option<&'a Id>,
    },
    /// The notification stream (GET): a session is required.
    Stream,
    /// Ending a session (DELETE): a session is required.
    End,
}

fn rpc_answer(status: u16, id: Option<&Id>, code: i64, message: &str) -> Answer {
    Answer::json(status, jsonrpc::error(id, code, message, None))
}

/// The caller's session, as `need` requires it.
pub fn session(
    shared: &Shared,
    header: &SessionHeader,
    principal: &Principal,
    need: Need<'_>,
) -> Result<Option<Arc<SessionState>>, Refusal> {
    let id = match need {
        Need::Post { id, .. } => id,
        _ => None,
    };
    let sid = match header {
        SessionHeader::Absent => {
            return match need {
                Need::Post { required: false, .. } => Ok(None),
                Need::Post { required: true, id } => Err(Refusal::new(
                    Stage::Session,
                    "session id unknown, expired or required",
                    rpc_answer(400, id, codes::INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required (sessions.mode: required); call initialize first"),
                )),
                Need::Stream => Err(Refusal::new(
                    Stage::Session,
                    "the notification stream needs a session id",
                    rpc_answer(400, None, codes::INVALID_REQUEST, "Bad Request: the notification stream needs an Mcp-Session-Id header; call initialize first"),
                )),
                Need::End => Err(Refusal::new(
                    Stage::Session,
                    "session id missing, unknown or expired",
                    rpc_answer(400, None, codes::INVALID_REQUEST, "Bad Request: DELETE needs an Mcp-Session-Id header"),
                )),
            };
        }
        SessionHeader::Present(sid) => Some(sid.as_str()),
        SessionHeader::Unreadable => None,
    };
    let valid = sid.and_then(|sid| {
        shared
            .sessions
            .validate(sid, &principal.sub, &principal.grants)
            .ok()
    });
    match valid {
        Some(s) => Ok(Some(s)),
        None => Err(match need {
            Need::Post { .. } => Refusal::new(
                Stage::Session,
                "session id unknown, expired or required",
                rpc_answer(
                    404,
                    id,
                    codes::SESSION_ERROR,
                    "Session not found or expired: initialize a new session",
                ),
            ),
            Need::Stream => Refusal::new(
                Stage::Session,
                "session id unknown or expired",
                rpc_answer(
                    404,
                    None,
                    codes::SESSION_ERROR,
                    "Session not found or expired",
                ),
            ),
            Need::End => Refusal::new(
                Stage::Session,
                "session id missing, unknown or expired",
                rpc_answer(
                    404,
                    None,
                    codes::SESSION_ERROR,
                    "Session not found or expired",
                ),
            ),
        }),
    }
}

/// The envelope of a POST.
pub struct Envelope {
    /// The caller's session.
    pub session: Option<Arc<SessionState>>,
    /// The version in force: the `MCP-Protocol-Version` header's (2025-03-26 when absent,
    /// as the specification says).
    pub version: ProtocolVersion,
}

/// Opens the envelope of a POST: the `MCP-Protocol-Version` header (not for
/// `initialize`), then the session.
pub fn open(
    shared: &Shared,
    sessions_mode: SessionMode,
    header: &SessionHeader,
    version_header: Option<&http::HeaderValue>,
    principal: &Principal,
    is_initialize: bool,
    first_id: Option<&Id>,
) -> Result<Envelope, Refusal> {
    if is_initialize {
        return Ok(Envelope {
            session: None,
            version: version::HEADERLESS_DEFAULT,
        });
    }
    let header_version = match version::from_header(version_header.map(|v| v.as_bytes())) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("Bad Request: {e}");
            let supported: Vec<&str> = version::SUPPORTED.iter().map(|v| v.as_str()).collect();
            let answer = Answer::json(
                400,
                jsonrpc::error(
                    first_id,
                    codes::INVALID_REQUEST,
                    &msg,
                    Some(&json!({ "supported": supported })),
                ),
            );
            return Err(Refusal::new(Stage::Version, msg, answer));
        }
    };
    let need = Need::Post {
        required: sessions_mode == SessionMode::Required,
        id: first_id,
    };
    let session = session(shared, header, principal, need)?;
    Ok(Envelope {
        session,
        version: header_version,
    })
}
