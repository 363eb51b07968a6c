//! A small OAuth 2.1 authorization server for development, served by the gateway itself.
//!
//! `cortex-gateway demo --oauth` (or `dev_authorization_server.enabled: true`) turns it on so
//! that a newcomer can connect MCP Inspector or Claude Code with *real* OAuth and watch the
//! catalog change with the signed-in user's scopes. It is deliberately small and is not meant
//! for production: there are no passwords, a one-click picker page chooses the user, and all
//! state but the signing key lives in memory. Production points `auth.oauth.issuer` at a real
//! authorization server.
//!
//! What it implements:
//! - RFC 8414 metadata at `/.well-known/oauth-authorization-server` (and the same document at
//!   `/.well-known/openid-configuration`), issuer = the gateway's public origin, byte for byte
//!   what the resource server advertises in `authorization_servers`;
//! - a JWKS at [`JWKS_PATH`] (one ES256 key, persisted under the data directory);
//! - RFC 7591 dynamic client registration, public and confidential, redirect URIs loopback
//!   `http` or `https` (see [`clients`] for why registrations are stateless);
//! - the authorization code grant with PKCE S256 only, `state` round-trip, RFC 9207 `iss` in
//!   the redirect, RFC 8707 `resource` (must be the gateway's canonical URI; it becomes the
//!   token's `aud`); codes are single use and live 10 minutes;
//! - `client_credentials` for confidential clients; refresh tokens with rotation, where
//!   presenting a rotated token again revokes the whole chain; RFC 7009 revocation;
//! - access tokens are ES256 JWTs (`typ: at+jwt`) with `iss sub aud exp iat jti scope
//!   client_id email`.
//!
//! It only answers loopback peers, and configuration refuses it unless every listener and the
//! canonical URI are on loopback ([`config_problems`]).

mod authorize;
mod clients;
pub mod demo;
pub mod keys;
mod store;
mod token;
mod util;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pingora::proxy::Session;
use serde_json::{json, Value};
use tracing::warn;

use crate::config::{AuthMode, Config};
use crate::http::{read_body, request_host, write_answer, Answer, BodyRead};
use cortex_filters::origin::HostPolicy;

pub use keys::{default_key_file, KeyError, SigningKey};
// For the configuration checks, which report these rules with file positions.
pub(crate) use clients::{check_redirect_uri, SEALED_PREFIX};

use authorize::{IssuedCode, Pending};
use clients::Clients;
use store::BoundedMap;
use token::RefreshStore;
use util::{json_answer, oauth_error};

/// RFC 8414 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// The same metadata for clients that try OpenID Connect discovery.
pub const OIDC_METADATA_PATH: &str = "/.well-known/openid-configuration";
/// Authorization endpoint (GET: the picker page; POST: the picker's choice).
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
/// Token endpoint.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Dynamic client registration endpoint.
pub const REGISTER_PATH: &str = "/oauth/register";
/// The signing key set. (Not `/.well-known/jwks.json`: that is the gateway's own key set for
/// minted backend tokens.)
pub const JWKS_PATH: &str = "/oauth/jwks";
/// Token revocation endpoint (RFC 7009).
pub const REVOKE_PATH: &str = "/oauth/revoke";

/// Largest request body the endpoints read.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Lifetime of an authorization code.
const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Lifetime of a sign-in waiting on the picker page.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Lifetime of a refresh token.
const REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bounds of the in-memory state.
const MAX_PENDING: usize = 1_000;
const MAX_CODES: usize = 1_000;
const MAX_REFRESH_TOKENS: usize = 10_000;

/// Why the development authorization server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DevAsError {
    /// The configuration does not allow it.
    #[error("dev_authorization_server cannot be enabled:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    /// The signing key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A user of the picker page.
#[derive(Debug, Clone)]
pub struct DevUser {
    /// Login name and `sub`.
    pub name: String,
    /// `email` claim.
    pub email: String,
    /// Scopes this user may be granted.
    pub scopes: Vec<String>,
}

/// One request to the authorization server, independent of the HTTP stack.
#[derive(Debug, Clone, Copy)]
pub struct AsRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path (no query).
    pub path: &'a str,
    /// Raw query string (may be empty).
    pub query: &'a str,
    /// `Authorization` header.
    pub authorization: Option<&'a str>,
    /// `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// Request body.
    pub body: &'a [u8],
}

