//! What the gateway tells clients about itself outside the MCP endpoint: RFC 9728
//! protected-resource metadata, the `WWW-Authenticate` challenges (RFC 6750, MCP 2025-11-25),
//! the gateway's own JWKS for minted tokens, and the health routes (`/healthz`, `/readyz`).
//!
//! Routes (GET, with OPTIONS preflight and `Access-Control-Allow-Origin: *`, because browser
//! clients must read them before they have any credential):
//! - `/.well-known/oauth-protected-resource` and the path-inserted
//!   `/.well-known/oauth-protected-resource<mcp path>` (the form clients try first);
//! - `/.well-known/jwks.json` when a backend uses `identity: mint`.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{json, Map, Value};

use crate::config::AuthMode;
use crate::http::Answer;
use crate::state::{Policy, Shared};

/// Root path of the protected-resource metadata.
pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";
/// The gateway's JWKS (minted tokens).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Never advertised: it asks for refresh tokens, not access to this resource (MCP 2025-11-25).
const OFFLINE_ACCESS: &str = "offline_access";

/// The scopes a client may need here (`scopes_supported`): every scope the live catalog
/// declares, the gateway's own builtins' scopes (the admin scope included), and the floor.
pub fn scopes_supported(shared: &Shared, policy: &Policy) -> Vec<String> {
    scopes(shared, policy, true)
}

/// The scopes of the 401 challenge: the same without the builtins' admin scope (unless an
/// entry of the catalog or the floor needs it), which a client should ask for only when it
/// means to administer, by stepping up.
pub fn challenge_scopes(shared: &Shared, policy: &Policy) -> Vec<String> {
    scopes(shared, policy, false)
}

fn scopes(shared: &Shared, policy: &Policy, with_admin: bool) -> Vec<String> {
    let admin = policy.builtins.admin_scope();
    let mut all: BTreeSet<String> = shared
        .catalog
        .current()
        .merged
        .scopes()
        .into_iter()
        .collect();
    let builtin = policy.builtins.all().iter().filter_map(|b| b.scope.clone());
    all.extend(builtin.filter(|s| with_admin || s != admin));
    if with_admin {
        all.insert(admin.to_string());
    }
    all.extend(policy.config.auth.oauth.required_scopes.iter().cloned());
    all.into_iter()
        .filter(|s| s != OFFLINE_ACCESS && is_scope_token(s))
        .collect()
}

/// RFC 6749 §3.3 scope-token characters (which also makes them safe in a quoted-string).
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// The RFC 9728 document.
pub fn protected_resource_metadata(shared: &Shared, policy: &Policy) -> Value {
    let o = &policy.config.auth.oauth;
    let mut doc = Map::new();
    doc.insert("resource".into(), json!(shared.canonical_uri));
    if let Some(issuer) = &o.issuer {
        // Byte for byte: clients compare it with the AS metadata's `issuer`.
        doc.insert("authorization_servers".into(), json!([issuer]));
    }
    doc.insert(
        "scopes_supported".into(),
        json!(scopes_supported(shared, policy)),
    );
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    let name = o
        .resource_name
        .clone()
        .unwrap_or_else(|| policy.config.server.name.clone());
    doc.insert("resource_name".into(), json!(name));
    let docs = o
        .resource_documentation
        .clone()
        .unwrap_or_else(|| policy.website_url.clone());
    doc.insert("resource_documentation".into(), json!(docs));
    Value::Object(doc)
}

/// A quoted-string for a challenge parameter: visible ASCII and spaces only, `"` and `\`
/// escaped, bounded.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().take(300) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c == ' ' || c.is_ascii_graphic() => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// The 401 challenge: `resource_metadata` and `scope` always; `error="invalid_token"` and
/// `error_description` only when a token was presented (RFC 6750 §3.1).
pub fn unauthorized_challenge(
    shared: &Shared,
    policy: &Policy,
    token_presented: bool,
    reason: &str,
) -> String {
    let mut c = format!(
        "Bearer resource_metadata={}",
        quoted(&shared.resource_metadata_url)
    );
    let scopes = challenge_scopes(shared, policy);
    if !scopes.is_empty() {
        c.push_str(&format!(", scope={}", quoted(&scopes.join(" "))));
    }
    if token_presented {
        c.push_str(&format!(
            ", error=\"invalid_token\", error_description={}",
            quoted(reason)
        ));
    }
    c
}

/// The 403 step-up challenge for missing scopes.
pub fn insufficient_scope_challenge(shared: &Shared, scope: &str, reason: &str) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope={}, resource_metadata={}, error_description={}",
        quoted(scope),
        quoted(&shared.resource_metadata_url),
        quoted(reason)
    )
}

