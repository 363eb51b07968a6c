//! The token endpoint (authorization_code with PKCE, refresh_token with rotation,
//! client_credentials) and RFC 7009 revocation.
//!
//! Refresh tokens rotate: each use returns a new one and retires the old. Presenting a retired
//! token again means it leaked (or a client raced itself), so the whole family, every token
//! descending from the same authorization code, is revoked (OAuth 2.1 §4.3.1). Likewise a
//! code presented twice revokes what was issued from it. Access tokens are JWTs and stay valid
//! until they expire (15 minutes by default).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::clients::{Client, GrantType};
use super::store::BoundedMap;
use super::util::{
    b64url, is_pkce_string, now_unix, oauth_error, parse_form, random_token, split_scopes, Internal,
};
use super::{lock, AsRequest, DevAuthServer, REFRESH_TTL};
use crate::http::Answer;

/// One refresh token (stored under a hash of the token).
#[derive(Debug, Clone)]
pub(crate) struct RefreshRecord {
    family: u64,
    client_id: String,
    sub: String,
    email: Option<String>,
    scopes: Vec<String>,
    resource: String,
    /// Rotated: presenting it again is reuse.
    used: bool,
    /// Its family was revoked.
    revoked: bool,
}

/// Refresh tokens and their families.
#[derive(Debug)]
pub(crate) struct RefreshStore {
    tokens: BoundedMap<RefreshRecord>,
    next_family: u64,
}

impl RefreshStore {
    pub(crate) fn new(capacity: usize) -> Self {
        RefreshStore {
            tokens: BoundedMap::new(capacity),
            next_family: 1,
        }
    }

    fn new_family(&mut self) -> u64 {
        let f = self.next_family;
        self.next_family += 1;
        f
    }

    /// Revokes every token of `family`.
    pub(crate) fn revoke_family(&mut self, family: u64) {
        for r in self.tokens.values_mut().filter(|r| r.family == family) {
            r.revoked = true;
        }
    }
}

fn token_key(token: &str) -> String {
    b64url(&Sha256::digest(token.as_bytes()))
}

/// A failed token request.
enum Fail {
    /// An OAuth error reply; `basic` adds the `WWW-Authenticate: Basic` challenge (RFC 6749
    /// §5.2 requires it when the client tried Basic authentication).
    OAuth {
        status: u16,
        error: &'static str,
        description: String,
        basic: bool,
    },
    Internal(Internal),
}

impl From<Internal> for Fail {
    fn from(e: Internal) -> Self {
        Fail::Internal(e)
    }
}

fn bad(error: &'static str, description: impl Into<String>) -> Fail {
    Fail::OAuth {
        status: 400,
        error,
        description: description.into(),
        basic: false,
    }
}

fn invalid_client(description: impl Into<String>, basic: bool) -> Fail {
    Fail::OAuth {
        status: 401,
        error: "invalid_client",
        description: description.into(),
        basic,
    }
}

impl Fail {
    fn answer(self) -> Answer {
        match self {
            Fail::Internal(e) => e.answer(),
            Fail::OAuth {
                status,
                error,
                description,
                basic,
            } => {
                let a = oauth_error(status, error, &description).with_header("pragma", "no-cache");
                if basic {
                    a.with_header(
                        "www-authenticate",
                        "Basic realm=\"cortex-gateway development authorization server\"",
                    )
                } else {
                    a
                }
            }
        }
    }
}

