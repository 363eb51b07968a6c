//! The gateway as an OAuth 2.1 client of a provider's authorization server: RFC 9728
//! protected-resource discovery, RFC 8414 / OpenID metadata, RFC 7591 dynamic registration,
//! the token endpoint (code and refresh grants, RFC 8707 `resource` on both) and RFC 7009
//! revocation. Every call has a timeout and a bounded body; no message carries a token.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// Largest body read from a provider.
const MAX_BODY: usize = 256 * 1024;

/// The authorization-server metadata the linking flow uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AsMeta {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `revocation_endpoint` (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// `registration_endpoint` (RFC 7591).
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// `code_challenge_methods_supported`.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// `scopes_supported`.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// RFC 9207 `authorization_response_iss_parameter_supported`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// `client_id_metadata_document_supported` (Client ID Metadata Documents).
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

/// RFC 9728 protected-resource metadata (the fields used).
#[derive(Debug, Clone, Deserialize)]
struct ResourceMeta {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Option<Vec<String>>,
}

/// A successful token response.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// `access_token`.
    pub access_token: String,
    /// `refresh_token`.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// `expires_in` (seconds).
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// `scope`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Why a call to a provider failed. Never carries a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an HTTP error (and an RFC 6749 `error` code if it gave one).
    #[error("{url} answered HTTP {status}{}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Refused {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// RFC 6749 `error`.
        error: Option<String>,
    },
    /// Network, TLS, timeout.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// An answer that is not what the protocol says.
    #[error("{0}")]
    Protocol(String),
}

impl ProviderError {
    /// The HTTP status and `error` code, for [`cortex_filters::vault::classify_refresh`].
    pub fn status_and_code(&self) -> (Option<u16>, Option<&str>) {
        match self {
            ProviderError::Refused { status, error, .. } => (Some(*status), error.as_deref()),
            _ => (None, None),
        }
    }
}

/// How the client authenticates at the token and revocation endpoints.
#[derive(Clone)]
pub struct ClientCreds {
    /// Client id.
    pub id: String,
    /// Secret (`client_secret_basic`); `None`: a public client (the id in the form).
    pub secret: Option<String>,
}

impl std::fmt::Debug for ClientCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCreds")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .finish()
    }
}

/// HTTP to providers.
#[derive(Clone)]
pub struct ProviderHttp {
    http: reqwest::Client,
}

