//! The compact JWS front of token validation and minting, on `jsonwebtoken`: the algorithm
//! allowlist, the header checks, and the calls that verify and sign.
//!
//! The gateway's own [`Alg`] names the algorithms a token may use: RSA PKCS#1 and PSS with
//! SHA-256/384/512, ECDSA P-256/P-384, and Ed25519. `none` and the HMAC family are not
//! representable as [`Alg`] at all, so no code path can verify an HS256 token against a public
//! key (the classic algorithm-confusion attack); the `ring` backend in [`super::crypto`] refuses
//! HMAC as well. Header fields that name keys elsewhere (`jku`, `x5u`, `x5c`, `jwk`) are read by
//! the parser and never used: keys come from the issuer's configured JWKS only.
//!
//! Claims are checked afterwards by [`super::claims`] (the gateway's rules and messages), so
//! `jsonwebtoken`'s own claim validation is switched off: its [`Validation`] here only pins the
//! one algorithm the header named and the allowlist accepted.

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::crypto;

/// The JWS algorithms a token may use (RFC 7518 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Parses an RFC 7518 name (case-sensitive, as JOSE is).
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The RFC 7518 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Alg::RS256 => Algorithm::RS256,
            Alg::RS384 => Algorithm::RS384,
            Alg::RS512 => Algorithm::RS512,
            Alg::PS256 => Algorithm::PS256,
            Alg::PS384 => Algorithm::PS384,
            Alg::PS512 => Algorithm::PS512,
            Alg::ES256 => Algorithm::ES256,
            Alg::ES384 => Algorithm::ES384,
            Alg::EdDSA => Algorithm::EdDSA,
        }
    }

    /// The allowed counterpart of a parsed header's algorithm: `None` for HMAC.
    pub fn from_algorithm(alg: Algorithm) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.algorithm() == alg)
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a usable JWT. Messages are safe to show to the caller: they never
/// contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts.
    #[error("the bearer token is not a JWT (expected three base64url parts separated by dots)")]
    Malformed,
    /// The header is not valid JSON or misses `alg`.
    #[error("the token's JOSE header is not valid JSON with an \"alg\"")]
    BadHeader,
    /// The payload is not a JSON object.
    #[error("the token's payload is not a JSON object")]
    BadPayload,
    /// `alg` is `none`, HMAC or unknown.
    #[error("the token is signed with \"{0}\", which this gateway never accepts (asymmetric algorithms only)")]
    ForbiddenAlg(String),
    /// `alg` is supported but not in the configured allowlist.
    #[error("the token is signed with {0}, which is not in auth.oauth.algorithms")]
    AlgNotAllowed(Alg),
    /// The header marks extensions critical that we do not implement (RFC 7515 §4.1.11).
    #[error(
        "the token's header lists critical extensions (crit) this gateway does not understand"
    )]
    CriticalHeader,
    /// No published key verifies the signature.
    #[error("the token's signature does not verify with the authorization server's keys")]
    BadSignature,
}

/// Longest token accepted: far above any real access token, small enough to bound work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token whose header passed the checks; its signature is not verified yet.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The JOSE header.
    pub header: Header,
    /// The algorithm, in the allowlist.
    pub alg: Alg,
}

/// Checks the shape and header of `token`, and its `alg` against `allowed`.
pub fn inspect(token: &str, allowed: &[Alg]) -> Result<Inspected, JwtError> {
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(JwtError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| header_error(token, e.kind()))?;
    if header.crit.is_some() {
        return Err(JwtError::CriticalHeader);
    }
    let alg = Alg::from_algorithm(header.alg)
        .ok_or_else(|| JwtError::ForbiddenAlg(format!("{:?}", header.alg)))?;
    if !allowed.contains(&alg) {
        return Err(JwtError::AlgNotAllowed(alg));
    }
    Ok(Inspected { header, alg })
}

/// Why `jsonwebtoken` could not read the header: an `alg` it does not know (`none`, a typo)
/// is named in the answer, anything else is a bad header.
fn header_error(token: &str, kind: &ErrorKind) -> JwtError {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    if !matches!(kind, ErrorKind::Json(_)) {
        return JwtError::Malformed;
    }
    let named = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|json| serde_json::from_slice::<AlgOnly>(&json).ok());
    match named {
        Some(AlgOnly { alg }) if alg.parse::<Algorithm>().is_err() => {
            JwtError::ForbiddenAlg(printable(&alg))
        }
        _ => JwtError::BadHeader,
    }
}

