//! The `/link` endpoints, as request → [`Answer`] functions (the gateway's router reads the
//! request, authenticates a bearer if one is presented, and writes the answer):
//!
//! - `GET /link`: the user's providers with link and unlink buttons (plain HTML; JSON with
//!   `Accept: application/json`).
//! - `GET /link/<provider>/start`: sends the browser to the provider's authorization
//!   endpoint and sets the browser-binding cookie.
//! - `GET /link/<provider>/callback`: the provider's redirect back; stores the grant.
//! - `POST /link/<provider>/unlink`: revokes and deletes the grant.
//! - `GET /link/client-metadata.json`: the gateway's Client ID Metadata Document.
//!
//! Who the user is: a bearer token (an agent or a CLI), or a short-lived sealed ticket
//! (`?ticket=`, or a form field) the gateway hands to an authenticated caller for the browser.
//! The public link URL (`/link/<provider>/start`) carries neither: it authenticates nobody.

use bytes::Bytes;
use serde_json::json;

use super::{CallbackParams, LinkError, Vault};
use crate::http::Answer;

/// Prefix of the browser-binding cookie (one per provider, so two links in one browser do
/// not overwrite each other).
const COOKIE_PREFIX: &str = "cortex_link_";
/// Largest form body accepted by `unlink`.
pub const MAX_FORM: u64 = 8 * 1024;

/// Whether the router sends `path` here.
pub fn owns_path(path: &str) -> bool {
    path == "/link" || path.starts_with("/link/")
}

