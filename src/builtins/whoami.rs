//! `whoami`: who the caller is to the gateway and to each app, and why it sees what it sees.
//!
//! The Cortex fields (`identity`, `session`, `scopes_granted`, `backends`, `discovered_at`)
//! plus `visibility`: how many tools are hidden from the caller and which scopes would
//! reveal them, so an agent (or its user) can ask for the right grant instead of guessing.
//! Tool names of hidden tools, backend URLs and discovery errors are shown only to holders
//! of the admin scope.
//!
//! Each live backend's own `whoami` is called in parallel with the caller's identity headers
//! and a short timeout (`builtins.whoami_timeout`); a slow or failing backend gives an
//! `error` for that backend only.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::auth::PrincipalKind;
use crate::upstream::calls::{self, Caller};
use crate::upstream::{Backend, BackendHealth, BackendKind, Operation};

use super::BuiltinCx;

/// The `whoami` builtin.
pub async fn whoami(cx: &BuiltinCx<'_>) -> Value {
    let p = cx.principal;
    let admin = cx.builtins.is_admin(p);
    let health = cx.catalog.health();
    let calls = cx.upstreams.iter().map(|b| {
        let h = health.iter().find(|h| h.id == b.id());
        backend_entry(cx, b.as_ref(), h, admin)
    });
    let backends: Vec<Value> = futures::future::join_all(calls).await;
    let discovered_at = health
        .iter()
        .filter_map(|h| h.last_ok)
        .max()
        .map(rfc3339_of);
    let oauth = &cx.config.auth.oauth;
    let is_token = p.kind == PrincipalKind::Token;
    let links = account_links(cx).await;
    let mut out = json!({
        "identity": {
            "sub": p.sub,
            "email": p.email,
            "pool": p.pool,
            "role": p.role,
        },
        "session": {
            "client_id": p.client_id,
            "audience": if is_token { Some(oauth.audience.clone().unwrap_or_else(|| cx.canonical_uri.to_string())) } else { None },
            "issuer": if is_token { oauth.issuer.clone() } else { None },
            "jti": Value::Null,
            "is_dev_bypass": p.kind == PrincipalKind::DevBypass,
            "auth": match p.kind {
                PrincipalKind::Anonymous => "none",
                PrincipalKind::DevBypass => "dev_bypass",
                PrincipalKind::Token => "oauth",
            },
            "token_expires_at": p.expires_at.map(|s| crate::clock::iso8601_ms((s as i64).saturating_mul(1000))),
            "mcp_session": cx.session_present,
            "protocol_version": cx.version.as_str(),
        },
        "scopes_granted": p.grants.granted(),
        "admin": admin,
        "backends": backends,
        "visibility": visibility(cx, admin),
        "discovered_at": discovered_at,
    });
    if let Some(links) = links {
        out["linked_accounts"] = links;
    }
    out
}

/// The caller's linked and unlinked vault providers, and a short-lived page to manage them
/// in a browser (`/link?ticket=…`: the ticket signs the browser in as the caller for a few
/// minutes; the per-provider `link_url` is the public one and authenticates nobody).
async fn account_links(cx: &BuiltinCx<'_>) -> Option<Value> {
    let vault = cx.vault?;
    let p = cx.principal;
    Some(match vault.links(&p.sub).await {
        Ok(links) => {
            let ticket: String =
                url::form_urlencoded::byte_serialize(vault.ticket_for(&p.sub).as_bytes()).collect();
            let origin = url::Url::parse(cx.canonical_uri)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            json!({
                "providers": links,
                "manage_url": format!("{origin}/link?ticket={ticket}"),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    })
}

/// One backend: health, tool count visible to the caller, and its own `whoami` (contract
/// backends only: it is a contract method).
async fn backend_entry(
    cx: &BuiltinCx<'_>,
    b: &dyn Backend,
    h: Option<&BackendHealth>,
    admin: bool,
) -> Value {
    let current = cx.catalog.current();
    let visible = current
        .merged
        .tools()
        .iter()
        .filter(|t| t.backend_id == b.id() && cx.principal.grants.allows(t.scope.as_deref()))
        .count();
    let mut out = json!({
        "app_id": b.id(),
        "healthy": h.is_some_and(|h| h.healthy),
        "stale": h.is_some_and(|h| h.stale),
        "tools_visible": visible,
        "discovered_at": h.and_then(|h| h.last_ok).map(rfc3339_of),
    });
    if admin {
        out["url"] = json!(b.location());
        out["last_error"] = json!(h.and_then(|h| h.last_error.clone()));
    }
    let serving = h.is_some_and(|h| h.snapshot.is_some());
    if !serving {
        out["error"] = json!("not reachable: no successful discovery yet");
        return out;
    }
    if b.kind() != BackendKind::Contract {
        return out;
    }
    let timeout = cx.config.builtins.whoami_timeout;
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: 0,
        input_responses: None,
    };
    let op = Operation::ContractMethod {
        method: "whoami",
        params: None,
    };
    let call = async {
        calls::call(cx.upstreams, caller, b.id(), op)
            .await
            .outcome()
            .await
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => out["error"] = json!(format!("whoami timed out after {}ms", timeout.as_millis())),
        Ok(outcome) => match outcome.into_result() {
            Ok(v) => out["whoami"] = v,
            Err(e) => out["error"] = json!(short(&e.message)),
        },
    }
    out
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// How many tools the caller sees and does not see, and which scopes would reveal the
/// hidden ones (with their names for administrators).
fn visibility(cx: &BuiltinCx<'_>, admin: bool) -> Value {
    let grants = &cx.principal.grants;
    let current = cx.catalog.current();
    let mut visible = 0usize;
    let mut hidden: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let builtins = cx
        .builtins
        .all()
        .iter()
        .map(|d| (d.name, d.scope.as_deref()));
    let tools = current
        .merged
        .tools()
        .iter()
        .map(|t| (t.exposed.as_str(), t.scope.as_deref()));
    for (name, scope) in builtins.chain(tools) {
        match scope {
            Some(s) if !grants.allows(Some(s)) => hidden.entry(s).or_default().push(name),
            _ => visible += 1,
        }
    }
    let hidden_count: usize = hidden.values().map(Vec::len).sum();
    let mut reveal: Vec<Value> = hidden
        .iter()
        .map(|(scope, names)| {
            let mut e = json!({"scope": scope, "tools": names.len()});
            if admin {
                e["names"] = json!(names);
            }
            e
        })
        .collect();
    reveal.sort_by(|a, b| b["tools"].as_u64().cmp(&a["tools"].as_u64()));
    let hint = if hidden_count == 0 {
        "You can see every tool of this gateway.".to_string()
    } else {
        format!(
            "{hidden_count} tool(s) are hidden because your token lacks their scope; ask for one of the scopes below to use them."
        )
    };
    json!({
        "tools_visible": visible,
        "tools_hidden": hidden_count,
        "scopes_to_reveal": reveal,
        "hint": hint,
    })
}

/// The wall-clock time of a past `Instant`, RFC 3339 in UTC with milliseconds.
pub fn rfc3339_of(at: Instant) -> String {
    let ago = Instant::now().saturating_duration_since(at);
    crate::clock::iso8601_ms(crate::clock::now_ms() - ago.as_millis() as i64)
}