/// Verifies the signature of `token` (already [`inspect`]ed: `alg` is its header's) with `key`
/// and returns its claims, unchecked.
pub fn verify(token: &str, alg: Alg, key: &DecodingKey) -> Result<Map<String, Value>, JwtError> {
    // One per entry of `Alg::ALL`, in its order (the declaration order of `Alg`).
    static SIGNATURE_ONLY: LazyLock<[Validation; 9]> = LazyLock::new(|| {
        Alg::ALL.map(|alg| {
            let mut v = Validation::new(alg.algorithm());
            v.required_spec_claims.clear();
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v
        })
    });
    crypto::install();
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, &SIGNATURE_ONLY[alg as usize]) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::Json(_) => JwtError::BadPayload,
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                JwtError::Malformed
            }
            // A bad signature, or a key of another type or curve: this key does not verify it.
            _ => JwtError::BadSignature,
        }),
    }
}

/// Signs `claims` as a compact JWS with `alg`, `kid` and `typ` in the header.
pub fn sign(
    alg: Alg,
    kid: &str,
    typ: &str,
    claims: &Value,
    key: &EncodingKey,
) -> Result<String, jsonwebtoken::errors::Error> {
    crypto::install();
    let mut header = Header::new(alg.algorithm());
    header.typ = Some(typ.to_string());
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key)
}

/// The public JWK of a key the gateway signs with: `alg`, `use: sig`, and its RFC 7638
/// thumbprint as `kid`.
pub fn public_jwk(alg: Alg, public: &DecodingKey) -> Result<Jwk, jsonwebtoken::errors::Error> {
    crypto::install();
    let mut jwk = Jwk::from_decoding_key(public, Some(alg.algorithm()))?;
    jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256)?);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}

/// A header value safe to echo in an error message (bounded, visible ASCII).
fn printable(s: &str) -> String {
    s.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64(header.as_bytes()),
            b64(payload.as_bytes())
        )
    }

    #[test]
    fn inspects_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
        );
        let d = inspect(&t, &Alg::ALL).unwrap();
        assert_eq!(d.alg, Alg::ES256);
        assert_eq!(d.header.kid.as_deref(), Some("k1"));
        assert_eq!(d.header.typ.as_deref(), Some("at+jwt"));
    }

    #[test]
    fn refuses_none_and_hmac_whatever_the_allowlist() {
        for alg in ["none", "HS256", "HS384", "HS512", "nOnE", "RS1"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"sub":"a"}"#);
            assert_eq!(
                inspect(&t, &Alg::ALL).unwrap_err(),
                JwtError::ForbiddenAlg(alg.to_string()),
                "{alg}"
            );
        }
    }

    #[test]
    fn applies_the_allowlist() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"sub":"a"}"#);
        assert_eq!(
            inspect(&t, &[Alg::ES256]).unwrap_err(),
            JwtError::AlgNotAllowed(Alg::RS256)
        );
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(inspect("abc", &Alg::ALL).unwrap_err(), JwtError::Malformed);
        assert_eq!(
            inspect("a.b.c.d", &Alg::ALL).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(
            inspect("!!.e30.c2ln", &Alg::ALL).unwrap_err(),
            JwtError::Malformed
        );
        let not_json = format!("{}.e30.c2ln", b64(b"nope"));
        assert_eq!(
            inspect(&not_json, &Alg::ALL).unwrap_err(),
            JwtError::BadHeader
        );
        let no_alg = token(r#"{"kid":"k"}"#, "{}");
        assert_eq!(
            inspect(&no_alg, &Alg::ALL).unwrap_err(),
            JwtError::BadHeader
        );
        let crit = token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}");
        assert_eq!(
            inspect(&crit, &Alg::ALL).unwrap_err(),
            JwtError::CriticalHeader
        );
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(inspect(&huge, &Alg::ALL).unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn verifies_signatures_and_refuses_non_object_payloads() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = DecodingKey::from_ec_der(pair.public_key().as_ref());
        let private = EncodingKey::from_ec_der(pkcs8.as_ref());
        let claims = serde_json::json!({"sub": "a"});
        let t = sign(Alg::ES256, "k1", "at+jwt", &claims, &private).unwrap();
        let d = inspect(&t, &Alg::ALL).unwrap();
        assert_eq!(d.header.kid.as_deref(), Some("k1"));
        assert_eq!(verify(&t, Alg::ES256, &public).unwrap()["sub"], "a");

        let (input, _) = t.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", b64(&[7u8; 64]));
        assert_eq!(
            verify(&forged, Alg::ES256, &public).unwrap_err(),
            JwtError::BadSignature
        );
        assert_eq!(
            verify(&t, Alg::ES384, &public).unwrap_err(),
            JwtError::BadSignature,
            "the header's algorithm is the only one tried"
        );

        let array = sign(Alg::ES256, "k1", "JWT", &serde_json::json!([1]), &private).unwrap();
        assert_eq!(
            verify(&array, Alg::ES256, &public).unwrap_err(),
            JwtError::BadPayload
        );
    }
}
