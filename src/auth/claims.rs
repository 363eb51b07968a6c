//! Access-token claim checks (OAuth 2.1 §5.2, RFC 9068): a pure function of the payload, the
//! rules and the clock, so every rule has a unit test.
//!
//! Checked: `iss` equals the configured issuer byte for byte; `aud` (string or array) contains
//! the expected audience; `exp` is in the future, `nbf` and `iat` are not, each with the
//! configured leeway; `sub` is present and not empty. `jti` is not required (Cortex required
//! it, which refused valid tokens of several authorization servers). Scopes come from `scope`
//! (space-separated, RFC 9068/8693) or `scp` (array or string: Entra ID, Okta).

use serde_json::{Map, Value};

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// Expected `iss`, exact.
    pub issuer: String,
    /// Acceptable audiences: the token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Clock skew tolerated, in seconds.
    pub leeway: u64,
}

/// The claims the gateway uses, after checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `sub`.
    pub sub: String,
    /// Granted scopes, in token order, deduplicated.
    pub scopes: Vec<String>,
    /// `email`.
    pub email: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `pool` (Cortex).
    pub pool: Option<String>,
    /// `metadata.role` (Cortex), else a top-level `role`.
    pub role: Option<String>,
    /// `client_id`, else `azp`.
    pub client_id: Option<String>,
    /// `exp` (seconds since the epoch).
    pub exp: u64,
    /// `jti`, if any.
    pub jti: Option<String>,
}

/// Why the claims are refused. The messages are meant for the caller (they end up in the
/// 401 body and `error_description`) and never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Payload not a JSON object.
    #[error("the token's payload is not a JSON object")]
    NotObject,
    /// `iss` differs.
    #[error(
        "the token was issued by {found:?}, but this gateway only accepts tokens of {expected:?}"
    )]
    Issuer {
        /// What the token says.
        found: String,
        /// The configured issuer.
        expected: String,
    },
    /// `aud` does not contain the audience.
    #[error("the token's audience {found} does not include {expected:?}: request the token with resource={expected} (RFC 8707)")]
    Audience {
        /// What the token says (JSON).
        found: String,
        /// The expected audience.
        expected: String,
    },
    /// `exp` missing.
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    /// `exp` passed.
    #[error("the token expired {ago}s ago")]
    Expired {
        /// Seconds since expiry.
        ago: u64,
    },
    /// `nbf` in the future.
    #[error("the token is not valid before {nbf} (nbf is {ahead}s in the future)")]
    NotYetValid {
        /// The `nbf`.
        nbf: u64,
        /// How far ahead.
        ahead: u64,
    },
    /// `iat` in the future.
    #[error("the token claims to be issued {ahead}s in the future (iat); check the clocks")]
    IssuedInFuture {
        /// How far ahead.
        ahead: u64,
    },
    /// `sub` missing.
    #[error("the token has no subject (sub)")]
    NoSubject,
    /// A time claim is not a number.
    #[error("the token's {0} claim is not a number")]
    BadTime(&'static str),
}

/// Checks `payload` against `rules` at `now` (seconds since the epoch).
pub fn check(payload: &[u8], rules: &ClaimRules, now: u64) -> Result<TokenClaims, ClaimError> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| ClaimError::NotObject)?;
    check_object(v.as_object().ok_or(ClaimError::NotObject)?, rules, now)
}

/// Checks the claims of a verified token (`jsonwebtoken` decoded them) against `rules` at
/// `now`.
pub fn check_object(
    obj: &Map<String, Value>,
    rules: &ClaimRules,
    now: u64,
) -> Result<TokenClaims, ClaimError> {
    let iss = obj.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != rules.issuer {
        return Err(ClaimError::Issuer {
            found: bounded(iss),
            expected: rules.issuer.clone(),
        });
    }
    check_audience(obj.get("aud"), &rules.audiences)?;
    let exp = time(obj.get("exp"), "exp")?.ok_or(ClaimError::NoExpiry)?;
    if now > exp.saturating_add(rules.leeway) {
        return Err(ClaimError::Expired { ago: now - exp });
    }
    if let Some(nbf) = time(obj.get("nbf"), "nbf")? {
        if nbf > now.saturating_add(rules.leeway) {
            return Err(ClaimError::NotYetValid {
                nbf,
                ahead: nbf - now,
            });
        }
    }
    if let Some(iat) = time(obj.get("iat"), "iat")? {
        if iat > now.saturating_add(rules.leeway) {
            return Err(ClaimError::IssuedInFuture { ahead: iat - now });
        }
    }
    let sub = obj
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or(ClaimError::NoSubject)?;
    let text = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let role = obj
        .get("metadata")
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| text("role"));
    Ok(TokenClaims {
        sub: sub.to_string(),
        scopes: scopes(obj),
        email: text("email"),
        name: text("name"),
        pool: text("pool"),
        role,
        client_id: text("client_id").or_else(|| text("azp")),
        exp,
        jti: text("jti"),
    })
}

fn bounded(s: &str) -> String {
    s.chars().take(200).collect()
}

