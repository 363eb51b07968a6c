//! RFC 8693 token exchange, for backends with `identity: exchange`: the caller's token is
//! traded at the authorization server's token endpoint, with the gateway's own client
//! credentials, for a token whose audience is the backend. The authorization server stays
//! the one place that decides what a backend may receive. Results are cached per (caller
//! token, backend) until shortly before they expire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::cache::{digest, DeadlineCache};
use super::http::{AsClient, ClientAuth};
use super::issuer::Issuer;
use crate::config::{ClientAuthMethod, TokenExchangeConfig};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Lifetime assumed when the answer has no `expires_in`.
const DEFAULT_LIFETIME: u64 = 60;

/// Why no exchanged token could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// No client credentials configured.
    #[error("token exchange needs the gateway's client credentials: set auth.oauth.token_exchange.client_id and client_secret")]
    NotConfigured,
    /// No token endpoint known.
    #[error("the authorization server's token endpoint is not known (metadata not loaded yet, and auth.oauth.token_exchange.token_endpoint is not set)")]
    NoEndpoint,
    /// The authorization server refused or failed.
    #[error("token exchange failed: {0}")]
    Failed(String),
}

#[derive(Debug, Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// What to ask for.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The caller's token.
    pub subject_token: &'a str,
    /// `audience`.
    pub audience: &'a str,
    /// `resource`, if configured.
    pub resource: Option<&'a str>,
    /// `scope`: the caller's scopes concerning the backend (omitted when empty).
    pub scopes: &'a [String],
    /// The caller token's `exp`: an exchanged token is never used past it.
    pub subject_exp: Option<u64>,
}

/// The token-exchange client.
pub struct Exchanger {
    client: AsClient,
    cfg: TokenExchangeConfig,
    issuer: Option<Arc<Issuer>>,
    cache: DeadlineCache<String>,
}

impl Exchanger {
    /// A client; `issuer` supplies the token endpoint from its metadata.
    pub fn new(
        client: AsClient,
        cfg: TokenExchangeConfig,
        issuer: Option<Arc<Issuer>>,
    ) -> Exchanger {
        Exchanger {
            client,
            cfg,
            issuer,
            cache: DeadlineCache::new(10_000),
        }
    }

    /// Exchanges (or reuses a cached exchange of) the caller's token.
    pub async fn exchange(&self, req: ExchangeRequest<'_>) -> Result<String, ExchangeError> {
        let (Some(id), Some(secret)) = (&self.cfg.client_id, &self.cfg.client_secret) else {
            return Err(ExchangeError::NotConfigured);
        };
        let scope = req.scopes.join(" ");
        let key = digest(&[
            b"exchange",
            req.audience.as_bytes(),
            req.resource.unwrap_or("").as_bytes(),
            scope.as_bytes(),
            req.subject_token.as_bytes(),
        ]);
        if let Some(token) = self.cache.get(&key) {
            return Ok(token);
        }
        let endpoint = self
            .cfg
            .token_endpoint
            .clone()
            .or_else(|| {
                self.issuer
                    .as_ref()
                    .and_then(|i| i.metadata())
                    .and_then(|m| m.token_endpoint)
            })
            .ok_or(ExchangeError::NoEndpoint)?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", GRANT),
            ("subject_token", req.subject_token),
            ("subject_token_type", ACCESS_TOKEN),
            ("requested_token_type", ACCESS_TOKEN),
            ("audience", req.audience),
        ];
        if let Some(resource) = req.resource {
            form.push(("resource", resource));
        }
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let auth = match self.cfg.auth_method {
            ClientAuthMethod::ClientSecretBasic => ClientAuth::Basic { id, secret },
            ClientAuthMethod::ClientSecretPost => ClientAuth::Post { id, secret },
        };
        let answer: Answer = self
            .client
            .post_form(&endpoint, Some(auth), &form)
            .await
            .map_err(|e| ExchangeError::Failed(e.to_string()))?;
        let lifetime = answer.expires_in.unwrap_or(DEFAULT_LIFETIME);
        // Renew a little early (90 %), and never past the caller's own token.
        let mut secs = lifetime.saturating_mul(9) / 10;
        if let Some(exp) = req.subject_exp {
            secs = secs.min(exp.saturating_sub(super::unix_now()));
        }
        if secs > 0 {
            self.cache.insert(
                key,
                answer.access_token.clone(),
                Instant::now() + Duration::from_secs(secs),
            );
        }
        Ok(answer.access_token)
    }
}
