//! Caller authentication: who is calling, with which scopes, and what credential to forward.
//!
//! Modes: `none` (a fixed principal; loopback only), the Cortex dev bypass (`X-Dev-Mode`
//! from a loopback peer), and `oauth` (bearer JWTs). This module is the seam every mode
//! plugs into; the gateway only sees [`AuthOutcome`].

use std::net::IpAddr;
use std::sync::Arc;

use cortex_filters::scope::{GrantedScopes, ScopeRules};

use crate::config::{AuthConfig, AuthMode, DevBypassConfig, PrincipalConfig};

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
    anonymous: Principal,
    dev_bypass: Option<(DevBypassConfig, Arc<GrantedScopes>)>,
    issuer_configured: bool,
}

impl Authenticator {
    /// Builds the authenticator.
    pub fn new(cfg: &AuthConfig, rules: &ScopeRules) -> Self {
        Authenticator {
            mode: cfg.mode,
            anonymous: anonymous_principal(&cfg.principal, rules),
            dev_bypass: cfg
                .dev_bypass
                .as_ref()
                .map(|d| (d.clone(), Arc::new(GrantedScopes::new(&d.scopes, rules)))),
            issuer_configured: cfg.oauth.issuer.is_some(),
        }
    }

    /// Whether localhost origins are acceptable (the dev modes).
    pub fn dev_modes_active(&self) -> bool {
        self.mode == AuthMode::None || self.dev_bypass.is_some()
    }

    /// The configured mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Authenticates one request.
    pub fn authenticate(&self, req: AuthRequest<'_>) -> AuthOutcome {
        if let (Some((cfg, grants)), Some(presented)) = (&self.dev_bypass, req.dev_mode) {
            let loopback = req.peer.is_some_and(|ip| ip.is_loopback());
            if loopback && constant_time_eq(presented.as_bytes(), cfg.token.as_bytes()) {
                return AuthOutcome::Ok(Principal {
                    scope_key: Arc::from(grants.cache_key()),
                    sub: "dev:local".into(),
                    email: Some("dev@localhost".into()),
                    role: Some(cfg.role.clone()),
                    pool: None,
                    client_id: None,
                    grants: grants.clone(),
                    credential: Some(cfg.token.clone()),
                    kind: PrincipalKind::DevBypass,
                });
            }
        }
        match self.mode {
            AuthMode::None => AuthOutcome::Ok(self.anonymous.clone()),
            AuthMode::Oauth => match bearer(req.authorization) {
                None => AuthOutcome::Unauthorized {
                    reason: "this endpoint requires an OAuth 2.1 bearer token (Authorization: Bearer <token>)".into(),
                    token_presented: false,
                },
                Some(_token) if !self.issuer_configured => AuthOutcome::Unauthorized {
                    reason: "no authorization server is configured, so no token can be accepted".into(),
                    token_presented: true,
                },
                Some(_token) => AuthOutcome::Unavailable {
                    reason: "token validation is not available yet: the issuer's keys are unknown".into(),
                },
            },
        }
    }
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

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