/// The 401 answer (challenge + JSON body with a reason a person can act on).
pub fn unauthorized(
    shared: &Shared,
    policy: &Policy,
    token_presented: bool,
    reason: &str,
) -> Answer {
    let body = json!({
        "error": if token_presented { "invalid_token" } else { "unauthorized" },
        "error_description": reason,
    });
    Answer::json(401, serde_json::to_vec(&body).unwrap_or_default()).with_header(
        "www-authenticate",
        unauthorized_challenge(shared, policy, token_presented, reason),
    )
}

/// The 403 answer: a step-up challenge for `insufficient_scope`, a plain refusal otherwise.
pub fn forbidden(shared: &Shared, error: &str, reason: &str, scope: Option<&str>) -> Answer {
    let body = json!({"error": error, "error_description": reason, "scope": scope});
    let a = Answer::json(403, serde_json::to_vec(&body).unwrap_or_default());
    match scope {
        Some(scope) => a.with_header(
            "www-authenticate",
            insufficient_scope_challenge(shared, scope, reason),
        ),
        None => a,
    }
}

/// The 503 answer while tokens cannot be validated.
pub fn unavailable(reason: &str) -> Answer {
    let body = json!({"error": "temporarily_unavailable", "error_description": reason});
    Answer::json(503, serde_json::to_vec(&body).unwrap_or_default()).with_header("retry-after", "5")
}

/// Answers a well-known route, or `None` when `path` is not one of ours.
pub fn well_known(
    shared: &Shared,
    policy: &Policy,
    method: &Method,
    path: &str,
    request_headers: Option<&str>,
) -> Option<Answer> {
    let prm_paths = policy.config.auth.mode == AuthMode::Oauth
        && (path == PRM_PATH || path.strip_prefix(PRM_PATH) == Some(shared.mcp_path.as_str()));
    let jwks = path == JWKS_PATH && policy.identity.minter().is_some();
    if !prm_paths && !jwks {
        return None;
    }
    let answer = if *method == Method::OPTIONS {
        Answer::empty(204)
            .with_header("access-control-allow-methods", "GET, OPTIONS")
            .with_header(
                "access-control-allow-headers",
                request_headers
                    .filter(|h| {
                        h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b))
                    })
                    .unwrap_or("authorization, content-type, mcp-protocol-version")
                    .to_string(),
            )
            .with_header("access-control-max-age", "600")
    } else if *method == Method::GET || *method == Method::HEAD {
        let body = if prm_paths {
            serde_json::to_vec(&protected_resource_metadata(shared, policy))
                .unwrap_or_default()
                .into()
        } else {
            policy
                .identity
                .minter()
                .map(|m| m.jwks())
                .unwrap_or_default()
        };
        Answer::json(200, body)
    } else {
        Answer::empty(405).with_header("allow", "GET, OPTIONS")
    };
    Some(answer.with_header("access-control-allow-origin", "*"))
}

/// The `auth` part of `/readyz`, and whether it lets the gateway count as ready: a gateway
/// that must validate tokens is not ready until it knows the issuer's keys, unless the dev
/// bypass is configured (then it can serve its dev callers, as in the Cortex quick start with
/// a placeholder issuer).
fn auth_readiness(shared: &Shared, policy: &Policy) -> (bool, Value) {
    let mode = match policy.config.auth.mode {
        AuthMode::None => "none",
        AuthMode::Oauth => "oauth",
    };
    let Some(issuer) = shared.auth.issuer() else {
        return (
            true,
            json!({"mode": mode, "issuer": Value::Null, "ready": true}),
        );
    };
    let s = issuer.status();
    let last_success = s.last_success.and_then(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    });
    let body = json!({
        "mode": mode,
        "issuer": s.issuer,
        "ready": s.ready,
        "keys": s.keys,
        "jwksUri": s.jwks_uri,
        "lastSuccess": last_success,
        "lastError": s.last_error,
    });
    (s.ready || shared.auth.dev_bypass_configured(), body)
}

/// `/readyz`: 200 once every backend had a first discovery attempt, the catalog that came
/// out of it is published and tokens can be validated; 503 before. Per-backend health,
/// staleness and last error either way.
pub fn readiness(shared: &Shared, policy: &Policy) -> Answer {
    let health = shared.catalog.health();
    let ready = shared.catalog.ready();
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
    let problems: Vec<String> = shared
        .catalog
        .current()
        .merged
        .problems()
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    let (auth_ready, auth) = auth_readiness(shared, policy);
    let ready = ready && auth_ready;
    let body = json!({"ready": ready, "backends": backends, "problems": problems, "auth": auth, "reloads": shared.reloads.to_json()});
    Answer::json(
        if ready { 200 } else { 503 },
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_and_bounds() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("é\n"), "\"??\"");
        assert_eq!(quoted(&"x".repeat(500)).len(), 302);
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("mcp:crm:read"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token("a\"b"));
        assert!(!is_scope_token(""));
    }
}