/// The development authorization server.
pub struct DevAuthServer {
    issuer: String,
    /// The only acceptable `resource`: the gateway's canonical URI.
    resource: String,
    key: SigningKey,
    key_file: PathBuf,
    users: Vec<DevUser>,
    /// `scopes_supported`: every scope of the users and configured clients.
    scopes: Vec<String>,
    clients: Clients,
    access_ttl: Duration,
    pending: Mutex<BoundedMap<Pending>>,
    codes: Mutex<BoundedMap<IssuedCode>>,
    refresh: Mutex<RefreshStore>,
}

/// The issuer the built-in server uses for `config`: the origin of the canonical URI
/// (`http://127.0.0.1:3213`, no trailing slash). `auth.oauth.issuer` must be exactly this.
pub fn issuer_for(config: &Config) -> String {
    let canonical = config.canonical_uri();
    url::Url::parse(&canonical)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or(canonical)
}

/// Why `config` may not enable the development authorization server (empty when it may, or
/// when it is not enabled). Refused off loopback: its picker page hands out tokens to anyone
/// who can reach it.
pub fn config_problems(config: &Config) -> Vec<String> {
    let das = &config.dev_authorization_server;
    let mut out = Vec::new();
    if !das.enabled {
        return out;
    }
    if !config.all_listeners_loopback() {
        out.push(format!(
            "dev_authorization_server.enabled: every listener must be on loopback (its picker page gives a token to anyone who can reach it); server.listen is {:?}",
            config.server.listen
        ));
    }
    let canonical = config.canonical_uri();
    let host_ok = url::Url::parse(&canonical)
        .ok()
        .and_then(|u| u.host_str().map(cortex_filters::origin::is_loopback_host))
        .unwrap_or(false);
    if !host_ok {
        out.push(format!(
            "dev_authorization_server.enabled: the canonical URI must be on a loopback host, got {canonical}"
        ));
    }
    let issuer = issuer_for(config);
    match (&config.auth.mode, &config.auth.oauth.issuer) {
        (AuthMode::Oauth, Some(configured)) if *configured != issuer => out.push(format!(
            "auth.oauth.issuer is `{configured}` but the built-in development authorization server's issuer is `{issuer}`: set auth.oauth.issuer to exactly `{issuer}` (byte for byte, no trailing slash)"
        )),
        _ => {}
    }
    if das.users.is_empty() {
        out.push("dev_authorization_server.users: at least one user is needed".into());
    }
    for (i, u) in das.users.iter().enumerate() {
        if !valid_name(&u.name) {
            out.push(format!(
                "dev_authorization_server.users[{i}].name `{}`: use 1-64 letters, digits, `.`, `_`, `-` or `@`",
                u.name
            ));
        }
        if das.users[..i].iter().any(|o| o.name == u.name) {
            out.push(format!(
                "dev_authorization_server.users[{i}].name `{}` is listed twice",
                u.name
            ));
        }
        check_scopes(
            &format!("dev_authorization_server.users[{i}].scopes"),
            &u.scopes,
            &mut out,
        );
    }
    for (i, c) in das.clients.iter().enumerate() {
        let at = format!("dev_authorization_server.clients[{i}]");
        if !valid_name(&c.id) || c.id.starts_with(clients::SEALED_PREFIX) {
            out.push(format!(
                "{at}.id `{}`: use 1-64 letters, digits, `.`, `_`, `-` or `@`, not starting with `{}`",
                c.id,
                clients::SEALED_PREFIX
            ));
        }
        if das.clients[..i].iter().any(|o| o.id == c.id) {
            out.push(format!("{at}.id `{}` is listed twice", c.id));
        }
        match &c.secret {
            Some(s) if s.chars().count() < 8 => {
                out.push(format!("{at}.secret is too short: at least 8 characters"))
            }
            None if c.redirect_uris.is_empty() => out.push(format!(
                "{at}: a client needs a secret (client_credentials) or redirect_uris (authorization code), or both"
            )),
            _ => {}
        }
        for (j, uri) in c.redirect_uris.iter().enumerate() {
            if let Err(e) = clients::check_redirect_uri(uri) {
                out.push(format!("{at}.redirect_uris[{j}]: {e}"));
            }
        }
        check_scopes(&format!("{at}.scopes"), &c.scopes, &mut out);
    }
    let ttl = das.access_token_ttl;
    if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(24 * 3600) {
        out.push(format!(
            "dev_authorization_server.access_token_ttl must be between 10s and 24h, got {}s",
            ttl.as_secs()
        ));
    }
    if das.key_file.as_deref().is_some_and(|k| k.trim().is_empty()) {
        out.push(
            "dev_authorization_server.key_file must not be empty (leave it out for the default)"
                .into(),
        );
    }
    out
}

