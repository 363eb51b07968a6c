//! The authorization endpoint: validates the request, shows the one-click user picker, and
//! on the picker's POST redirects back with a single-use code, `state` and `iss`.
//!
//! Errors about the client or its redirect URI are shown on a page (redirecting would hand
//! the error to an unverified URI); every other error is sent to the redirect URI as
//! RFC 6749 §4.1.2.1 requires. The picker's form carries only a random request id, so a page
//! elsewhere cannot submit a sign-in it did not start here (the GET response is not readable
//! cross-origin).

use std::collections::HashMap;

use super::clients::{Client, GrantType};
use super::util::{html_escape, is_pkce_string, parse_form, random_token, split_scopes, Internal};
use super::{lock, AsRequest, DevAuthServer, DevUser, CODE_TTL, PENDING_TTL};
use crate::http::Answer;

/// A sign-in waiting on the picker page.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    client_id: String,
    client_name: String,
    client_scopes: Option<Vec<String>>,
    redirect_uri: String,
    redirect_explicit: bool,
    state: Option<String>,
    code_challenge: String,
    /// Known scopes the client asked for; None when it sent no `scope`.
    requested: Option<Vec<String>>,
    resource: String,
}

/// An authorization code.
#[derive(Debug, Clone)]
pub(crate) struct IssuedCode {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether `redirect_uri` was sent to the authorization endpoint (then the token
    /// request must repeat it).
    pub redirect_explicit: bool,
    pub code_challenge: String,
    pub sub: String,
    pub email: String,
    pub scopes: Vec<String>,
    pub resource: String,
    /// Set at the first redemption attempt: a code is good for one attempt only.
    pub spent: bool,
    /// The refresh-token family issued from it, revoked if the code is presented again.
    pub family: Option<u64>,
}

/// What a user would be granted: the requested scopes (all of the user's when none were
/// requested) that the user holds and the client may obtain.
pub(crate) fn granted_scopes(
    requested: Option<&[String]>,
    user: &DevUser,
    client_scopes: Option<&[String]>,
) -> Vec<String> {
    requested
        .unwrap_or(&user.scopes)
        .iter()
        .filter(|s| user.scopes.contains(s))
        .filter(|s| client_scopes.is_none_or(|allowed| allowed.contains(s)))
        .cloned()
        .collect()
}

/// A redirect to `uri` with `params` added to its query.
fn redirect(status: u16, uri: &str, params: &[(&str, &str)]) -> Answer {
    let location = match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    };
    Answer::empty(status).with_header("location", location)
}

/// A page for errors that must not be redirected.
fn error_page(status: u16, title: &str, message: &str) -> Answer {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>{STYLE}</head>\
         <body><main><p class=\"badge\">Development authorization server</p><h1>{t}</h1><p>{m}</p></main></body></html>",
        t = html_escape(title),
        m = html_escape(message),
    );
    html(status, body)
}

fn html(status: u16, body: String) -> Answer {
    let mut a = Answer::empty(status);
    a.content_type = Some("text/html; charset=utf-8");
    a.body = body.into();
    a.with_header(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    )
    .with_header("x-frame-options", "DENY")
    .with_header("referrer-policy", "no-referrer")
    .with_header("x-content-type-options", "nosniff")
}

const STYLE: &str = "<style>\
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:34rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 2px 12px #0002}\
h1{font-size:1.3rem;margin:.2rem 0 1rem}\
.badge{display:inline-block;background:#fff3cd;color:#7a5b00;border-radius:6px;padding:.15rem .5rem;font-size:.8rem;margin:0}\
code{background:#eef0f4;border-radius:4px;padding:0 .25rem}\
button{display:block;width:100%;text-align:left;margin:.6rem 0;padding:.8rem 1rem;border:1px solid #c9ced8;border-radius:8px;background:#fff;font-size:1rem;cursor:pointer}\
button:hover:enabled{border-color:#3b6fd8;background:#f2f6ff}\
button:disabled{opacity:.55;cursor:not-allowed}\
button small{display:block;color:#5b6475;margin-top:.2rem}\
button.deny{text-align:center;color:#8a1c1c}\
.muted{color:#5b6475;font-size:.9rem}\
</style>";