fn check_audience(aud: Option<&Value>, expected: &[String]) -> Result<(), ClaimError> {
    let ok = match aud {
        Some(Value::String(a)) => expected.iter().any(|e| e == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| expected.iter().any(|e| e == a)),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let found = aud.map_or_else(|| "(none)".to_string(), |a| bounded(&a.to_string()));
    Err(ClaimError::Audience {
        found,
        expected: expected.first().cloned().unwrap_or_default(),
    })
}

/// A NumericDate claim: absent → None; integer or float seconds → Some.
fn time(v: Option<&Value>, name: &'static str) -> Result<Option<u64>, ClaimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(ClaimError::BadTime(name)),
        Some(_) => Err(ClaimError::BadTime(name)),
    }
}

/// `scope` (space-separated) and `scp` (array, or space-separated string), merged.
fn scopes(obj: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    for key in ["scope", "scp"] {
        match obj.get(key) {
            Some(Value::String(s)) => s.split_whitespace().for_each(&mut push),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .flat_map(str::split_whitespace)
                .for_each(&mut push),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://as.example".into(),
            audiences: vec!["https://gw.example/mcp".into()],
            leeway: 60,
        }
    }

    fn base() -> Value {
        json!({"iss":"https://as.example","aud":"https://gw.example/mcp","sub":"alice","exp":NOW+600,"iat":NOW})
    }

    fn run(v: &Value) -> Result<TokenClaims, ClaimError> {
        check(v.to_string().as_bytes(), &rules(), NOW)
    }

    #[test]
    fn accepts_a_good_token_and_reads_claims() {
        let mut v = base();
        v["scope"] = json!("a b a");
        v["scp"] = json!(["c", "b"]);
        v["metadata"] = json!({"role":"admin"});
        v["pool"] = json!("p1");
        v["azp"] = json!("client-1");
        v["email"] = json!("a@x");
        let c = run(&v).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.scopes, vec!["a", "b", "c"]);
        assert_eq!(c.role.as_deref(), Some("admin"));
        assert_eq!(c.pool.as_deref(), Some("p1"));
        assert_eq!(c.client_id.as_deref(), Some("client-1"));
        assert_eq!(c.email.as_deref(), Some("a@x"));
        assert_eq!(c.exp, NOW + 600);
        assert_eq!(c.jti, None, "jti is optional");
    }

    #[test]
    fn scp_as_a_string_and_audience_arrays() {
        let mut v = base();
        v["scp"] = json!("x y");
        v["aud"] = json!(["other", "https://gw.example/mcp"]);
        assert_eq!(run(&v).unwrap().scopes, vec!["x", "y"]);
    }

    #[test]
    fn issuer_must_match_exactly() {
        let mut v = base();
        v["iss"] = json!("https://as.example/");
        assert!(matches!(run(&v), Err(ClaimError::Issuer { .. })));
        v.as_object_mut().unwrap().remove("iss");
        assert!(matches!(run(&v), Err(ClaimError::Issuer { .. })));
    }

    #[test]
    fn audience_must_be_included() {
        let mut v = base();
        v["aud"] = json!("https://other.example/mcp");
        let e = run(&v).unwrap_err();
        assert!(
            e.to_string().contains("resource=https://gw.example/mcp"),
            "{e}"
        );
        v["aud"] = json!(["a", "b"]);
        assert!(matches!(run(&v), Err(ClaimError::Audience { .. })));
        v.as_object_mut().unwrap().remove("aud");
        assert!(matches!(run(&v), Err(ClaimError::Audience { .. })));
    }

    #[test]
    fn times_with_leeway() {
        let mut v = base();
        v["exp"] = json!(NOW - 30);
        assert!(run(&v).is_ok(), "within leeway");
        v["exp"] = json!(NOW - 61);
        assert_eq!(run(&v).unwrap_err(), ClaimError::Expired { ago: 61 });
        v["exp"] = json!(NOW + 600);
        v["nbf"] = json!(NOW + 120);
        assert!(matches!(run(&v), Err(ClaimError::NotYetValid { .. })));
        v["nbf"] = json!(NOW + 30);
        assert!(run(&v).is_ok());
        v["iat"] = json!(NOW + 3600);
        assert!(matches!(run(&v), Err(ClaimError::IssuedInFuture { .. })));
        v["iat"] = json!("yesterday");
        assert_eq!(run(&v).unwrap_err(), ClaimError::BadTime("iat"));
        v["iat"] = json!(NOW as f64 + 0.5);
        assert!(run(&v).is_ok(), "fractional NumericDate");
        v.as_object_mut().unwrap().remove("exp");
        assert_eq!(run(&v).unwrap_err(), ClaimError::NoExpiry);
    }

    #[test]
    fn subject_is_required() {
        let mut v = base();
        v["sub"] = json!("  ");
        assert_eq!(run(&v).unwrap_err(), ClaimError::NoSubject);
        v.as_object_mut().unwrap().remove("sub");
        assert_eq!(run(&v).unwrap_err(), ClaimError::NoSubject);
    }

    #[test]
    fn non_objects_are_refused() {
        assert_eq!(
            check(b"[]", &rules(), NOW).unwrap_err(),
            ClaimError::NotObject
        );
        assert_eq!(
            check(b"{", &rules(), NOW).unwrap_err(),
            ClaimError::NotObject
        );
    }
}
