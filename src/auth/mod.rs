//! Caller authentication: who is calling, with which scopes, and what credential to forward.
//!
//! Modes: `none` (a fixed principal; loopback only), the Cortex dev bypass (`X-Dev-Mode`
//! from a loopback peer), and `oauth` (bearer JWTs validated as an OAuth 2.1 resource server).
//! This module is the seam every mode plugs into; the gateway only sees [`AuthOutcome`].
//!
//! Submodules:
//! - [`jwt`], [`jwk`], [`claims`]: tokens and keys on `jsonwebtoken` (its `ring` backend is
//!   [`crypto`]), the algorithm allowlist and the claim checks;
//! - [`discovery`], [`issuer`], [`http`]: the authorization server's metadata and keys;
//! - [`validator`], [`cache`], [`introspect`]: the per-request validation pipeline;
//! - [`mint`], [`exchange`]: minted and exchanged tokens for backends (the credential each
//!   backend receives is decided by `credentials`; RFC 9728 metadata and the challenges are
//!   the edge's `well_known`);
//! - [`service`]: the background refresh of keys and the rotation of minting keys.
//!
//! See docs/authentication.md.

pub mod cache;
pub mod claims;
pub mod crypto;
pub mod discovery;
pub mod exchange;
pub mod http;
pub mod introspect;
pub mod issuer;
pub mod jwk;
pub mod jwt;
pub mod mint;
pub mod service;
pub mod stats;
pub mod validator;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use cortex_filters::scope::{GrantedScopes, ScopeRules};

use crate::config::{AuthMode, Config, DevBypassConfig, PrincipalConfig};

use self::issuer::Issuer;
use self::jwt::Alg;
use self::validator::{Validator, ValidatorSettings, Verdict};

/// Seconds since the Unix epoch (the gateway's one clock).
pub use crate::clock::unix_now;

/// Why the authentication setup cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A setting is invalid.
    #[error("auth: {0}")]
    Invalid(String),
    /// The minting keys cannot be loaded or created.
    #[error(transparent)]
    Mint(#[from] mint::MintError),
}

/// How the principal was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// `auth.mode: none`.
    Anonymous,
    /// The `X-Dev-Mode` bypass.
    DevBypass,
    /// A validated bearer token.
    Token,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Subject (`sub`).
    pub sub: String,
    /// Email, if known.
    pub email: Option<String>,
    /// Role (`X-Cortex-User-Role`).
    pub role: Option<String>,
    /// Pool (`X-Cortex-User-Pool`).
    pub pool: Option<String>,
    /// OAuth client id, if known.
    pub client_id: Option<String>,
    /// Effective grants.
    pub grants: Arc<GrantedScopes>,
    /// `grants.cache_key()`, computed once: keys the per-scope-set list cache.
    pub scope_key: Arc<str>,
    /// The bearer to forward to passthrough backends.
    pub credential: Option<String>,
    /// How it was established.
    pub kind: PrincipalKind,
    /// `exp` of the validated token (seconds since the epoch), for tokens.
    pub expires_at: Option<u64>,
}

impl Principal {
    /// Scopes as granted, space-joined (the `X-Cortex-Scopes` header).
    pub fn scopes_header(&self) -> String {
        self.grants.granted().join(" ")
    }
}

/// The result of authenticating one request.
#[derive(Debug)]
pub enum AuthOutcome {
    /// Authenticated.
    Ok(Principal),
    /// 401: no usable credentials. `token_presented` decides `error="invalid_token"`.
    Unauthorized {
        /// A reason a person can act on.
        reason: String,
        /// Whether a bearer token was presented.
        token_presented: bool,
    },
    /// 403: authenticated, but refused (scope floor, pool).
    Forbidden {
        /// OAuth error code: `insufficient_scope` or `invalid_audience`.
        error: &'static str,
        /// A reason a person can act on.
        reason: String,
        /// For `insufficient_scope`: the scopes needed (the step-up challenge's `scope`).
        scope: Option<String>,
    },
    /// 503: authentication cannot be decided right now (e.g. issuer keys not yet known).
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// The request facts authentication looks at.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// `Authorization` header value.
    pub authorization: Option<&'a str>,
    /// `X-Dev-Mode` header value.
    pub dev_mode: Option<&'a str>,
    /// The TCP peer address.
    pub peer: Option<IpAddr>,
}

/// Authenticates requests according to configuration.
pub struct Authenticator {
    mode: AuthMode,
    principal: PrincipalConfig,
    dev_bypass: Option<DevBypassConfig>,
    /// What the scope implications decide (replaced by [`Authenticator::set_scope_rules`]
    /// when a configuration reload changes them).
    granted: ArcSwap<Granted>,
    oauth: Option<Validator>,
}

/// The fixed principals with their scopes expanded by the implications in force.
struct Granted {
    anonymous: Principal,
    dev_bypass: Option<(Arc<GrantedScopes>, Arc<str>)>,
}