pub(crate) fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

fn check_scopes(at: &str, scopes: &[String], out: &mut Vec<String>) {
    for s in scopes {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            out.push(format!(
                "{at}: `{s}` is not a scope (printable ASCII without spaces, quotes or backslashes)"
            ));
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every critical
/// section leaves the maps consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DevAuthServer {
    /// Builds the server for `config`: checks it ([`config_problems`]) and loads or creates
    /// the signing key.
    pub fn from_config(config: &Config) -> Result<DevAuthServer, DevAsError> {
        let problems = config_problems(config);
        if !problems.is_empty() {
            return Err(DevAsError::Config(problems));
        }
        let key_file = config
            .dev_authorization_server
            .key_file
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(|| default_key_file(config));
        let (key, created) = SigningKey::load_or_create(&key_file)?;
        if created {
            tracing::info!(key_file = %key_file.display(), kid = key.kid(), "dev authorization server: generated a new signing key");
        }
        Ok(DevAuthServer::with_key(config, key, key_file))
    }

    /// Builds the server with a given key (`key_file` is only reported).
    pub fn with_key(config: &Config, key: SigningKey, key_file: PathBuf) -> DevAuthServer {
        let das = &config.dev_authorization_server;
        let users: Vec<DevUser> = das
            .users
            .iter()
            .map(|u| DevUser {
                name: u.name.clone(),
                email: u
                    .email
                    .clone()
                    .unwrap_or_else(|| format!("{}@localhost", u.name)),
                scopes: u.scopes.clone(),
            })
            .collect();
        let mut scopes: Vec<String> = Vec::new();
        for s in users
            .iter()
            .flat_map(|u| u.scopes.iter())
            .chain(das.clients.iter().flat_map(|c| c.scopes.iter()))
        {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let clients = Clients::new(&das.clients, key.derive("client registration v1"));
        DevAuthServer {
            issuer: issuer_for(config),
            resource: config.canonical_uri(),
            key,
            key_file,
            users,
            scopes,
            clients,
            access_ttl: das.access_token_ttl,
            pending: Mutex::new(BoundedMap::new(MAX_PENDING)),
            codes: Mutex::new(BoundedMap::new(MAX_CODES)),
            refresh: Mutex::new(RefreshStore::new(MAX_REFRESH_TOKENS)),
        }
    }

    /// The issuer (`http://127.0.0.1:3213`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the signing key lives.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The users of the picker page.
    pub fn users(&self) -> &[DevUser] {
        &self.users
    }

    /// Whether `path` belongs to this server (the gateway routes it here).
    pub fn owns_path(path: &str) -> bool {
        matches!(path, METADATA_PATH | OIDC_METADATA_PATH) || path.starts_with("/oauth/")
    }

    /// The RFC 8414 metadata document.
    pub fn metadata(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}{AUTHORIZE_PATH}"),
            "token_endpoint": format!("{i}{TOKEN_PATH}"),
            "registration_endpoint": format!("{i}{REGISTER_PATH}"),
            "jwks_uri": format!("{i}{JWKS_PATH}"),
            "revocation_endpoint": format!("{i}{REVOKE_PATH}"),
            "scopes_supported": self.scopes,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "service_documentation": "https://github.com/cortex-gateway/cortex-gateway/blob/main/docs/dev-authorization-server.md",
        })
    }

    /// Answers one request (any path [`owns_path`](Self::owns_path) accepts).
    pub fn handle(&self, req: &AsRequest<'_>) -> Answer {
        let api = req.path != AUTHORIZE_PATH;
        if api && req.method == "OPTIONS" {
            // CORS preflight: browser-based clients (MCP Inspector) call these directly.
            return Answer::empty(204)
                .with_header("access-control-allow-origin", "*")
                .with_header("access-control-allow-methods", "GET, POST, OPTIONS")
                .with_header(
                    "access-control-allow-headers",
                    "authorization, content-type, mcp-protocol-version",
                )
                .with_header("access-control-max-age", "600");
        }
        let result = match (req.path, req.method) {
            (METADATA_PATH | OIDC_METADATA_PATH | JWKS_PATH, "GET") => Ok(json_answer(
                200,
                &if req.path == JWKS_PATH {
                    self.key.jwks()
                } else {
                    self.metadata()
                },
            )),
            (REGISTER_PATH, "POST") => self.register(req),
            (AUTHORIZE_PATH, "GET") => self.authorize_get(req.query),
            (AUTHORIZE_PATH, "POST") => self.authorize_post(req),
            (TOKEN_PATH, "POST") => self.token(req),
            (REVOKE_PATH, "POST") => self.revoke(req),
            (METADATA_PATH | OIDC_METADATA_PATH | JWKS_PATH, _) => Ok(method_not_allowed("GET, OPTIONS")),
            (REGISTER_PATH | TOKEN_PATH | REVOKE_PATH, _) => Ok(method_not_allowed("POST, OPTIONS")),
            (AUTHORIZE_PATH, _) => Ok(method_not_allowed("GET, POST")),
            _ => Ok(oauth_error(
                404,
                "not_found",
                &format!(
                    "no such endpoint of the development authorization server; see {}{METADATA_PATH}",
                    self.issuer
                ),
            )),
        };
        let answer = result.unwrap_or_else(|e| e.answer());
        if api {
            answer.with_header("access-control-allow-origin", "*")
        } else {
            answer
        }
    }

    /// RFC 7591 dynamic client registration.
    fn register(&self, req: &AsRequest<'_>) -> Result<Answer, util::Internal> {
        let Ok(metadata) = serde_json::from_slice::<Value>(req.body) else {
            return Ok(oauth_error(
                400,
                "invalid_client_metadata",
                "the registration request must be a JSON object (Content-Type: application/json)",
            ));
        };
        Ok(match self.clients.register(&metadata, &self.scopes)? {
            Ok(body) => {
                tracing::info!(
                    client_name = body["client_name"].as_str().unwrap_or(""),
                    auth_method = body["token_endpoint_auth_method"].as_str().unwrap_or(""),
                    "dev authorization server: registered a client"
                );
                json_answer(201, &body)
            }
            Err(e) => oauth_error(400, e.error, &e.description),
        })
    }

    /// Serves a request on the gateway's listener: Host check, loopback peers only, body
    /// read (bounded), then [`handle`](Self::handle).
    pub async fn serve(
        &self,
        host_policy: &HostPolicy,
        session: &mut Session,
    ) -> pingora::Result<bool> {
        let header = |name: &str| crate::http::header(session, name).map(str::to_string);
        let host = request_host(session);
        if !host_policy.allows(host.as_deref()) {
            let a = oauth_error(
                403,
                "forbidden_host",
                "this Host is not allowed on a loopback listener (DNS-rebinding protection)",
            );
            write_answer(session, a, None).await?;
            return Ok(true);
        }
        let loopback_peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| a.ip().is_loopback());
        if !loopback_peer {
            warn!("dev authorization server: refused a request from a non-loopback peer");
            let a = oauth_error(
                403,
                "forbidden",
                "the development authorization server answers loopback clients only",
            );
            write_answer(session, a, None).await?;
            return Ok(true);
        }
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        let authorization = header("authorization");
        let content_type = header("content-type");
        let body = if method == "POST" {
            match read_body(session, MAX_BODY_BYTES as u64).await? {
                BodyRead::Complete(b) => b,
                BodyRead::TooLarge => {
                    session.set_keepalive(None);
                    let a = oauth_error(
                        413,
                        "invalid_request",
                        &format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                    );
                    write_answer(session, a, None).await?;
                    return Ok(true);
                }
            }
        } else {
            bytes::Bytes::new()
        };
        let answer = self.handle(&AsRequest {
            method: &method,
            path: &path,
            query: &query,
            authorization: authorization.as_deref(),
            content_type: content_type.as_deref(),
            body: &body,
        });
        write_answer(session, answer, None).await?;
        Ok(true)
    }
}

fn method_not_allowed(allow: &'static str) -> Answer {
    oauth_error(
        405,
        "invalid_request",
        &format!("method not allowed here; use {allow}"),
    )
    .with_header("allow", allow)
}

#[cfg(test)]
mod tests;
