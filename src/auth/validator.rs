//! Bearer-token validation for `auth.mode: oauth`: the validated-token cache, signature
//! verification against the issuer's keys, claim checks, the scope floor, the required pool
//! and optional introspection, in that order.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use cortex_filters::scope::{GrantedScopes, ScopeRules};
use tracing::debug;

use super::cache::{deadline_for, digest, DeadlineCache};
use super::claims::{self, ClaimRules, TokenClaims};
use super::introspect::{Introspected, Introspector};
use super::issuer::Issuer;
use super::jwt::{self, Alg, JwtError};
use super::stats::{bump, AuthStats};
use super::{unix_now, Principal, PrincipalKind};

/// The verdict on one token.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Valid: the caller.
    Ok(Principal),
    /// 401 `invalid_token` with a reason.
    Invalid(String),
    /// 403 with an OAuth error code (`insufficient_scope`, `invalid_audience`) and, for
    /// insufficient scope, the scopes needed.
    Forbidden {
        /// OAuth error code.
        error: &'static str,
        /// Reason.
        reason: String,
        /// Scopes the operation needs (step-up), space-separated.
        scope: Option<String>,
    },
    /// 503: cannot decide now (keys unknown, introspection down).
    Unavailable(String),
}

/// Everything needed to validate tokens of one issuer.
pub struct Validator {
    issuer: Arc<Issuer>,
    rules: ClaimRules,
    algorithms: Vec<Alg>,
    required_scopes: Vec<String>,
    required_pool: Option<String>,
    scope_rules: ArcSwap<ScopeRules>,
    cache_ttl: Duration,
    cache: DeadlineCache<Principal>,
    introspector: Option<Introspector>,
    stats: Arc<AuthStats>,
}

/// Settings of a [`Validator`].
pub struct ValidatorSettings {
    /// Claim rules.
    pub rules: ClaimRules,
    /// Allowed algorithms.
    pub algorithms: Vec<Alg>,
    /// Scope floor.
    pub required_scopes: Vec<String>,
    /// Required pool.
    pub required_pool: Option<String>,
    /// Scope implications.
    pub scope_rules: ScopeRules,
    /// Validated-token cache lifetime (0: off).
    pub cache_ttl: Duration,
    /// Validated-token cache size.
    pub cache_size: u64,
}

impl Validator {
    /// A validator for `issuer`.
    pub fn new(
        issuer: Arc<Issuer>,
        s: ValidatorSettings,
        introspector: Option<Introspector>,
    ) -> Validator {
        let capacity = if s.cache_ttl.is_zero() {
            0
        } else {
            s.cache_size
        };
        let stats = issuer.stats().clone();
        let evicted = stats.clone();
        let cache = DeadlineCache::counting_evictions(
            capacity,
            Arc::new(move || bump(&evicted.token_cache_evictions)),
        );
        let introspector = introspector.map(|i| i.with_stats(stats.clone()));
        Validator {
            issuer,
            rules: s.rules,
            algorithms: s.algorithms,
            required_scopes: s.required_scopes,
            required_pool: s.required_pool,
            scope_rules: ArcSwap::from_pointee(s.scope_rules),
            cache_ttl: s.cache_ttl,
            cache,
            introspector,
            stats,
        }
    }

    /// Puts new scope implications in force and forgets the tokens validated under the old
    /// ones (their grants were expanded with them).
    pub fn set_scope_rules(&self, rules: &ScopeRules) {
        self.scope_rules.store(Arc::new(rules.clone()));
        self.cache.clear();
        bump(&self.stats.token_cache_resets);
    }

