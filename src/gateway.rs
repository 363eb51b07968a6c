//! The Pingora `ProxyHttp` implementation: one routing table and a delegate per route.
//!
//! Every request is answered by the gateway itself in `request_filter`: the MCP endpoint
//! calls backends through the upstream seam (`crate::upstream`) on Pingora's connector, so
//! a reply is complete and mapped before the client's status is committed, and the whole
//! call is bounded by the backend's timeout (docs/architecture.md explains why the proxy
//! phases are not used for backend calls). `logging` hands the request's record to its
//! consumers.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use serde_json::json;
use tracing::debug;

use crate::http::{header, write_answer, Answer};
use crate::mcp::request::RequestCtx;
use crate::mcp::transport;
use crate::record::{clean, Facts, MAX_IDENT};
use crate::state::AppState;
use crate::well_known;

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

/// Where a request goes, by path.
enum Route {
    /// The MCP endpoint.
    Mcp,
    /// `/.well-known/*`.
    WellKnown,
    /// The development authorization server's routes.
    DevAuthServer,
    /// `/healthz`.
    Health,
    /// `/readyz`.
    Ready,
    /// `/admin/*`: the admin API.
    Admin,
    /// Anything else.
    NotFound,
}

impl Gateway {
    fn route(&self, path: &str) -> Route {
        if path == self.state.shared.mcp_path {
            Route::Mcp
        } else if path.starts_with("/.well-known/") {
            Route::WellKnown
        } else if self.dev_as.is_some() && crate::dev_as::DevAuthServer::owns_path(path) {
            Route::DevAuthServer
        } else if path == "/healthz" {
            Route::Health
        } else if path == "/readyz" {
            Route::Ready
        } else if path == "/admin" || path.starts_with("/admin/") {
            Route::Admin
        } else {
            Route::NotFound
        }
    }

    fn not_found(&self) -> Answer {
        let body = json!({
            "error": "not_found",
            "error_description": format!("nothing here; the MCP endpoint is {}", self.state.shared.mcp_path),
        });
        Answer::json(404, serde_json::to_vec(&body).unwrap_or_default())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let policy = self.state.policy();
        // Only where Pingora keeps the connection: it closes, rightly, after a request it
        // cannot trust to be delimited (Content-Length with Transfer-Encoding) or an HTTP/1.0
        // request without keep-alive.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(policy.config.server.keepalive_timeout.as_secs()));
        }
        let path = session.req_header().uri.path().to_string();
        let answer = match self.route(&path) {
            Route::Mcp => return transport::handle(&self.state, &policy, session, ctx).await,
            Route::DevAuthServer => match &self.dev_as {
                Some(dev_as) => return dev_as.serve(&policy.host, session).await,
                None => self.not_found(),
            },
            Route::WellKnown => {
                let req = session.req_header();
                let preflight = header(session, "access-control-request-headers");
                let shared = &self.state.shared;
                match well_known::well_known(shared, &policy, &req.method, &path, preflight) {
                    Some(answer) => answer,
                    None => match self
                        .dev_as
                        .as_ref()
                        .filter(|_| crate::dev_as::DevAuthServer::owns_path(&path))
                    {
                        // The development authorization server's own metadata.
                        Some(dev_as) => return dev_as.serve(&policy.host, session).await,
                        None => self.not_found(),
                    },
                }
            }
            Route::Health => Answer::json(200, &b"{\"status\":\"ok\"}"[..]),
            Route::Ready => well_known::readiness(&self.state.shared, &policy),
            Route::Admin => {
                return crate::admin::handle(&self.state, &policy, session, &mut ctx.record).await;
            }
            Route::NotFound => self.not_found(),
        };
        write_answer(session, answer, None).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Every request is answered in `request_filter`; nothing is proxied.
        Error::e_explain(ErrorType::InternalError, "the gateway proxies nothing")
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let req = session.req_header();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        debug!(
            method = %req.method,
            path = %req.uri.path(),
            status,
            elapsed_us = elapsed.as_micros() as u64,
            error = e.map(|e| e.to_string()),
            "request"
        );
        let shared = &self.state.shared;
        if !ctx.record.is_active() || !(shared.audit.is_enabled() || shared.metrics.is_enabled()) {
            return;
        }
        let is_list = ctx.record.method() == Some("tools/list");
        let list_header = |name: &str| {
            is_list
                .then(|| header(session, name))
                .flatten()
                .map(|v| clean(v, MAX_IDENT))
        };
        let facts = Facts {
            ts_ms: crate::clock::now_ms(),
            latency: elapsed,
            http_method: req.method.clone(),
            http_status: status,
            response_size: session.body_bytes_sent() as u64,
            origin: ctx
                .cors_origin
                .take()
                .or_else(|| header(session, "origin").map(|v| clean(v, MAX_IDENT))),
            backends_filter: list_header("x-cortex-backends"),
            tool_mode: list_header("x-cortex-tool-mode"),
            error: e.map(|e| e.to_string()),
        };
        if let Some(record) = ctx.record.close(facts) {
            shared.metrics.observe(&record);
            if shared.audit.is_enabled() {
                shared.audit.submit(record);
            }
        }
    }
}
