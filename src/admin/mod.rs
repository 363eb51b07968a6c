//! The admin API on the gateway's listeners, for operators and their tools (and the
//! `cortex-gateway admin` CLI, [`client`]):
//!
//! | request | what |
//! | --- | --- |
//! | `GET /admin/integrity` | the pinning report: mode, signing, every backend's review |
//! | `POST /admin/integrity/approve` | `{"backend": "crm"}` or `{"backend": "crm", "tool": "x"}` |
//! | `GET /admin/integrity/baseline` | the baseline file (signed when the gateway holds the key) |
//! | `GET /admin/backends` | health, staleness, last error, catalog counts per backend |
//! | `POST /admin/backends/<id>/refresh` | rediscover a backend now |
//!
//! Access: the `X-Cortex-Admin-Secret` header equal to `admin.secret` (`CORTEX_ADMIN_SECRET`,
//! compared in constant time over SHA-256 digests, so neither content nor length leaks), or
//! a bearer token (validated as on `/mcp`) that carries `admin.scope`. With neither
//! configured the whole API answers 404, as if it did not exist. The Host check of the MCP
//! endpoint applies (DNS-rebinding protection). Every request is recorded (audit trail,
//! metrics) as the action `admin/<what>`, with the refusal when refused.

pub mod client;

use std::time::Instant;

use cortex_filters::pinning::ApprovalRequest;
use http::Method;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::{constant_time_eq, AuthOutcome, AuthRequest};
use crate::http::{header, read_body, request_host, write_answer, Answer, BodyRead};
use crate::record::{RequestRecord, Stage};
use crate::state::{AppState, Policy};

/// The header carrying the admin secret (Cortex's name).
pub const SECRET_HEADER: &str = "x-cortex-admin-secret";

/// Largest admin request body.
const MAX_BODY: u64 = 16 * 1024;

fn json_answer(status: u16, body: &Value) -> Answer {
    Answer::json(status, serde_json::to_vec(body).unwrap_or_default())
        .with_header("cache-control", "no-store")
}

fn error(status: u16, error: &str, description: impl Into<String>) -> Answer {
    json_answer(
        status,
        &json!({"error": error, "error_description": description.into()}),
    )
}

/// Handles one request under `/admin`; always answers it.
pub async fn handle(
    state: &AppState,
    policy: &Policy,
    session: &mut Session,
    record: &mut RequestRecord,
) -> Result<bool> {
    let answer = serve(state, policy, session, record).await?;
    write_answer(session, answer, None).await?;
    Ok(true)
}

/// What a path and method ask for.
enum Action {
    Report,
    Approve,
    Export,
    Backends,
    Refresh(String),
}

impl Action {
    fn parse(method: &Method, path: &str) -> Option<Action> {
        let rest = path.strip_prefix("/admin/")?;
        match (method, rest) {
            (&Method::GET, "integrity") => Some(Action::Report),
            (&Method::POST, "integrity/approve") => Some(Action::Approve),
            (&Method::GET, "integrity/baseline") => Some(Action::Export),
            (&Method::GET, "backends") => Some(Action::Backends),
            (&Method::POST, r) => r
                .strip_prefix("backends/")
                .and_then(|r| r.strip_suffix("/refresh"))
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(|id| Action::Refresh(id.to_owned())),
            _ => None,
        }
    }

    const fn name(&self) -> &'static str {
        match self {
            Action::Report => "admin/integrity",
            Action::Approve => "admin/integrity/approve",
            Action::Export => "admin/integrity/baseline",
            Action::Backends => "admin/backends",
            Action::Refresh(_) => "admin/backends/refresh",
        }
    }
}

fn digest_eq(a: &str, b: &str) -> bool {
    constant_time_eq(&Sha256::digest(a.as_bytes()), &Sha256::digest(b.as_bytes()))
}