    /// The issuer.
    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// The scope floor.
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// Validates `token`. The hot path (a token seen within `token_cache_ttl`) is one SHA-256
    /// and a cache lookup.
    pub async fn validate(&self, token: &str) -> Verdict {
        let key = digest(&[b"validated", token.as_bytes()]);
        if let Some(p) = self.cache.get(&key) {
            bump(&self.stats.token_cache_hits);
            return Verdict::Ok(p);
        }
        bump(&self.stats.token_cache_misses);
        let rules = self.scope_rules.load_full();
        let verdict = self.validate_uncached(token, &rules).await;
        // Not cached when the implications changed meanwhile: its grants are the old ones.
        let current = Arc::ptr_eq(&rules, &self.scope_rules.load());
        if let (Verdict::Ok(p), true) = (&verdict, current) {
            if let Some(deadline) = p
                .expires_at
                .and_then(|exp| deadline_for(exp, self.cache_ttl))
            {
                self.cache.insert(key, p.clone(), deadline);
            }
        }
        verdict
    }

    async fn validate_uncached(&self, token: &str, scope_rules: &ScopeRules) -> Verdict {
        let claims = match self.verify(token).await {
            Ok(c) => c,
            Err(v) => return v,
        };
        let grants = GrantedScopes::new(&claims.scopes, scope_rules);
        let missing: Vec<&str> = self
            .required_scopes
            .iter()
            .filter(|s| !grants.allows(Some(s)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Verdict::Forbidden {
                error: "insufficient_scope",
                reason: format!(
                    "the token lacks the scope(s) every caller of this gateway needs: {} (auth.oauth.required_scopes)",
                    missing.join(" ")
                ),
                scope: Some(self.required_scopes.join(" ")),
            };
        }
        if let (Some(required), Some(pool)) = (&self.required_pool, &claims.pool) {
            if required != pool {
                return Verdict::Forbidden {
                    error: "invalid_audience",
                    reason: format!(
                        "the token belongs to pool {pool:?}; this gateway serves pool {required:?}"
                    ),
                    scope: None,
                };
            }
        }
        if let Some(intro) = &self.introspector {
            match intro.check(token, claims.exp).await {
                Introspected::Active => {}
                Introspected::Inactive => {
                    return Verdict::Invalid(
                        "the authorization server reports this token as no longer active (revoked)"
                            .into(),
                    )
                }
                Introspected::Unavailable(reason) => return Verdict::Unavailable(reason),
            }
        }
        Verdict::Ok(principal(token, claims, grants))
    }

    /// Signature and claims.
    async fn verify(&self, token: &str) -> Result<TokenClaims, Verdict> {
        let inspected =
            jwt::inspect(token, &self.algorithms).map_err(|e| Verdict::Invalid(e.to_string()))?;
        let Some(mut keys) = self.issuer.keys() else {
            let status = self.issuer.status();
            return Err(Verdict::Unavailable(format!(
                "the signing keys of the authorization server {} are not known yet, so no token can be validated; retrying in the background{}",
                self.issuer.issuer(),
                status.last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
            )));
        };
        let (alg, kid) = (inspected.alg, inspected.header.kid.as_deref());
        if let Some(kid) = kid {
            if !keys.has_kid(kid) {
                match self.issuer.refetch_for_kid(kid).await {
                    Some(k) if k.has_kid(kid) => keys = k,
                    _ => {
                        return Err(Verdict::Invalid(format!(
                            "the token is signed with key id {:?}, which the authorization server does not publish",
                            printable(kid)
                        )))
                    }
                }
            }
        }
        let payload = keys.verify(token, kid, alg).map_err(|e| {
            if e == JwtError::BadSignature {
                debug!(alg = %alg, kid = ?kid, "token signature does not verify");
            }
            Verdict::Invalid(e.to_string())
        })?;
        claims::check_object(&payload, &self.rules, unix_now())
            .map_err(|e| Verdict::Invalid(e.to_string()))
    }

    /// Forgets every validated token (tests, key changes).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }
}

fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn principal(token: &str, c: TokenClaims, grants: GrantedScopes) -> Principal {
    Principal {
        scope_key: Arc::from(grants.cache_key()),
        sub: c.sub,
        email: c.email,
        role: c.role,
        pool: c.pool,
        client_id: c.client_id,
        grants: Arc::new(grants),
        credential: Some(token.to_string()),
        kind: PrincipalKind::Token,
        expires_at: Some(c.exp),
    }
}