impl ProviderHttp {
    /// A client with `timeout` per call; redirects are not followed (metadata and token
    /// endpoints answer directly; a redirect is a misconfiguration to report, not follow).
    pub fn new(timeout: Duration) -> Result<ProviderHttp, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cortex-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the vault's HTTP client: {e}"))?;
        Ok(ProviderHttp { http })
    }

    async fn send(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), ProviderError> {
        let transport = |e: reqwest::Error| ProviderError::Transport {
            url: url.to_string(),
            reason: if e.is_timeout() {
                "timed out".into()
            } else {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(x) = src {
                    s.push_str(": ");
                    s.push_str(&x.to_string());
                    src = x.source();
                }
                s
            },
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ProviderError::Protocol(format!(
                    "{url}: answer larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    async fn get_json(&self, url: &str) -> Result<Value, ProviderError> {
        let (status, _, body) = self
            .send(url, self.http.get(url).header("accept", "application/json"))
            .await?;
        ok_json(url, status, &body)
    }

    /// RFC 9728: the issuer protecting `resource`, and the scopes it supports. Tries the
    /// `resource_metadata` of the resource's `WWW-Authenticate` challenge, then the
    /// path-inserted and root well-known URLs; the document's `resource` must be `resource`.
    pub async fn discover_resource(
        &self,
        resource: &str,
    ) -> Result<(String, Option<Vec<String>>), ProviderError> {
        let mut tried = Vec::new();
        let mut candidates = Vec::new();
        // An unauthenticated probe: an MCP server answers 401 with the hint.
        let probe = self
            .http
            .post(resource)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":0,"method":"ping"}).to_string());
        if let Ok((401, headers, _)) = self.send(resource, probe).await {
            for v in headers.get_all("www-authenticate") {
                if let Some(url) = v.to_str().ok().and_then(resource_metadata_param) {
                    candidates.push(url);
                }
            }
        }
        candidates.extend(prm_candidates(resource)?);
        for url in candidates {
            match self.get_json(&url).await {
                Ok(v) => match serde_json::from_value::<ResourceMeta>(v) {
                    Ok(m) if same_resource(&m.resource, resource) => {
                        let issuer =
                            m.authorization_servers.into_iter().next().ok_or_else(|| {
                                ProviderError::Protocol(format!(
                                    "{url} names no authorization server"
                                ))
                            })?;
                        return Ok((issuer, m.scopes_supported));
                    }
                    Ok(m) => tried.push(format!("{url}: for resource {:?}", m.resource)),
                    Err(e) => tried.push(format!("{url}: {e}")),
                },
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(ProviderError::Protocol(format!(
            "no protected-resource metadata for {resource} ({})",
            tried.join("; ")
        )))
    }

    /// RFC 8414 then OpenID metadata of `issuer` (the document's `issuer` must equal it);
    /// refuses a server that does not offer PKCE with S256.
    pub async fn discover_as(&self, issuer: &str) -> Result<AsMeta, ProviderError> {
        let urls = crate::auth::discovery::candidates(issuer)
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let mut tried = Vec::new();
        for url in urls {
            match self.get_json(&url).await {
                Ok(v) => match serde_json::from_value::<AsMeta>(v) {
                    Ok(m) if m.issuer == issuer => {
                        if !cortex_filters::vault::supports_s256(
                            m.code_challenge_methods_supported.as_deref(),
                        ) {
                            return Err(ProviderError::Protocol(format!(
                                "the authorization server {issuer} does not offer PKCE with S256 (code_challenge_methods_supported); the gateway refuses to link with it"
                            )));
                        }
                        return Ok(m);
                    }
                    Ok(m) => tried.push(format!("{url}: for issuer {:?}", m.issuer)),
                    Err(e) => tried.push(format!("{url}: {e}")),
                },
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(ProviderError::Protocol(format!(
            "no authorization-server metadata for {issuer} ({})",
            tried.join("; ")
        )))
    }

    /// RFC 7591: registers the gateway as a client with `redirect_uri`; (client id, secret).
    pub async fn register(
        &self,
        endpoint: &str,
        redirect_uri: &str,
        name: &str,
    ) -> Result<(String, Option<String>), ProviderError> {
        let body = json!({
            "client_name": name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let req = self
            .http
            .post(endpoint)
            .header("accept", "application/json")
            .json(&body);
        let (status, _, bytes) = self.send(endpoint, req).await?;
        let v = ok_json(endpoint, status, &bytes)?;
        let id = v
            .get("client_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ProviderError::Protocol(format!("{endpoint}: no client_id")))?;
        let secret = v
            .get("client_secret")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((id.to_string(), secret))
    }

    /// A token-endpoint request: `form` plus the client's authentication.
    pub async fn token(
        &self,
        endpoint: &str,
        client: &ClientCreds,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, ProviderError> {
        let (status, _, bytes) = self.post_form(endpoint, client, form).await?;
        let v = ok_json(endpoint, status, &bytes)?;
        let t: TokenResponse = serde_json::from_value(v).map_err(|e| {
            ProviderError::Protocol(format!("{endpoint}: not a token response ({e})"))
        })?;
        if t.access_token.is_empty() {
            return Err(ProviderError::Protocol(format!(
                "{endpoint}: empty access_token"
            )));
        }
        Ok(t)
    }

    /// RFC 7009: revokes `token` (best effort: the caller logs a failure).
    pub async fn revoke(
        &self,
        endpoint: &str,
        client: &ClientCreds,
        token: &str,
        hint: &str,
    ) -> Result<(), ProviderError> {
        let (status, _, bytes) = self
            .post_form(
                endpoint,
                client,
                &[("token", token), ("token_type_hint", hint)],
            )
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(refused(endpoint, status, &bytes))
        }
    }

    async fn post_form(
        &self,
        endpoint: &str,
        client: &ClientCreds,
        form: &[(&str, &str)],
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), ProviderError> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = self
            .http
            .post(endpoint)
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded");
        match &client.secret {
            Some(secret) => {
                req = req.basic_auth(form_encode(&client.id), Some(form_encode(secret)));
            }
            None => fields.push(("client_id", &client.id)),
        }
        let body = {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &fields {
                ser.append_pair(k, v);
            }
            ser.finish()
        };
        self.send(endpoint, req.body(body)).await
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn refused(url: &str, status: u16, body: &[u8]) -> ProviderError {
    let error = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("error")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(64).collect())
    });
    ProviderError::Refused {
        url: url.to_string(),
        status,
        error,
    }
}

fn ok_json(url: &str, status: u16, body: &[u8]) -> Result<Value, ProviderError> {
    if !(200..300).contains(&status) {
        return Err(refused(url, status, body));
    }
    serde_json::from_slice(body)
        .map_err(|e| ProviderError::Protocol(format!("{url}: the answer is not JSON ({e})")))
}

/// The `resource_metadata` parameter of a `WWW-Authenticate: Bearer …` challenge.
pub fn resource_metadata_param(header: &str) -> Option<String> {
    let at = header.find("resource_metadata=")?;
    let rest = &header[at + "resource_metadata=".len()..];
    let value = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    (!value.is_empty()).then(|| value.to_string())
}

/// RFC 9728 §3.1: the well-known URLs of `resource`'s metadata, path-inserted first, then the
/// root form.
pub fn prm_candidates(resource: &str) -> Result<Vec<String>, ProviderError> {
    let url = url::Url::parse(resource)
        .map_err(|e| ProviderError::Protocol(format!("resource {resource:?}: {e}")))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let root = format!("{origin}/.well-known/oauth-protected-resource");
    Ok(if path.is_empty() {
        vec![root]
    } else {
        vec![format!("{root}{path}"), root]
    })
}

fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prm_urls_follow_rfc_9728() {
        assert_eq!(
            prm_candidates("https://mcp.example/v1/mcp").unwrap(),
            [
                "https://mcp.example/.well-known/oauth-protected-resource/v1/mcp",
                "https://mcp.example/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            prm_candidates("https://mcp.example/").unwrap(),
            ["https://mcp.example/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn the_challenge_hint_is_read() {
        assert_eq!(
            resource_metadata_param(
                r#"Bearer error="invalid_token", resource_metadata="https://m/.well-known/oauth-protected-resource/mcp""#
            )
            .as_deref(),
            Some("https://m/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            resource_metadata_param("Bearer resource_metadata=https://m/x, scope=a").as_deref(),
            Some("https://m/x")
        );
        assert_eq!(resource_metadata_param("Bearer realm=x"), None);
    }
}