async fn serve(
    state: &AppState,
    policy: &Policy,
    session: &mut Session,
    record: &mut RequestRecord,
) -> Result<Answer> {
    let admin = &policy.config.admin;
    let secret = admin.secret.as_deref().filter(|s| !s.is_empty());
    let scope = admin.scope.as_deref().filter(|s| !s.is_empty());
    let not_found = || error(404, "not_found", "nothing here");
    if secret.is_none() && scope.is_none() {
        return Ok(not_found());
    }
    let host = request_host(session);
    if !policy.host.allows(host.as_deref()) {
        return Ok(error(
            403,
            "forbidden_host",
            "this Host is not allowed (DNS-rebinding protection); add it to server.allowed_hosts",
        ));
    }
    let method = session.req_header().method.clone();
    let path = session.req_header().uri.path().to_owned();
    let Some(action) = Action::parse(&method, &path) else {
        return Ok(error(
            404,
            "not_found",
            "unknown admin request: GET /admin/integrity, POST /admin/integrity/approve, GET /admin/integrity/baseline, GET /admin/backends, POST /admin/backends/<id>/refresh",
        ));
    };
    record.begin(None);
    record.action(action.name());

    // Access: the secret, else a bearer token with the admin scope.
    let presented = header(session, SECRET_HEADER).map(str::to_owned);
    match (presented, secret) {
        (Some(p), Some(s)) if digest_eq(&p, s) => {}
        (Some(_), _) => {
            record.reject(Stage::Auth, "wrong admin secret");
            return Ok(error(401, "unauthorized", "wrong admin secret"));
        }
        (None, _) => {
            let Some(scope) = scope else {
                record.reject(Stage::Auth, "no admin secret");
                return Ok(error(
                    401,
                    "unauthorized",
                    format!("send the admin secret in {SECRET_HEADER}"),
                ));
            };
            let outcome = state
                .shared
                .auth
                .authenticate(AuthRequest {
                    authorization: header(session, "authorization"),
                    dev_mode: header(session, "x-dev-mode"),
                    peer: session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| a.ip()),
                })
                .await;
            record.auth_outcome(&outcome);
            match outcome {
                AuthOutcome::Ok(p) if p.grants.allows(Some(scope)) => {
                    record.set_principal(p);
                }
                AuthOutcome::Ok(p) => {
                    record.reject(Stage::Auth, format!("admin scope {scope} missing"));
                    record.set_principal(p);
                    return Ok(error(
                        403,
                        "insufficient_scope",
                        format!("the admin API requires scope {scope}"),
                    ));
                }
                AuthOutcome::Unavailable { reason } => {
                    return Ok(error(503, "temporarily_unavailable", reason));
                }
                _ => {
                    return Ok(error(
                        401,
                        "unauthorized",
                        format!("send the admin secret in {SECRET_HEADER}, or a bearer token with scope {scope}"),
                    ));
                }
            }
        }
    }

    Ok(match action {
        Action::Report => json_answer(200, &json!(state.shared.integrity.report())),
        Action::Export => match state.shared.integrity.export() {
            Ok(doc) => json_answer(200, &doc),
            Err(e) => error(500, "export_failed", e.to_string()),
        },
        Action::Backends => json_answer(200, &backends(state, policy)),
        Action::Refresh(id) => {
            if state.shared.catalog.refresh_now(&id) {
                json_answer(202, &json!({"backend": id, "refresh": "scheduled"}))
            } else {
                error(404, "unknown_backend", format!("no backend `{id}`"))
            }
        }
        Action::Approve => {
            let body = match read_body(session, MAX_BODY).await? {
                BodyRead::Complete(b) => b,
                BodyRead::TooLarge => {
                    return Ok(error(413, "too_large", "the body is limited to 16 KiB"))
                }
            };
            let req: ApprovalRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(error(
                        400,
                        "invalid_request",
                        format!("expected {{\"backend\": \"<id>\", \"tool\": \"<name>\"?}}: {e}"),
                    ))
                }
            };
            match state.shared.integrity.approve(&req).await {
                Ok(mut done) => {
                    // The catalog follows at the next refresher tick.
                    state.shared.catalog.refresh_now(&req.backend);
                    done["refresh"] = json!("scheduled");
                    json_answer(200, &done)
                }
                Err(e) => error(404, "unknown_tool", e.to_string()),
            }
        }
    })
}

/// `GET /admin/backends`.
fn backends(state: &AppState, policy: &Policy) -> Value {
    let now = Instant::now();
    let quarantined = state.shared.integrity.quarantined();
    let current = state.shared.catalog.current();
    let merged = &current.merged;
    let count = |entries: &[cortex_filters::catalog::Entry], id: &str| {
        entries.iter().filter(|e| e.backend_id == id).count()
    };
    let list: Vec<Value> = state
        .shared
        .catalog
        .health()
        .into_iter()
        .map(|b| {
            let id = b.id.as_str();
            json!({
                "id": id,
                "kind": policy.upstreams.get(id).map(|u| u.kind().as_str()),
                "attempted": b.attempted,
                "healthy": b.healthy,
                "stale": b.stale,
                "consecutiveFailures": b.failures,
                "lastError": b.last_error,
                "secondsSinceLastSuccess": b.last_ok.map(|t| now.duration_since(t).as_secs()),
                "discoveries": b.discoveries,
                "discoveryFailures": b.discovery_failures,
                "warnings": b.warnings,
                "catalog": {
                    "tools": count(merged.tools(), id),
                    "prompts": count(merged.prompts(), id),
                    "resources": count(merged.resources(), id),
                    "templates": count(merged.templates(), id),
                },
                "quarantinedTools": quarantined.iter().find(|(q, _)| q == id).map_or(0, |(_, n)| *n),
            })
        })
        .collect();
    json!({"generation": current.generation, "backends": list})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_actions() {
        let p = |m: Method, path: &str| Action::parse(&m, path).map(|a| a.name());
        assert_eq!(p(Method::GET, "/admin/integrity"), Some("admin/integrity"));
        assert_eq!(
            p(Method::POST, "/admin/integrity/approve"),
            Some("admin/integrity/approve")
        );
        assert_eq!(
            p(Method::POST, "/admin/backends/crm/refresh"),
            Some("admin/backends/refresh")
        );
        assert_eq!(p(Method::POST, "/admin/backends//refresh"), None);
        assert_eq!(p(Method::POST, "/admin/backends/a/b/refresh"), None);
        assert_eq!(p(Method::GET, "/admin/integrity/approve"), None);
        assert_eq!(p(Method::DELETE, "/admin/backends"), None);
    }

    #[test]
    fn secrets_compare_by_digest() {
        assert!(digest_eq("s3cret-admin-key!", "s3cret-admin-key!"));
        assert!(!digest_eq("s3cret-admin-key!", "s3cret-admin-key"));
        assert!(!digest_eq("", "x"));
    }
}
