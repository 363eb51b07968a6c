//! The HTTP client for the authorization server: metadata discovery, JWKS, introspection and
//! token exchange.
//!
//! reqwest (hyper + rustls on ring, the system's root certificates) rather than Pingora's
//! connector: these are a handful of calls to arbitrary HTTPS URLs that need DNS resolution
//! off the request path, redirects, proxies (`HTTPS_PROXY`, `NO_PROXY`) and form posts —
//! everything Pingora's upstream connector leaves to the caller. Every call has a timeout
//! and a bounded body.

use std::time::Duration;

use serde::de::DeserializeOwned;

/// Largest body read from the authorization server.
const MAX_BODY: usize = 1024 * 1024;

/// Why a call failed. Messages name the URL (never a secret or a token).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// Could not connect, TLS failure, timeout…
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// A non-2xx status.
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// `: <error>` from an OAuth error body, or empty.
        detail: String,
    },
    /// The body is not the expected JSON.
    #[error("{url}: the answer is not the expected JSON ({reason})")]
    Body {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl HttpError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Credentials sent to a token or introspection endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth<'a> {
    /// HTTP Basic (RFC 6749 §2.3.1: both parts form-urlencoded first).
    Basic {
        /// Client id.
        id: &'a str,
        /// Secret.
        secret: &'a str,
    },
    /// `client_id`/`client_secret` form fields.
    Post {
        /// Client id.
        id: &'a str,
        /// Secret.
        secret: &'a str,
    },
}

/// A client with the gateway's settings for authorization-server calls.
#[derive(Debug, Clone)]
pub struct AsClient {
    http: reqwest::Client,
}

impl AsClient {
    /// Builds a client with `timeout` per call.
    pub fn new(timeout: Duration) -> Result<AsClient, String> {
        AsClient::with_ca(timeout, None)
    }

    /// Builds a client with `timeout` per call that also trusts the CA certificates of the
    /// PEM bundle `ca_file` (`outbound.ca_file`), besides the system's roots.
    pub fn with_ca(timeout: Duration, ca_file: Option<&str>) -> Result<AsClient, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file.filter(|p| !p.trim().is_empty()) {
            let pem = std::fs::read(path)
                .map_err(|e| format!("outbound.ca_file {path}: cannot read it: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("outbound.ca_file {path}: not a PEM bundle: {e}"))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("cortex-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                format!("cannot build the HTTP client for the authorization server: {e}")
            })?;
        Ok(AsClient { http })
    }

    /// `GET url` → raw body of a 2xx answer.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let req = self.http.get(url).header("accept", "application/json");
        self.send(url, req).await
    }

    /// `GET url` → JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, HttpError> {
        let body = self.get_bytes(url).await?;
        parse(url, &body)
    }

    /// `POST url` with a form body and client authentication → JSON.
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &str,
        auth: Option<ClientAuth<'_>>,
        form: &[(&str, &str)],
    ) -> Result<T, HttpError> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.http.post(url).header("accept", "application/json");
        match auth {
            Some(ClientAuth::Basic { id, secret }) => {
                req = req.basic_auth(form_encode(id), Some(form_encode(secret)));
            }
            Some(ClientAuth::Post { id, secret }) => {
                fields.push(("client_id", id));
                fields.push(("client_secret", secret));
            }
            None => {}
        }
        let body = serde_urlencoded_pairs(&fields);
        let req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let bytes = self.send(url, req).await?;
        parse(url, &bytes)
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Vec<u8>, HttpError> {
        let mut resp = req.send().await.map_err(|e| HttpError::Transport {
            url: url.to_string(),
            reason: describe(&e),
        })?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(HttpError::Body {
                            url: url.to_string(),
                            reason: format!("larger than {MAX_BODY} bytes"),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(HttpError::Transport {
                        url: url.to_string(),
                        reason: describe(&e),
                    })
                }
            }
        }
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
                detail: oauth_error(&body),
            });
        }
        Ok(body)
    }
}

fn parse<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::Body {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// `: error (error_description)` of an RFC 6749 error body, bounded.
fn oauth_error(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let err = v.get("error").and_then(|e| e.as_str()).unwrap_or("");
    if err.is_empty() {
        return String::new();
    }
    let desc = v
        .get("error_description")
        .and_then(|e| e.as_str())
        .unwrap_or("");
    let text = if desc.is_empty() {
        format!(": {err}")
    } else {
        format!(": {err} ({desc})")
    };
    text.chars().take(300).collect()
}

/// The error chain of a reqwest error, one line (reqwest's Display hides the cause).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn serde_urlencoded_pairs(fields: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        ser.append_pair(k, v);
    }
    ser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_are_summarised() {
        assert_eq!(
            oauth_error(br#"{"error":"invalid_grant","error_description":"bad"}"#),
            ": invalid_grant (bad)"
        );
        assert_eq!(oauth_error(br#"{"error":"x"}"#), ": x");
        assert_eq!(oauth_error(b"<html>"), "");
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
        assert_eq!(
            serde_urlencoded_pairs(&[("a", "1 2"), ("b", "&")]),
            "a=1+2&b=%26"
        );
    }
}
