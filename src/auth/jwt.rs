//! Compact JWS parsing and the algorithm allowlist.
//!
//! Only what a resource server needs: split a compact JWT, decode its header and payload, and
//! name its algorithm. Signatures are checked in [`super::jwk`] with `ring` (already in the
//! tree through rustls), so there is one crypto stack in the binary and the algorithm set is
//! exactly the one we allow: RSA PKCS#1 and PSS with SHA-256/384/512, ECDSA P-256/P-384, and
//! Ed25519. `none` and the HMAC family are not representable as [`Alg`] at all, so no code path
//! can verify an HS256 token against a public key (the classic algorithm-confusion attack).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

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

    /// The JWK `kty` this algorithm needs.
    pub fn key_type(self) -> &'static str {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => "RSA",
            Alg::ES256 | Alg::ES384 => "EC",
            Alg::EdDSA => "OKP",
        }
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
}

/// The JOSE header fields we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// Algorithm name as written.
    pub alg: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Type (`at+jwt`, `JWT`); informative only, since many authorization servers omit it.
    #[serde(default)]
    pub typ: Option<String>,
    /// Critical extensions.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A decoded (not yet verified) compact JWS.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The header.
    pub header: Header,
    /// The algorithm, already checked against the allowlist.
    pub alg: Alg,
    /// The decoded payload bytes (a JSON object).
    pub payload: Vec<u8>,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Longest token accepted: far above any real access token, small enough to bound work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Splits and decodes `token`, checking `alg` against `allowed`.
pub fn decode<'a>(token: &'a str, allowed: &[Alg]) -> Result<Decoded<'a>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwtError::BadHeader)?;
    if header.crit.is_some() {
        return Err(JwtError::CriticalHeader);
    }
    let alg =
        Alg::parse(&header.alg).ok_or_else(|| JwtError::ForbiddenAlg(printable(&header.alg)))?;
    if !allowed.contains(&alg) {
        return Err(JwtError::AlgNotAllowed(alg));
    }
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed)?;
    if payload.first() != Some(&b'{') {
        return Err(JwtError::BadPayload);
    }
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(Decoded {
        header,
        alg,
        payload,
        signing_input,
        signature,
    })
}

/// A header value safe to echo in an error message (bounded, visible ASCII).
fn printable(s: &str) -> String {
    s.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// `base64url(json(header)) "." base64url(json(claims))`: the signing input of a new token.
pub fn signing_input(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}")
}

/// Base64url without padding (JOSE encoding).
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64(header.as_bytes()),
            b64(payload.as_bytes())
        )
    }

    #[test]
    fn decodes_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
        );
        let d = decode(&t, &Alg::ALL).unwrap();
        assert_eq!(d.alg, Alg::ES256);
        assert_eq!(d.header.kid.as_deref(), Some("k1"));
        assert_eq!(d.signature, b"sig");
        assert_eq!(d.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn refuses_none_and_hmac_whatever_the_allowlist() {
        for alg in ["none", "HS256", "HS384", "HS512", "nOnE", "RS1"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"sub":"a"}"#);
            assert!(
                matches!(decode(&t, &Alg::ALL), Err(JwtError::ForbiddenAlg(_))),
                "{alg}"
            );
        }
    }

    #[test]
    fn applies_the_allowlist() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"sub":"a"}"#);
        assert_eq!(
            decode(&t, &[Alg::ES256]).unwrap_err(),
            JwtError::AlgNotAllowed(Alg::RS256)
        );
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(decode("abc", &Alg::ALL).unwrap_err(), JwtError::Malformed);
        assert_eq!(
            decode("a.b.c.d", &Alg::ALL).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(
            decode("!!.e30.c2ln", &Alg::ALL).unwrap_err(),
            JwtError::Malformed
        );
        let not_json = format!("{}.e30.c2ln", b64(b"nope"));
        assert_eq!(
            decode(&not_json, &Alg::ALL).unwrap_err(),
            JwtError::BadHeader
        );
        let array = token(r#"{"alg":"RS256"}"#, "[1]");
        assert_eq!(decode(&array, &Alg::ALL).unwrap_err(), JwtError::BadPayload);
        let crit = token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}");
        assert_eq!(
            decode(&crit, &Alg::ALL).unwrap_err(),
            JwtError::CriticalHeader
        );
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(decode(&huge, &Alg::ALL).unwrap_err(), JwtError::Malformed);
    }
}