impl Granted {
    fn new(principal: &PrincipalConfig, dev: Option<&DevBypassConfig>, rules: &ScopeRules) -> Self {
        Granted {
            anonymous: anonymous_principal(principal, rules),
            dev_bypass: dev.map(|d| {
                let grants = GrantedScopes::new(&d.scopes, rules);
                let key = Arc::from(grants.cache_key());
                (Arc::new(grants), key)
            }),
        }
    }
}

impl Authenticator {
    /// Builds the authenticator. `canonical_uri` is the default audience. Nothing is fetched
    /// here: the issuer's keys are loaded by the background service ([`service`]).
    pub fn new(
        config: &Config,
        canonical_uri: &str,
        rules: &ScopeRules,
    ) -> Result<Self, AuthSetupError> {
        let cfg = &config.auth;
        let oauth = match (cfg.mode, &cfg.oauth.issuer) {
            (AuthMode::Oauth, Some(issuer)) => {
                Some(build_validator(config, issuer, canonical_uri, rules)?)
            }
            _ => None,
        };
        Ok(Authenticator {
            mode: cfg.mode,
            principal: cfg.principal.clone(),
            dev_bypass: cfg.dev_bypass.clone(),
            granted: ArcSwap::from_pointee(Granted::new(
                &cfg.principal,
                cfg.dev_bypass.as_ref(),
                rules,
            )),
            oauth,
        })
    }

    /// Puts new scope implications in force (a configuration reload): the fixed principals
    /// are expanded again and tokens validated under the old implications are validated
    /// again on their next use.
    pub fn set_scope_rules(&self, rules: &ScopeRules) {
        self.granted.store(Arc::new(Granted::new(
            &self.principal,
            self.dev_bypass.as_ref(),
            rules,
        )));
        if let Some(v) = &self.oauth {
            v.set_scope_rules(rules);
        }
    }

    /// The trusted issuer, in `oauth` mode with an issuer configured.
    pub fn issuer(&self) -> Option<&Arc<Issuer>> {
        self.oauth.as_ref().map(Validator::issuer)
    }

    /// The counters of the token pipeline (JWKS fetches, token cache, introspection), in
    /// `oauth` mode with an issuer configured.
    pub fn stats(&self) -> Option<Arc<stats::AuthStats>> {
        self.issuer().map(|i| i.stats().clone())
    }

    /// The token validator, in `oauth` mode with an issuer configured.
    pub fn validator(&self) -> Option<&Validator> {
        self.oauth.as_ref()
    }

    /// Whether the dev bypass is configured.
    pub fn dev_bypass_configured(&self) -> bool {
        self.dev_bypass.is_some()
    }

    /// Whether localhost origins are acceptable (the dev modes).
    pub fn dev_modes_active(&self) -> bool {
        self.mode == AuthMode::None || self.dev_bypass.is_some()
    }

    /// The configured mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Authenticates one request. Awaits only on a cache miss that needs the network (an
    /// unknown `kid`, introspection).
    pub async fn authenticate(&self, req: AuthRequest<'_>) -> AuthOutcome {
        let granted = self.granted.load();
        if let (Some(cfg), Some((grants, scope_key)), Some(presented)) =
            (&self.dev_bypass, &granted.dev_bypass, req.dev_mode)
        {
            let loopback = req.peer.is_some_and(|ip| ip.is_loopback());
            if loopback && constant_time_eq(presented.as_bytes(), cfg.token.as_bytes()) {
                return AuthOutcome::Ok(Principal {
                    scope_key: scope_key.clone(),
                    sub: "dev:local".into(),
                    email: Some("dev@localhost".into()),
                    role: Some(cfg.role.clone()),
                    pool: None,
                    client_id: None,
                    grants: grants.clone(),
                    credential: Some(cfg.token.clone()),
                    kind: PrincipalKind::DevBypass,
                    expires_at: None,
                });
            }
        }
        match self.mode {
            AuthMode::None => AuthOutcome::Ok(granted.anonymous.clone()),
            AuthMode::Oauth => match bearer(req.authorization) {
                None => AuthOutcome::Unauthorized {
                    reason: "this endpoint requires an OAuth 2.1 bearer token (Authorization: Bearer <token>)".into(),
                    token_presented: false,
                },
                Some(token) => match &self.oauth {
                    None => AuthOutcome::Unauthorized {
                        reason: "no authorization server is configured, so no token can be accepted".into(),
                        token_presented: true,
                    },
                    Some(v) => match v.validate(token).await {
                        Verdict::Ok(p) => AuthOutcome::Ok(p),
                        Verdict::Invalid(reason) => AuthOutcome::Unauthorized {
                            reason,
                            token_presented: true,
                        },
                        Verdict::Forbidden { error, reason, scope } => AuthOutcome::Forbidden { error, reason, scope },
                        Verdict::Unavailable(reason) => AuthOutcome::Unavailable { reason },
                    },
                },
            },
        }
    }
}

