//! Authorization-server metadata discovery: RFC 8414 and OpenID Connect Discovery, tried in the
//! order the MCP 2025-11-25 authorization spec gives clients, so the gateway finds the same
//! document its clients find.
//!
//! For an issuer with a path (`https://as.example/tenant`):
//! 1. `https://as.example/.well-known/oauth-authorization-server/tenant` (RFC 8414 path insertion)
//! 2. `https://as.example/.well-known/openid-configuration/tenant` (OIDC path insertion)
//! 3. `https://as.example/tenant/.well-known/openid-configuration` (OIDC path appending)
//!
//! For an issuer without a path: the two root forms, RFC 8414 first. The document's `issuer`
//! must equal the configured one byte for byte (RFC 8414 §3.3); a document for another issuer
//! is refused, whatever URL served it.

use serde::Deserialize;

use super::http::{AsClient, HttpError};

/// The metadata fields the gateway uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AsMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `jwks_uri`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// `token_endpoint` (token exchange).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// `introspection_endpoint`.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// `registration_endpoint`: reported in docs and logs only.
    #[serde(default)]
    pub registration_endpoint: Option<String>,
}

/// Why discovery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// The issuer is not an absolute http(s) URL.
    #[error("the issuer {0:?} is not an absolute http(s) URL")]
    BadIssuer(String),
    /// Every candidate failed; the list says how.
    #[error("no metadata for issuer {issuer} ({tried})")]
    NotFound {
        /// The issuer.
        issuer: String,
        /// `url → reason; …`.
        tried: String,
    },
}

/// The metadata URLs to try for `issuer`, in order.
pub fn candidates(issuer: &str) -> Result<Vec<String>, DiscoveryError> {
    let url = url::Url::parse(issuer).map_err(|_| DiscoveryError::BadIssuer(issuer.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(DiscoveryError::BadIssuer(issuer.to_string()));
    }
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    if path.is_empty() {
        return Ok(vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]);
    }
    Ok(vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

/// Fetches the first candidate that answers with metadata for exactly `issuer`.
pub async fn discover(client: &AsClient, issuer: &str) -> Result<AsMetadata, DiscoveryError> {
    let mut tried = Vec::new();
    for url in candidates(issuer)? {
        match client.get_json::<AsMetadata>(&url).await {
            Ok(meta) if meta.issuer == issuer => return Ok(meta),
            Ok(meta) => tried.push(format!(
                "{url} describes issuer {:?}, not {issuer:?} (they must be equal byte for byte)",
                meta.issuer
            )),
            Err(e @ HttpError::Transport { .. }) => {
                // The host is unreachable: the other candidates are on the same host.
                tried.push(e.to_string());
                break;
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(DiscoveryError::NotFound {
        issuer: issuer.to_string(),
        tried: tried.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_issuer_candidates() {
        assert_eq!(
            candidates("https://as.example").unwrap(),
            vec![
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
        assert_eq!(candidates("https://as.example/").unwrap().len(), 2);
    }

    #[test]
    fn path_issuer_candidates_in_spec_order() {
        assert_eq!(
            candidates("https://login.example.com/tenant1/v2.0").unwrap(),
            vec![
                "https://login.example.com/.well-known/oauth-authorization-server/tenant1/v2.0",
                "https://login.example.com/.well-known/openid-configuration/tenant1/v2.0",
                "https://login.example.com/tenant1/v2.0/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            candidates("http://127.0.0.1:8080/realms/demo/").unwrap()[2],
            "http://127.0.0.1:8080/realms/demo/.well-known/openid-configuration"
        );
    }

    #[test]
    fn bad_issuers() {
        assert!(candidates("not a url").is_err());
        assert!(candidates("ftp://as.example").is_err());
    }
}
