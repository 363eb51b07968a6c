//! The credential each backend receives with a user call (`backends[].identity`).
//!
//! - `passthrough` (default): the caller's bearer token and the `X-Cortex-*` headers, exactly
//!   as the TypeScript Cortex sends them, so existing contract backends (which re-validate the
//!   gateway's token themselves) work unchanged.
//! - `mint`: a short-lived JWT signed by the gateway for the backend's audience
//!   ([`crate::auth::mint`]).
//! - `exchange`: an RFC 8693 token from the authorization server for the backend's audience
//!   ([`crate::auth::exchange`]).
//! - `vault`: the caller's own linked account at the backend's `vault_provider` (the backend
//!   asks the vault for it, docs/vault.md); no `Authorization` of the caller's is kept here.
//! - `none`: no per-user credential (the default of native backends, which have their static
//!   `bearer` / `headers`).
//!
//! The `X-Cortex-*` headers are sent in every mode (they are the contract); with `mint` and
//! `exchange` a backend can trust the signed token instead of the headers. The MCP "no token
//! passthrough" rule forbids forwarding the client's token to *third-party* servers; contract
//! backends are first-party apps that validate the gateway's audience by contract, which is
//! why passthrough stays their default (docs/authentication.md discusses it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cortex_filters::catalog::MergedCatalog;
use cortex_filters::jsonrpc::RpcError;
use cortex_filters::scope::GrantedScopes;
use serde_json::json;
use tracing::debug;

use crate::auth::exchange::{ExchangeRequest, Exchanger};
use crate::auth::http::AsClient;
use crate::auth::issuer::Issuer;
use crate::auth::mint::{MintRequest, MintSettings, Minter};
use crate::auth::{AuthSetupError, Principal, PrincipalKind};
use crate::config::{Config, IdentityMode};

/// How one backend is to be called.
#[derive(Debug, Clone)]
struct BackendIdentity {
    mode: IdentityMode,
    audience: String,
    resource: Option<String>,
}

/// Why no credential could be obtained for a backend.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot obtain a credential for backend {backend}: {reason}")]
pub struct IdentityError {
    /// Backend id.
    pub backend: String,
    /// Why.
    pub reason: String,
}

impl From<IdentityError> for RpcError {
    fn from(e: IdentityError) -> Self {
        RpcError::internal(e.to_string()).with_data(json!({"backend": e.backend}))
    }
}

/// Identity headers sent with every user call (Cortex contract §1): the caller's bearer
/// token when it has one, and `X-Cortex-User-*` / `X-Cortex-Scopes`.
pub fn identity_headers(p: &Principal) -> Vec<(&'static str, String)> {
    let mut h = Vec::with_capacity(6);
    if let Some(c) = &p.credential {
        h.push(("authorization", format!("Bearer {c}")));
    }
    h.push(("x-cortex-user-id", header_safe(&p.sub)));
    h.push((
        "x-cortex-user-email",
        header_safe(p.email.as_deref().unwrap_or("")),
    ));
    h.push((
        "x-cortex-user-role",
        header_safe(p.role.as_deref().unwrap_or("")),
    ));
    h.push((
        "x-cortex-user-pool",
        header_safe(p.pool.as_deref().unwrap_or("")),
    ));
    h.push(("x-cortex-scopes", header_safe(&p.scopes_header())));
    h
}

/// Header values must be visible ASCII or spaces: anything else becomes `?`.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Per-backend credentials: the minting keys and the exchange client, when any backend needs
/// them.
pub struct IdentityService {
    backends: HashMap<String, BackendIdentity>,
    minter: Option<Arc<Minter>>,
    exchanger: Option<Exchanger>,
}