impl DevAuthServer {
    /// GET /oauth/authorize.
    pub(super) fn authorize_get(&self, query: &str) -> Result<Answer, Internal> {
        let params = match parse_form(query) {
            Ok(p) => p,
            Err(e) => return Ok(error_page(400, "Invalid authorization request", &e)),
        };
        let client_id = params.get("client_id").map(String::as_str).unwrap_or("");
        if client_id.is_empty() {
            return Ok(error_page(
                400,
                "Invalid authorization request",
                "client_id is missing.",
            ));
        }
        let Some(client) = self.clients.lookup(client_id) else {
            return Ok(error_page(
                400,
                "Unknown client",
                "This client_id is not registered here (or was registered with another signing key). Remove the server from your MCP client and add it again so it registers anew.",
            ));
        };
        let (redirect_uri, redirect_explicit) = match params.get("redirect_uri") {
            Some(r) => match client.match_redirect_uri(r) {
                Some(r) => (r, true),
                None => {
                    return Ok(error_page(
                        400,
                        "Invalid redirect URI",
                        &format!("{r} is not a redirect URI registered for this client."),
                    ))
                }
            },
            None => match client.redirect_uris.as_slice() {
                [only] => (only.clone(), false),
                _ => {
                    return Ok(error_page(
                        400,
                        "Invalid authorization request",
                        "redirect_uri is missing (required when a client has several or none registered).",
                    ))
                }
            },
        };
        let state = params.get("state").cloned();
        match self.check_authorization_request(&client, &params) {
            Err((error, description)) => {
                let mut p = vec![
                    ("error", error),
                    ("error_description", description.as_str()),
                ];
                if let Some(s) = &state {
                    p.push(("state", s));
                }
                p.push(("iss", &self.issuer));
                Ok(redirect(302, &redirect_uri, &p))
            }
            Ok((code_challenge, requested, resource)) => {
                let pending = Pending {
                    client_id: client.id.clone(),
                    client_name: client.display_name().to_string(),
                    client_scopes: client.scopes.clone(),
                    redirect_uri,
                    redirect_explicit,
                    state,
                    code_challenge,
                    requested,
                    resource,
                };
                let id = random_token()?;
                let page = self.picker_page(&id, &pending);
                lock(&self.pending).insert(id, pending, PENDING_TTL);
                Ok(page)
            }
        }
    }

    /// The checks whose failures go back to the client: response type, PKCE, resource.
    /// Returns the code challenge, the requested known scopes and the resource.
    #[allow(clippy::type_complexity)]
    fn check_authorization_request(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
    ) -> Result<(String, Option<Vec<String>>, String), (&'static str, String)> {
        if !client.allows(GrantType::AuthorizationCode) {
            return Err((
                "unauthorized_client",
                "this client is not registered for the authorization_code grant".into(),
            ));
        }
        match params.get("response_type").map(String::as_str) {
            Some("code") => {}
            Some(other) => {
                return Err((
                    "unsupported_response_type",
                    format!("response_type `{other}` is not supported; use `code`"),
                ))
            }
            None => {
                return Err((
                    "invalid_request",
                    "response_type is missing; use `code`".into(),
                ))
            }
        }
        let Some(challenge) = params.get("code_challenge") else {
            return Err((
                "invalid_request",
                "code_challenge is required: PKCE with S256 is mandatory".into(),
            ));
        };
        match params.get("code_challenge_method").map(String::as_str) {
            Some("S256") => {}
            other => {
                return Err((
                    "invalid_request",
                    format!(
                        "code_challenge_method must be S256 (got {})",
                        other.unwrap_or("none, which means plain")
                    ),
                ))
            }
        }
        if !is_pkce_string(challenge) {
            return Err(("invalid_request", "code_challenge is malformed".into()));
        }
        let resource = self.check_resource(params.get("resource").map(String::as_str))?;
        let requested = params.get("scope").map(|s| {
            split_scopes(s)
                .into_iter()
                .filter(|s| self.scopes.contains(s))
                .collect::<Vec<_>>()
        });
        Ok((challenge.clone(), requested, resource))
    }

    /// RFC 8707: the only resource is the gateway's canonical URI (the default when none is
    /// sent).
    pub(super) fn check_resource(
        &self,
        resource: Option<&str>,
    ) -> Result<String, (&'static str, String)> {
        match resource {
            None => Ok(self.resource.clone()),
            Some(r) if r == self.resource => Ok(r.to_string()),
            Some(r) => Err((
                "invalid_target",
                format!(
                    "unknown resource `{r}`: this server issues tokens for {} only",
                    self.resource
                ),
            )),
        }
    }