/// Decodes a Basic credential part, which RFC 6749 §2.3.1 form-encodes (`%XX`, `+` = space).
fn form_decode(s: &str) -> String {
    // Parsed as the value of a one-pair form; a raw `&` would split it, so it is escaped.
    let pair = format!("x={}", s.replace('&', "%26"));
    url::form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl DevAuthServer {
    fn form(&self, req: &AsRequest<'_>) -> Result<HashMap<String, String>, Fail> {
        if req.content_type.is_some_and(|ct| {
            !ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        }) {
            return Err(bad(
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let text = std::str::from_utf8(req.body)
            .map_err(|_| bad("invalid_request", "the body is not UTF-8"))?;
        parse_form(text).map_err(|e| bad("invalid_request", e))
    }

    /// Authenticates the client: Basic, `client_secret` in the body, or a public client's
    /// bare `client_id`.
    fn authenticate_client(
        &self,
        req: &AsRequest<'_>,
        form: &HashMap<String, String>,
    ) -> Result<Client, Fail> {
        let basic = req.authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
        });
        if let Some(encoded) = basic {
            if form.contains_key("client_secret") {
                return Err(bad(
                    "invalid_request",
                    "use one client authentication method, not both Basic and client_secret",
                ));
            }
            let decoded = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = (form_decode(id), form_decode(secret));
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(invalid_client(
                    "client_id differs from the Basic credentials",
                    true,
                ));
            }
            let client = self
                .clients
                .lookup(&id)
                .ok_or_else(|| invalid_client("unknown client", true))?;
            if client.is_confidential() && !self.clients.secret_matches(&client, &secret) {
                return Err(invalid_client("wrong client secret", true));
            }
            return Ok(client);
        }
        let id = form.get("client_id").ok_or_else(|| {
            invalid_client("client authentication is required (client_id)", false)
        })?;
        let client = self
            .clients
            .lookup(id)
            .ok_or_else(|| invalid_client("unknown client", false))?;
        if client.is_confidential() {
            match form.get("client_secret") {
                Some(s) if self.clients.secret_matches(&client, s) => {}
                Some(_) => return Err(invalid_client("wrong client secret", false)),
                None => {
                    return Err(invalid_client(
                        "this is a confidential client: authenticate with client_secret_basic or client_secret_post",
                        false,
                    ))
                }
            }
        }
        Ok(client)
    }

    /// POST /oauth/token.
    pub(super) fn token(&self, req: &AsRequest<'_>) -> Result<Answer, Internal> {
        let result = self.form(req).and_then(|form| {
            let client = self.authenticate_client(req, &form)?;
            match form.get("grant_type").map(String::as_str) {
                Some("authorization_code") => self.grant_code(&client, &form),
                Some("refresh_token") => self.grant_refresh(&client, &form),
                Some("client_credentials") => self.grant_client_credentials(&client, &form),
                Some(other) => Err(bad(
                    "unsupported_grant_type",
                    format!("grant_type `{other}` is not supported (authorization_code, refresh_token, client_credentials)"),
                )),
                None => Err(bad("invalid_request", "grant_type is missing")),
            }
        });
        Ok(match result {
            Ok(body) => {
                crate::dev_as::util::json_answer(200, &body).with_header("pragma", "no-cache")
            }
            Err(Fail::Internal(e)) => return Err(e),
            Err(f) => f.answer(),
        })
    }

    fn grant_code(&self, client: &Client, form: &HashMap<String, String>) -> Result<Value, Fail> {
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(bad(
                "unauthorized_client",
                "this client may not use the authorization_code grant",
            ));
        }
        let code = form
            .get("code")
            .ok_or_else(|| bad("invalid_request", "code is missing"))?;
        let issued = {
            let mut codes = lock(&self.codes);
            let entry = codes
                .get_mut(code)
                .ok_or_else(|| bad("invalid_grant", "unknown or expired authorization code"))?;
            if entry.spent {
                if let Some(family) = entry.family {
                    lock(&self.refresh).revoke_family(family);
                }
                tracing::warn!(client_id = %entry.client_id, "dev authorization server: an authorization code was presented twice; tokens issued from it are revoked");
                return Err(bad(
                    "invalid_grant",
                    "authorization code already used; the tokens issued from it are revoked",
                ));
            }
            entry.spent = true;
            entry.clone()
        };
        if issued.client_id != client.id {
            return Err(bad(
                "invalid_grant",
                "the authorization code was issued to another client",
            ));
        }
        match form.get("redirect_uri") {
            Some(r) if *r != issued.redirect_uri => {
                return Err(bad(
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                ))
            }
            None if issued.redirect_explicit => {
                return Err(bad(
                    "invalid_request",
                    "redirect_uri is required: it was part of the authorization request",
                ))
            }
            _ => {}
        }
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| bad("invalid_request", "code_verifier is required (PKCE)"))?;
        if !is_pkce_string(verifier)
            || b64url(&Sha256::digest(verifier.as_bytes())) != issued.code_challenge
        {
            return Err(bad(
                "invalid_grant",
                "code_verifier does not match the code_challenge (PKCE)",
            ));
        }
        if let Some(r) = form.get("resource") {
            if *r != issued.resource {
                return Err(bad(
                    "invalid_target",
                    "resource differs from the one of the authorization request",
                ));
            }
        }
        let family = if client.allows(GrantType::RefreshToken) {
            let f = lock(&self.refresh).new_family();
            if let Some(entry) = lock(&self.codes).get_mut(code) {
                entry.family = Some(f);
            }
            Some(f)
        } else {
            None
        };
        self.issue(
            &client.id,
            &issued.sub,
            Some(&issued.email),
            &issued.scopes,
            &issued.resource,
            family,
            "authorization_code",
        )
    }

    fn grant_refresh(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
    ) -> Result<Value, Fail> {
        if !client.allows(GrantType::RefreshToken) {
            return Err(bad(
                "unauthorized_client",
                "this client may not use the refresh_token grant",
            ));
        }
        let token = form
            .get("refresh_token")
            .ok_or_else(|| bad("invalid_request", "refresh_token is missing"))?;
        let record = {
            let mut store = lock(&self.refresh);
            let entry = store
                .tokens
                .get_mut(&token_key(token))
                .ok_or_else(|| bad("invalid_grant", "unknown or expired refresh token"))?;
            if entry.client_id != client.id {
                return Err(bad(
                    "invalid_grant",
                    "the refresh token was issued to another client",
                ));
            }
            if entry.revoked {
                return Err(bad("invalid_grant", "the refresh token was revoked"));
            }
            if entry.used {
                let family = entry.family;
                let sub = entry.sub.clone();
                store.revoke_family(family);
                tracing::warn!(client_id = %client.id, sub = %sub, "dev authorization server: a rotated refresh token was reused; its whole chain is revoked");
                return Err(bad(
                    "invalid_grant",
                    "refresh token reuse detected: it was already exchanged, so every token of its chain is revoked; sign in again",
                ));
            }
            entry.clone()
        };
        let scopes = match form.get("scope") {
            None => record.scopes.clone(),
            Some(s) => {
                let asked = split_scopes(s);
                if let Some(extra) = asked.iter().find(|s| !record.scopes.contains(s)) {
                    return Err(bad(
                        "invalid_scope",
                        format!("`{extra}` was not part of the original grant"),
                    ));
                }
                asked
            }
        };
        if let Some(r) = form.get("resource") {
            if *r != record.resource {
                return Err(bad(
                    "invalid_target",
                    "resource differs from the original grant",
                ));
            }
        }
        {
            // Retire the presented token (unless a concurrent request beat us to it).
            let mut store = lock(&self.refresh);
            match store.tokens.get_mut(&token_key(token)) {
                Some(e) if !e.used && !e.revoked => e.used = true,
                _ => {
                    return Err(bad(
                        "invalid_grant",
                        "the refresh token was already exchanged",
                    ))
                }
            }
        }
        self.issue(
            &client.id,
            &record.sub,
            record.email.as_deref(),
            &scopes,
            &record.resource,
            Some(record.family),
            "refresh_token",
        )
    }

    fn grant_client_credentials(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
    ) -> Result<Value, Fail> {
        if !client.is_confidential() || !client.allows(GrantType::ClientCredentials) {
            return Err(bad(
                "unauthorized_client",
                "client_credentials is for confidential clients registered with that grant",
            ));
        }
        let allowed: &[String] = client.scopes.as_deref().unwrap_or(&self.scopes);
        let scopes: Vec<String> = match form.get("scope") {
            None => allowed.to_vec(),
            Some(s) => {
                let granted: Vec<String> = split_scopes(s)
                    .into_iter()
                    .filter(|s| allowed.contains(s))
                    .collect();
                if granted.is_empty() {
                    return Err(bad(
                        "invalid_scope",
                        format!(
                            "none of the requested scopes is available to this client ({})",
                            allowed.join(" ")
                        ),
                    ));
                }
                granted
            }
        };
        let resource = self
            .check_resource(form.get("resource").map(String::as_str))
            .map_err(|(e, d)| bad(e, d))?;
        self.issue(
            &client.id,
            &client.id,
            None,
            &scopes,
            &resource,
            None,
            "client_credentials",
        )
    }

    /// Mints the access token (and a refresh token of `family`, if any).
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        client_id: &str,
        sub: &str,
        email: Option<&str>,
        scopes: &[String],
        resource: &str,
        family: Option<u64>,
        grant: &str,
    ) -> Result<Value, Fail> {
        let now = now_unix();
        let ttl = self.access_ttl.as_secs();
        let scope = scopes.join(" ");
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": resource,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": random_token()?,
            "scope": scope,
            "client_id": client_id,
        });
        if let (Some(e), Some(obj)) = (email, claims.as_object_mut()) {
            obj.insert("email".into(), json!(e));
        }
        let access_token = self.key.sign_jwt("at+jwt", &claims)?;
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scope,
        });
        if let Some(family) = family {
            let refresh = format!("rt.{}", random_token()?);
            lock(&self.refresh).tokens.insert(
                token_key(&refresh),
                RefreshRecord {
                    family,
                    client_id: client_id.to_string(),
                    sub: sub.to_string(),
                    email: email.map(str::to_string),
                    scopes: scopes.to_vec(),
                    resource: resource.to_string(),
                    used: false,
                    revoked: false,
                },
                REFRESH_TTL,
            );
            if let Some(obj) = body.as_object_mut() {
                obj.insert("refresh_token".into(), json!(refresh));
            }
        }
        tracing::info!(grant, client_id, sub, scope = %scope, "dev authorization server: issued an access token");
        Ok(body)
    }

    /// POST /oauth/revoke (RFC 7009): revokes a refresh token's family. Access tokens are
    /// self-contained JWTs and cannot be revoked; the answer is 200 either way.
    pub(super) fn revoke(&self, req: &AsRequest<'_>) -> Result<Answer, Internal> {
        let result = self.form(req).and_then(|form| {
            let client = self.authenticate_client(req, &form)?;
            let token = form.get("token").ok_or_else(|| bad("invalid_request", "token is missing"))?;
            let mut store = lock(&self.refresh);
            let family = store
                .tokens
                .get_mut(&token_key(token))
                .filter(|r| r.client_id == client.id)
                .map(|r| r.family);
            if let Some(f) = family {
                store.revoke_family(f);
                tracing::info!(client_id = %client.id, "dev authorization server: revoked a refresh token chain");
            }
            Ok(())
        });
        Ok(match result {
            Ok(()) => Answer::empty(200),
            Err(Fail::Internal(e)) => return Err(e),
            Err(f) => f.answer(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn basic_credential_parts_are_form_decoded() {
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
        assert_eq!(form_decode("p&q=r"), "p&q=r");
        assert_eq!(form_decode(""), "");
    }
}
