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
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use serde_json::json;
use tracing::debug;

use crate::http::{header, write_answer, Answer};
use crate::mcp::request::RequestCtx;
use crate::mcp::transport;
use crate::record::{clean, Facts, MAX_IDENT};
use crate::state::AppState;
use crate::{discovery, well_known};

/// Whether `e` says the client's connection broke (read or write failed, closed, timed out).
fn client_gone(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadError
            | ErrorType::ReadTimedout
            | ErrorType::WriteError
            | ErrorType::WriteTimedout
            | ErrorType::ConnectionClosed
    )
}

/// The edge state of the connection `session` arrived on (None when it did not come
/// through [`crate::edge::EdgeApp`]).
fn edge_conn(session: &Session) -> Option<Arc<crate::edge::Conn>> {
    let stream = session.as_downstream().stream()?;
    (**stream)
        .as_any()
        .downcast_ref::<crate::edge::EdgeStream>()
        .map(|s| s.conn().clone())
}

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
    /// `/`: the HTML status page.
    StatusPage,
    /// The MCP server card.
    ServerCard,
    /// `/link` and `/link/*`: account linking (the vault).
    Link,
    /// `/admin/*`: the admin API.
    Admin,
    /// Anything else.
    NotFound,
}

impl Gateway {
    fn route(&self, path: &str) -> Route {
        if path == self.state.shared.mcp_path {
            Route::Mcp
        } else if path == "/" {
            Route::StatusPage
        } else if path == discovery::SERVER_CARD_PATH {
            Route::ServerCard
        } else if path.starts_with("/.well-known/") {
            Route::WellKnown
        } else if self.dev_as.is_some() && crate::dev_as::DevAuthServer::owns_path(path) {
            Route::DevAuthServer
        } else if path == "/healthz" {
            Route::Health
        } else if path == "/readyz" {
            Route::Ready
        } else if crate::vault::edge::owns_path(path) {
            Route::Link
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

impl Gateway {
    /// A `/link` request: authenticates a presented bearer (a browser brings a ticket
    /// instead), reads a small form body, and hands the rest to `vault::edge`.
    async fn link(&self, session: &mut Session, path: &str) -> Result<Answer> {
        use crate::auth::{AuthOutcome, AuthRequest};
        use crate::vault::edge;
        let shared = &self.state.shared;
        let authorization = header(session, "authorization").map(str::to_string);
        let user = if authorization.is_some() || shared.auth.mode() == crate::config::AuthMode::None
        {
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            let outcome = shared
                .auth
                .authenticate(AuthRequest {
                    authorization: authorization.as_deref(),
                    dev_mode: header(session, "x-dev-mode"),
                    peer,
                })
                .await;
            match outcome {
                AuthOutcome::Ok(p) => Some(p.sub),
                AuthOutcome::Unauthorized { reason, .. } => {
                    let body = json!({"error": "invalid_token", "error_description": reason});
                    return Ok(
                        Answer::json(401, serde_json::to_vec(&body).unwrap_or_default())
                            .with_header("www-authenticate", "Bearer error=\"invalid_token\""),
                    );
                }
                AuthOutcome::Forbidden { error, reason, .. } => {
                    let body = json!({"error": error, "error_description": reason});
                    return Ok(Answer::json(
                        403,
                        serde_json::to_vec(&body).unwrap_or_default(),
                    ));
                }
                AuthOutcome::Unavailable { reason } => return Ok(well_known::unavailable(&reason)),
            }
        } else {
            None
        };
        let method = session.req_header().method.as_str().to_string();
        let body = if method == "POST" {
            match crate::http::read_body(session, edge::MAX_FORM).await? {
                crate::http::BodyRead::Complete(b) => b,
                crate::http::BodyRead::TooLarge => {
                    return Ok(Answer::json(413, &b"{\"error\":\"form too large\"}"[..]))
                }
            }
        } else {
            bytes::Bytes::new()
        };
        let query = session.req_header().uri.query().map(str::to_string);
        let wants_json = header(session, "accept").is_some_and(|a| a.contains("application/json"));
        let req = edge::LinkRequest {
            method: &method,
            path,
            query: query.as_deref(),
            cookies: header(session, "cookie"),
            wants_json,
            body: &body,
            user: user.as_deref(),
        };
        Ok(edge::handle(shared.vault.as_deref(), req).await)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            in_flight: Some(self.state.shared.drain.enter()),
            ..RequestCtx::default()
        }
    }

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        // Pingora's default (response compression, disabled), and the audit trail's answer
        // hook: it spools the request's record before the answer's last bytes are written.
        modules
            .add_module(pingora::modules::http::compression::ResponseCompressionBuilder::enable(0));
        modules.add_module(Box::new(crate::audit::answer::AnswerHookBuilder));
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        crate::audit::answer::arm(session, &ctx.record, &self.state.shared.audit, ctx.started);
        // The header is in: the body (if any) is now read under the body deadline.
        ctx.conn = edge_conn(session);
        if let Some(conn) = &ctx.conn {
            if session.is_body_empty() {
                conn.body_done();
            } else {
                conn.expect_body();
            }
        }
        if let Some(problem) = crate::edge::host_problem(session.req_header()) {
            session.set_keepalive(None);
            let body = json!({"error": "bad_request", "error_description": problem});
            let answer = Answer::json(400, serde_json::to_vec(&body).unwrap_or_default());
            write_answer(session, answer, None).await?;
            return Ok(true);
        }
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
            Route::StatusPage => {
                discovery::status_page(&self.state.shared, &policy, &session.req_header().method)
            }
            Route::ServerCard => {
                discovery::server_card(&self.state.shared, &policy, &session.req_header().method)
            }
            Route::Link => self.link(session, &path).await?,
            Route::Admin => {
                return crate::admin::handle(&self.state, &policy, session, &mut ctx.record).await;
            }
            Route::NotFound => self.not_found(),
        };
        write_answer(session, answer, None).await?;
        Ok(true)
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        // A client that goes away mid-request is the client's business, not an error of the
        // gateway's; logging each at ERROR would let any client choose the log volume.
        let gone = client_gone(e);
        if gone {
            debug!(error = %e, "client connection ended mid-request");
        }
        gone
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // Pingora's default, except that a connection the client broke gets no answer (and
        // no ERROR line for the answer that could not be written) whatever the error's
        // source: only the request path reads the client, so its read errors are the client's.
        let code = if client_gone(e) {
            0
        } else {
            match e.etype() {
                ErrorType::HTTPStatus(code) => *code,
                // The client's framing: a bad header or a malformed chunk.
                ErrorType::InvalidHTTPHeader => 400,
                t if t.as_str() == "InvalidChunk" => 400,
                _ if *e.esource() == pingora::ErrorSource::Downstream => 400,
                _ => 500,
            }
        };
        if code > 0 {
            crate::audit::answer::before_error_answer(session, code);
            if let Err(write) = session.respond_error(code).await {
                debug!(error = %write, "the error answer could not be written");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
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
        if !ctx.record.is_active() || !crate::state::records_wanted(&shared.audit, &shared.metrics)
        {
            return;
        }
        let is_list = ctx.record.is_method("tools/list");
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
            crate::state::hand_on(&shared.audit, &shared.metrics, record);
        }
    }
}
