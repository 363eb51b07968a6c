//! The Pingora `ProxyHttp` implementation. Each phase delegates: routing and answers live in
//! `mcp/`, decisions in `cortex-filters`, backend plumbing in `federation/`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cortex_filters::contract::{self, ReplyContext};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use serde_json::json;
use tracing::debug;

use crate::federation::client::{classify, MAX_REPLY_BYTES};
use crate::mcp::dispatch::{outcome_bytes, Forward};
use crate::mcp::http::{add_cors, write_answer, Answer};
use crate::mcp::transport;
use crate::state::AppState;

/// The gateway service.
pub struct Gateway {
    state: Arc<AppState>,
    dev_as: Option<Arc<crate::dev_as::DevAuthServer>>,
}

impl Gateway {
    /// Wraps the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Gateway {
            state,
            dev_as: None,
        }
    }

    /// Also serves the built-in development authorization server (its metadata and
    /// `/oauth/*` endpoints) on this gateway's listeners.
    pub fn with_dev_authorization_server(
        mut self,
        dev_as: Arc<crate::dev_as::DevAuthServer>,
    ) -> Self {
        self.dev_as = Some(dev_as);
        self
    }
}

/// Per-request state carried across Pingora phases.
pub struct RequestCtx {
    /// The backend call decided in `request_filter`.
    pub forward: Option<Forward>,
    /// The allowed browser origin, echoed in CORS headers.
    pub cors_origin: Option<String>,
    reply_status: u16,
    reply_content_type: Option<String>,
    reply_kind: Option<String>,
    reply_body: BytesMut,
    reply_overflow: bool,
    response_started: bool,
    started: Instant,
    /// What the audit record of this request needs (see `audit::ctx`).
    pub audit: crate::audit::AuditCtx,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            forward: None,
            cors_origin: None,
            reply_status: 0,
            reply_content_type: None,
            reply_kind: None,
            reply_body: BytesMut::new(),
            reply_overflow: false,
            response_started: false,
            started: Instant::now(),
            audit: crate::audit::AuditCtx::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let keepalive = self.state.config.server.keepalive_timeout.as_secs();
        session.set_keepalive(Some(keepalive));
        let path = session.req_header().uri.path().to_string();
        if path == self.state.mcp_path {
            return transport::handle(&self.state, session, ctx).await;
        }
        if path.starts_with("/.well-known/") {
            let req = session.req_header();
            let preflight = req
                .headers
                .get("access-control-request-headers")
                .and_then(|v| v.to_str().ok());
            if let Some(answer) =
                crate::auth::metadata::well_known(&self.state, &req.method, &path, preflight)
            {
                write_answer(session, answer, None).await?;
                return Ok(true);
            }
        }
        if let Some(dev_as) = self
            .dev_as
            .as_ref()
            .filter(|_| crate::dev_as::DevAuthServer::owns_path(&path))
        {
            return dev_as.serve(&self.state, session).await;
        }
        let answer = match path.as_str() {
            "/healthz" => Answer::json(200, &b"{\"status\":\"ok\"}"[..]),
            "/readyz" => readiness(&self.state),
            _ => Answer::json(
                404,
                serde_json::to_vec(&json!({
                    "error": "not_found",
                    "error_description": format!("nothing here; the MCP endpoint is {}", self.state.mcp_path),
                }))
                .unwrap_or_default(),
            ),
        };
        write_answer(session, answer, None).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &ctx.forward {
            Some(f) => match f.backend.peer() {
                Some(peer) => Ok(Box::new(peer)),
                None => {
                    Error::e_explain(ErrorType::ConnectNoRoute, "backend host does not resolve")
                }
            },
            None => Error::e_explain(
                ErrorType::InternalError,
                "no backend chosen for this request",
            ),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(f) = &ctx.forward else {
            return Error::e_explain(
                ErrorType::InternalError,
                "no backend chosen for this request",
            );
        };
        // A fresh header: nothing of the client's request (cookies, session ids, its own
        // Authorization) leaks to the backend except what the contract says.
        let mut req =
            RequestHeader::build("POST", f.backend.path.as_bytes(), Some(f.headers.len() + 4))?;
        req.insert_header("host", &f.backend.host_header)?;
        req.insert_header("content-type", "application/json")?;
        req.insert_header("accept", "application/json")?;
        req.insert_header("content-length", f.body.len().to_string())?;
        for (name, value) in &f.headers {
            req.insert_header(*name, value)?;
        }
        *upstream_request = req;
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(f) = &ctx.forward {
            *body = if end_of_stream {
                Some(f.body.clone())
            } else {
                None
            };
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.forward.is_none() {
            return Ok(());
        }
        ctx.reply_status = upstream_response.status.as_u16();
        let get = |name: &str| {
            upstream_response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        ctx.reply_content_type = get("content-type");
        ctx.reply_kind = get(contract::REPLY_KIND_HEADER);
        let mut h = ResponseHeader::build(200, Some(5))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("cache-control", "no-store")?;
        if !session.as_downstream().is_http2() {
            h.insert_header("transfer-encoding", "chunked")?;
        }
        if let Some(origin) = &ctx.cors_origin {
            add_cors(&mut h, origin)?;
        }
        *upstream_response = h;
        ctx.response_started = true;
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        let Some(f) = &ctx.forward else {
            return Ok(None);
        };
        if let Some(chunk) = body.take() {
            if ctx.reply_body.len() + chunk.len() > MAX_REPLY_BYTES {
                ctx.reply_overflow = true;
            } else {
                ctx.reply_body.extend_from_slice(&chunk);
            }
        }
        if end_of_stream {
            let rctx = ReplyContext {
                backend_id: &f.backend.id,
                method: &f.method,
            };
            let outcome = if ctx.reply_overflow {
                contract::map_transport_failure(
                    &contract::TransportFailure::Unreachable {
                        reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                    },
                    rctx,
                )
            } else {
                contract::map_tool_reply(
                    contract::Reply {
                        status: ctx.reply_status,
                        content_type: ctx.reply_content_type.as_deref(),
                        reply_kind: ctx.reply_kind.as_deref(),
                        body: &ctx.reply_body,
                    },
                    rctx,
                )
            };
            ctx.audit.outcome(&outcome);
            *body = Some(Bytes::from(outcome_bytes(&f.rpc_id, outcome)));
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (Some(f), false) = (&ctx.forward, ctx.response_started) else {
            let code = match e.etype() {
                ErrorType::HTTPStatus(c) => *c,
                _ => 0,
            };
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        };
        let failure = classify(Box::new(clone_error(e)), f.backend.timeout);
        let rctx = ReplyContext {
            backend_id: &f.backend.id,
            method: &f.method,
        };
        let outcome = contract::map_transport_failure(&failure, rctx);
        ctx.audit.outcome(&outcome);
        let body = outcome_bytes(&f.rpc_id, outcome);
        let cors = ctx.cors_origin.clone();
        match write_answer(session, Answer::json(200, body), cors.as_deref()).await {
            Ok(()) => FailToProxy {
                error_code: 200,
                can_reuse_downstream: true,
            },
            Err(_) => FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            },
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        debug!(
            method = %session.req_header().method,
            path = %session.req_header().uri.path(),
            status,
            tool = ctx.forward.as_ref().map(|f| f.tool.as_str()),
            elapsed_us = ctx.started.elapsed().as_micros() as u64,
            error = e.map(|e| e.to_string()),
            "request"
        );
        let elapsed = ctx.started.elapsed();
        crate::audit::ctx::finish(&self.state, session, e, ctx, elapsed);
    }
}

/// Pingora errors are not `Clone`; keep the type and context for classification.
fn clone_error(e: &Error) -> Error {
    let mut out = Error::new(e.etype().clone());
    out.context = e.context.as_ref().map(|c| c.as_str().to_string().into());
    *out
}

fn readiness(state: &AppState) -> Answer {
    let health = state.catalog.health();
    let ready = state.catalog.ready();
    let backends: Vec<_> = health
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "healthy": b.healthy,
                "stale": b.stale,
                "tools": b.tool_count(),
                "lastError": b.last_error,
            })
        })
        .collect();
    let problems: Vec<String> = state
        .catalog
        .current()
        .merged
        .problems()
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    let (auth_ready, auth) = crate::auth::metadata::readiness(state);
    let ready = ready && auth_ready;
    let body = json!({"ready": ready, "backends": backends, "problems": problems, "auth": auth});
    Answer::json(
        if ready { 200 } else { 503 },
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}