/// The validator for `issuer`, from configuration.
fn build_validator(
    config: &Config,
    issuer: &str,
    canonical_uri: &str,
    rules: &ScopeRules,
) -> Result<Validator, AuthSetupError> {
    let o = &config.auth.oauth;
    let mut algorithms = Vec::with_capacity(o.algorithms.len());
    for name in &o.algorithms {
        match Alg::parse(name.trim()) {
            Some(a) => algorithms.push(a),
            None => {
                return Err(AuthSetupError::Invalid(format!(
                    "auth.oauth.algorithms: {name:?} is not accepted; choose among {} (never none or HMAC)",
                    Alg::ALL.map(Alg::as_str).join(", ")
                )))
            }
        }
    }
    if algorithms.is_empty() {
        return Err(AuthSetupError::Invalid(
            "auth.oauth.algorithms must name at least one algorithm".into(),
        ));
    }
    let client = http::AsClient::with_ca(o.http_timeout, config.outbound.ca_file.as_deref())
        .map_err(AuthSetupError::Invalid)?;
    let issuer = Arc::new(Issuer::new(
        issuer.to_string(),
        o.jwks_url.clone(),
        client.clone(),
        o.jwks_min_refetch,
    ));
    let audience = o
        .audience
        .clone()
        .unwrap_or_else(|| canonical_uri.to_string());
    let introspector = introspect::Introspector::new(&o.introspection, client, o.token_cache_size);
    // With introspection on, a revoked token must not outlive the introspection cache in the
    // validated-token cache.
    let cache_ttl = match &introspector {
        Some(_) => o.token_cache_ttl.min(o.introspection.cache_ttl),
        None => o.token_cache_ttl,
    };
    // Compared byte for byte, exactly as configured.
    let expected_iss = issuer.issuer().to_string();
    Ok(Validator::new(
        issuer,
        ValidatorSettings {
            rules: claims::ClaimRules {
                issuer: expected_iss,
                audiences: vec![audience],
                leeway: o.leeway.as_secs(),
            },
            algorithms,
            required_scopes: o.required_scopes.clone(),
            required_pool: o.required_pool.clone().filter(|p| !p.is_empty()),
            scope_rules: rules.clone(),
            cache_ttl,
            cache_size: o.token_cache_size,
        },
        introspector,
    ))
}

fn anonymous_principal(p: &PrincipalConfig, rules: &ScopeRules) -> Principal {
    let grants = GrantedScopes::new(&p.scopes, rules);
    Principal {
        scope_key: Arc::from(grants.cache_key()),
        sub: p.sub.clone(),
        email: p.email.clone(),
        role: p.role.clone(),
        pool: p.pool.clone(),
        client_id: None,
        grants: Arc::new(grants),
        credential: p.token.clone(),
        kind: PrincipalKind::Anonymous,
        expires_at: None,
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_case_insensitive_and_rejects_empty() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("BEARER abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[tokio::test]
    async fn new_scope_rules_expand_the_fixed_principals_again() {
        let mut config = Config::default();
        config.auth.mode = AuthMode::None;
        config.auth.principal.scopes = vec!["mcp:s:admin".into()];
        config.auth.dev_bypass = Some(DevBypassConfig {
            token: "dev".into(),
            scopes: vec!["mcp:s:admin".into()],
            role: "admin".into(),
        });
        let auth = Authenticator::new(&config, "http://127.0.0.1:3213/mcp", &ScopeRules::default())
            .expect("authenticator");
        let grants = |outcome: AuthOutcome| match outcome {
            AuthOutcome::Ok(p) => (p.grants.clone(), p.scope_key.clone()),
            other => panic!("{other:?}"),
        };
        let anonymous = AuthRequest {
            authorization: None,
            dev_mode: None,
            peer: None,
        };
        let dev = AuthRequest {
            dev_mode: Some("dev"),
            peer: Some(IpAddr::from([127, 0, 0, 1])),
            ..anonymous
        };
        let (before, key_before) = grants(auth.authenticate(anonymous).await);
        assert!(!before.allows(Some("mcp:s:write")));
        assert!(!grants(auth.authenticate(dev).await)
            .0
            .allows(Some("mcp:s:write")));

        let mut implies = std::collections::BTreeMap::new();
        implies.insert("mcp:s:admin".to_string(), vec!["mcp:s:write".to_string()]);
        auth.set_scope_rules(&ScopeRules { implies });
        let (after, key_after) = grants(auth.authenticate(anonymous).await);
        assert!(after.allows(Some("mcp:s:write")));
        assert_ne!(
            key_before, key_after,
            "list caches are keyed by the expanded grants"
        );
        assert!(grants(auth.authenticate(dev).await)
            .0
            .allows(Some("mcp:s:write")));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