    fn picker_page(&self, request_id: &str, p: &Pending) -> Answer {
        let mut buttons = String::new();
        for user in &self.users {
            let granted = granted_scopes(p.requested.as_deref(), user, p.client_scopes.as_deref());
            let detail = if granted.is_empty() {
                "holds none of the requested scopes".to_string()
            } else {
                granted.join(" ")
            };
            buttons.push_str(&format!(
                "<button type=\"submit\" name=\"user\" value=\"{v}\"{d}><strong>{n}</strong> <span class=\"muted\">{e}</span><small>{s}</small></button>",
                v = html_escape(&user.name),
                n = html_escape(&user.name),
                e = html_escape(&user.email),
                s = html_escape(&detail),
                d = if granted.is_empty() { " disabled" } else { "" },
            ));
        }
        let requested = match &p.requested {
            Some(r) if !r.is_empty() => r.join(" "),
            Some(_) => "no known scope".into(),
            None => "every scope of the user".into(),
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>Sign in: development authorization server</title>{STYLE}</head><body><main>\
             <p class=\"badge\">Development authorization server: not for production</p>\
             <h1>Sign in to {resource}</h1>\
             <p><strong>{client}</strong> asks for <code>{requested}</code>.<br><span class=\"muted\">It will be sent back to {redirect}</span></p>\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"request\" value=\"{id}\">\
             <p class=\"muted\">Pick a user (no password: this server is for trying things out on your machine):</p>\
             {buttons}\
             <button class=\"deny\" type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button>\
             </form></main></body></html>",
            resource = html_escape(&self.resource),
            client = html_escape(&p.client_name),
            requested = html_escape(&requested),
            redirect = html_escape(&p.redirect_uri),
            action = super::AUTHORIZE_PATH,
            id = html_escape(request_id),
        );
        html(200, body)
    }

    /// POST /oauth/authorize: the picker's choice (`request`, then `user` or `decision=deny`).
    pub(super) fn authorize_post(&self, req: &AsRequest<'_>) -> Result<Answer, Internal> {
        let text = String::from_utf8_lossy(req.body);
        let form = match parse_form(&text) {
            Ok(f) => f,
            Err(e) => return Ok(error_page(400, "Invalid sign-in", &e)),
        };
        let id = form.get("request").map(String::as_str).unwrap_or("");
        let Some(p) = lock(&self.pending).remove(id) else {
            return Ok(error_page(
                400,
                "Sign-in expired",
                "This sign-in request expired or was already used. Start again from your MCP client.",
            ));
        };
        let mut params: Vec<(&str, &str)> = Vec::new();
        let deny = |description: &str| {
            let mut p2: Vec<(&str, &str)> = vec![
                ("error", "access_denied"),
                ("error_description", description),
            ];
            if let Some(s) = &p.state {
                p2.push(("state", s));
            }
            p2.push(("iss", &self.issuer));
            Ok(redirect(303, &p.redirect_uri, &p2))
        };
        if form.get("decision").map(String::as_str) == Some("deny") {
            return deny("the user cancelled the sign-in");
        }
        let name = form.get("user").map(String::as_str).unwrap_or("");
        let Some(user) = self.users.iter().find(|u| u.name == name) else {
            return Ok(error_page(
                400,
                "Unknown user",
                &format!("There is no user `{name}` here."),
            ));
        };
        let scopes = granted_scopes(p.requested.as_deref(), user, p.client_scopes.as_deref());
        if scopes.is_empty() {
            return deny(&format!("{} holds none of the requested scopes", user.name));
        }
        let code = random_token()?;
        tracing::info!(client_id = %p.client_id, sub = %user.name, scope = %scopes.join(" "), "dev authorization server: issued an authorization code");
        lock(&self.codes).insert(
            code.clone(),
            IssuedCode {
                client_id: p.client_id.clone(),
                redirect_uri: p.redirect_uri.clone(),
                redirect_explicit: p.redirect_explicit,
                code_challenge: p.code_challenge.clone(),
                sub: user.name.clone(),
                email: user.email.clone(),
                scopes,
                resource: p.resource.clone(),
                spent: false,
                family: None,
            },
            CODE_TTL,
        );
        params.push(("code", &code));
        if let Some(s) = &p.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.issuer));
        Ok(redirect(303, &p.redirect_uri, &params))
    }
}