/// One request to a `/link` route.
#[derive(Debug, Clone, Copy)]
pub struct LinkRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// The `Cookie` header.
    pub cookies: Option<&'a str>,
    /// `Accept` asks for JSON.
    pub wants_json: bool,
    /// The form body (`unlink`).
    pub body: &'a [u8],
    /// The subject of a valid bearer token, if one was presented.
    pub user: Option<&'a str>,
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn cookie<'a>(cookies: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookies?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `&`, `<`, `>`, `"`, `'` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: u16, title: &str, body_html: &str) -> Answer {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\"><h1>{t}</h1>{body_html}</body></html>",
        t = escape(title)
    );
    Answer {
        status,
        content_type: Some("text/html; charset=utf-8"),
        headers: vec![
            (
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'".into(),
            ),
            ("x-frame-options", "DENY".into()),
            ("referrer-policy", "no-referrer".into()),
        ],
        body: Bytes::from(html),
        tail: None,
    }
}

fn message(status: u16, json: bool, title: &str, text: &str) -> Answer {
    if json {
        let body = json!({ "error": title, "error_description": text });
        Answer::json(status, serde_json::to_vec(&body).unwrap_or_default())
    } else {
        page(status, title, &format!("<p>{}</p>", escape(text)))
    }
}

fn sign_in_needed(json: bool) -> Answer {
    message(
        401,
        json,
        "Sign-in needed",
        "Open this page from your agent: ask it for your account links (the whoami tool), or call it with your bearer token. The public link address identifies nobody on purpose.",
    )
    .with_header("www-authenticate", "Bearer")
}

/// Handles one `/link` request. `vault` is `None` when no vault is configured.
pub async fn handle(vault: Option<&Vault>, req: LinkRequest<'_>) -> Answer {
    let Some(vault) = vault else {
        return message(
            404,
            req.wants_json,
            "No vault",
            "account linking is not configured on this gateway (vault.providers)",
        );
    };
    let rest = req.path.strip_prefix("/link").unwrap_or("");
    let parts: Vec<&str> = rest
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (req.method, parts.as_slice()) {
        ("GET", []) => list_page(vault, req).await,
        ("GET", ["client-metadata.json"]) => client_metadata(vault),
        ("GET", [p, "start" | "callback"]) | ("POST", [p, "unlink"]) if !known(vault, p) => {
            message(
                404,
                req.wants_json,
                "Unknown provider",
                "no such provider on this gateway",
            )
        }
        ("GET", [p, "start"]) => start(vault, req, p).await,
        ("GET", [p, "callback"]) => callback(vault, req, p).await,
        ("POST", [p, "unlink"]) => unlink(vault, req, p).await,
        (_, [] | [_, "start" | "callback"] | ["client-metadata.json"]) => {
            message(405, req.wants_json, "Method not allowed", "use GET")
                .with_header("allow", "GET")
        }
        (_, [_, "unlink"]) => message(405, req.wants_json, "Method not allowed", "use POST")
            .with_header("allow", "POST"),
        _ => message(404, req.wants_json, "Not found", "no such link page"),
    }
}

/// The user: a bearer's subject, else a valid ticket (query, or form field for POSTs).
fn user(vault: &Vault, req: &LinkRequest<'_>) -> Option<(String, Option<String>)> {
    if let Some(u) = req.user {
        return Some((u.to_string(), None));
    }
    let ticket = param(req.query, "ticket").or_else(|| {
        (req.method == "POST")
            .then(|| param(std::str::from_utf8(req.body).ok(), "ticket"))
            .flatten()
    })?;
    let sub = vault.open_ticket(&ticket)?;
    Some((sub, Some(ticket)))
}

fn known(vault: &Vault, provider: &str) -> bool {
    vault.providers().iter().any(|p| p.id == provider)
}

async fn list_page(vault: &Vault, req: LinkRequest<'_>) -> Answer {
    let Some((sub, _)) = user(vault, &req) else {
        return sign_in_needed(req.wants_json);
    };
    let links = match vault.links(&sub).await {
        Ok(l) => l,
        Err(e) => return message(503, req.wants_json, "Unavailable", &e.to_string()),
    };
    if req.wants_json {
        return Answer::json(
            200,
            serde_json::to_vec(&json!({ "links": links })).unwrap_or_default(),
        );
    }
    // A fresh ticket for the buttons (the page may have been opened with a bearer).
    let ticket = vault.ticket_for(&sub);
    let t = escape(&url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect::<String>());
    let mut rows = String::new();
    for l in &links {
        let id = escape(&l.provider);
        let action = if l.linked {
            format!(
                "<form method=\"post\" action=\"/link/{id}/unlink\" style=\"display:inline\">\
                 <input type=\"hidden\" name=\"ticket\" value=\"{}\"><button type=\"submit\">Unlink</button></form>",
                escape(&ticket)
            )
        } else {
            format!("<a href=\"/link/{id}/start?ticket={t}\">Link</a>")
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{action}</td></tr>",
            escape(&l.name),
            if l.linked { "linked" } else { "not linked" },
        ));
    }
    page(
        200,
        "Your linked accounts",
        &format!("<table><tr><th>Provider</th><th>Status</th><th></th></tr>{rows}</table>"),
    )
}

fn client_metadata(vault: &Vault) -> Answer {
    let redirects: Vec<String> = vault
        .providers()
        .iter()
        .map(|p| vault.redirect_uri(&p.id))
        .collect();
    let doc = json!({
        "client_id": vault.client_metadata_url(),
        "client_name": "Cortex Gateway",
        "redirect_uris": redirects,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    Answer::json(200, serde_json::to_vec(&doc).unwrap_or_default())
}

async fn start(vault: &Vault, req: LinkRequest<'_>, provider: &str) -> Answer {
    let Some((sub, _)) = user(vault, &req) else {
        return sign_in_needed(req.wants_json);
    };
    match vault.start_link(&sub, provider).await {
        Ok((url, cookie_value)) => {
            let secure = if vault.public_origin.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let max_age = vault.link_ttl_ms / 1000;
            Answer::empty(302)
                .with_header("location", url)
                .with_header(
                    "set-cookie",
                    format!(
                        "{COOKIE_PREFIX}{provider}={cookie_value}; Path=/link/{provider}/callback; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
                    ),
                )
                .with_header("referrer-policy", "no-referrer")
        }
        Err(e) => message(502, req.wants_json, "Cannot start linking", &e.to_string()),
    }
}

async fn callback(vault: &Vault, req: LinkRequest<'_>, provider: &str) -> Answer {
    let q = req.query;
    let params = CallbackParams {
        code: param(q, "code"),
        state: param(q, "state"),
        iss: param(q, "iss"),
        error: param(q, "error"),
        error_description: param(q, "error_description"),
    };
    let name = format!("{COOKIE_PREFIX}{provider}");
    let clear =
        format!("{name}=; Path=/link/{provider}/callback; Max-Age=0; HttpOnly; SameSite=Lax");
    match vault
        .finish_link(provider, &params, cookie(req.cookies, &name))
        .await
    {
        Ok(display) => {
            let text = format!("Your {display} account is linked. You can close this window and retry in your agent.");
            if req.wants_json {
                Answer::json(
                    200,
                    serde_json::to_vec(&json!({"linked": provider})).unwrap_or_default(),
                )
            } else {
                page(200, "Account linked", &format!("<p>{}</p>", escape(&text)))
            }
            .with_header("set-cookie", clear)
        }
        Err(e) => {
            let status = match &e {
                LinkError::Provider(_) => 502,
                LinkError::Vault(super::VaultError::Store(_)) => 503,
                _ => 400,
            };
            message(status, req.wants_json, "Linking failed", &e.to_string())
                .with_header("set-cookie", clear)
        }
    }
}

async fn unlink(vault: &Vault, req: LinkRequest<'_>, provider: &str) -> Answer {
    let Some((sub, ticket)) = user(vault, &req) else {
        return sign_in_needed(req.wants_json);
    };
    match vault.unlink(&sub, provider).await {
        Ok(was) => match ticket {
            // From the page's form: back to the page.
            Some(t) if !req.wants_json => {
                let t: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
                Answer::empty(303).with_header("location", format!("/link?ticket={t}"))
            }
            _ => Answer::json(
                200,
                serde_json::to_vec(&json!({"provider": provider, "unlinked": was}))
                    .unwrap_or_default(),
            ),
        },
        Err(e) => message(503, req.wants_json, "Unlink failed", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_params_are_read() {
        assert_eq!(
            cookie(Some("a=1; cortex_link_x=v=w; b=2"), "cortex_link_x"),
            Some("v=w")
        );
        assert_eq!(cookie(Some("a=1"), "cortex_link_x"), None);
        assert_eq!(
            param(Some("code=a%20b&state=s"), "code").as_deref(),
            Some("a b")
        );
        assert_eq!(param(None, "code"), None);
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert!(owns_path("/link") && owns_path("/link/x/start") && !owns_path("/linked"));
    }
}