impl IdentityService {
    /// Builds the service; generates or loads the minting keys when a backend uses `mint`.
    pub fn new(
        config: &Config,
        public_origin: &str,
        issuer: Option<Arc<Issuer>>,
    ) -> Result<IdentityService, AuthSetupError> {
        let backends: HashMap<String, BackendIdentity> = config
            .backends
            .iter()
            .map(|b| {
                let audience = b
                    .audience
                    .clone()
                    .unwrap_or_else(|| b.url.trim_end_matches('/').to_string());
                (
                    b.id.to_ascii_lowercase(),
                    BackendIdentity {
                        mode: b.identity_mode(),
                        audience,
                        resource: b.resource.clone(),
                    },
                )
            })
            .collect();
        let wants = |m: IdentityMode| backends.values().any(|b| b.mode == m);
        let minter = if wants(IdentityMode::Mint) {
            let m = &config.auth.mint;
            Some(Arc::new(Minter::new(MintSettings {
                issuer: m
                    .issuer
                    .clone()
                    .unwrap_or_else(|| public_origin.to_string()),
                ttl: m.ttl,
                algorithm: &m.algorithm,
                key_file: m.key_file.as_deref(),
                data_dir: config.data_dir(),
                rotate_after: m.rotate_after,
            })?))
        } else {
            None
        };
        let exchanger = if wants(IdentityMode::Exchange) {
            let x = &config.auth.oauth.token_exchange;
            if x.client_id.is_none() || x.client_secret.is_none() {
                return Err(AuthSetupError::Invalid(
                    "a backend uses identity: exchange, so auth.oauth.token_exchange.client_id and client_secret are required".into(),
                ));
            }
            let client = AsClient::with_ca(
                config.auth.oauth.http_timeout,
                config.outbound.ca_file.as_deref(),
            )
            .map_err(AuthSetupError::Invalid)?;
            Some(Exchanger::new(client, x.clone(), issuer))
        } else {
            None
        };
        Ok(IdentityService {
            backends,
            minter,
            exchanger,
        })
    }

    /// The minting keys, when a backend uses `mint` (for `/.well-known/jwks.json`).
    pub fn minter(&self) -> Option<&Arc<Minter>> {
        self.minter.as_ref()
    }

    /// The headers for a user call of `backend_id` by `p`: `X-Cortex-*` plus the
    /// `Authorization` the backend's identity mode calls for.
    pub async fn headers_for(
        &self,
        catalog: &MergedCatalog,
        backend_id: &str,
        p: &Principal,
    ) -> Result<Vec<(&'static str, String)>, IdentityError> {
        let mut headers = identity_headers(p);
        let Some(bi) = self.backends.get(backend_id) else {
            return Ok(headers);
        };
        let err = |reason: String| IdentityError {
            backend: backend_id.to_string(),
            reason,
        };
        let token = match bi.mode {
            IdentityMode::Passthrough => return Ok(headers),
            // Never the caller's own token: `none` sends no Authorization of the caller's;
            // `vault` gets the user's linked token from the vault (the backend adds it).
            IdentityMode::None | IdentityMode::Vault => {
                headers.retain(|(name, _)| *name != "authorization");
                return Ok(headers);
            }
            IdentityMode::Mint => {
                let minter = self
                    .minter
                    .as_ref()
                    .ok_or_else(|| err("no minting keys".into()))?;
                let scopes = backend_scopes(catalog, backend_id, &p.grants);
                let req = MintRequest {
                    audience: &bi.audience,
                    scopes: &scopes,
                    backend_id,
                };
                minter.mint(p, req).map_err(|e| err(e.to_string()))?
            }
            IdentityMode::Exchange => match (p.kind, &p.credential) {
                (PrincipalKind::Token, Some(subject)) => {
                    let exchanger = self
                        .exchanger
                        .as_ref()
                        .ok_or_else(|| err("no exchange client".into()))?;
                    let scopes = backend_scopes(catalog, backend_id, &p.grants);
                    let req = ExchangeRequest {
                        subject_token: subject,
                        audience: &bi.audience,
                        resource: bi.resource.as_deref(),
                        scopes: &scopes,
                        subject_exp: p.expires_at,
                    };
                    exchanger
                        .exchange(req)
                        .await
                        .map_err(|e| err(e.to_string()))?
                }
                _ => {
                    // The dev modes have no authorization-server token to exchange: they keep
                    // their configured credential, as with passthrough.
                    debug!(backend = %backend_id, "identity exchange skipped for a dev-mode caller");
                    return Ok(headers);
                }
            },
        };
        set_authorization(&mut headers, token);
        Ok(headers)
    }
}

fn set_authorization(headers: &mut Vec<(&'static str, String)>, token: String) {
    headers.retain(|(name, _)| *name != "authorization");
    headers.insert(0, ("authorization", format!("Bearer {token}")));
}

/// The scopes declared by `backend_id`'s entries that `grants` allows: the caller's scopes
/// "that concern this backend", in the backend's own vocabulary (wildcards and implications
/// resolved), sorted.
pub fn backend_scopes(
    catalog: &MergedCatalog,
    backend_id: &str,
    grants: &GrantedScopes,
) -> Vec<String> {
    catalog
        .iter()
        .filter(|e| e.backend_id == backend_id)
        .filter_map(|e| e.scope.as_deref())
        .filter(|s| grants.allows(Some(s)))
        .map(str::to_string)
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}
