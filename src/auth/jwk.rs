//! JSON Web Keys: the issuer's public keys, parsed once per JWKS fetch with `jsonwebtoken`
//! into [`DecodingKey`]s, and the key selection rules.
//!
//! Selection: a token with a `kid` is checked against the key with that `kid` only; a token
//! without one against every key of the right type (a few authorization servers omit `kid`
//! when they publish one key). A key whose JWK says `use` other than `sig`, or whose `alg`
//! differs from the token's, is never used: a key is bound to one algorithm family, so an
//! RSA key cannot be "used" as an HMAC secret or an EC key with the wrong curve.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwt::{self, Alg, JwtError};

/// Largest JWKS accepted, in keys (bounds verification work for `kid`-less tokens).
const MAX_KEYS: usize = 64;

/// The curve or key type, which fixes the algorithms a key may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One public key, ready to verify.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it pins one.
    pin: Option<KeyAlgorithm>,
    kind: Kind,
    key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        if self
            .pin
            .is_some_and(|pin| pin != KeyAlgorithm::from(alg.algorithm()))
        {
            return false;
        }
        matches!(
            (self.kind, alg),
            (
                Kind::Rsa,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (Kind::P256, Alg::ES256)
                | (Kind::P384, Alg::ES384)
                | (Kind::Ed25519, Alg::EdDSA)
        )
    }

    /// Verifies the signature of `token` (signed with `alg`) and returns its claims.
    pub fn verify(&self, token: &str, alg: Alg) -> Result<Map<String, Value>, JwtError> {
        if !self.accepts(alg) {
            return Err(JwtError::BadSignature);
        }
        jwt::verify(token, alg, &self.key)
    }

    /// A JWK as a [`VerifyKey`], or `None` when it is not a signature key we support.
    fn from_jwk(mut jwk: Jwk) -> Option<VerifyKey> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        let kind = match &mut jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                unpad(&mut [&mut p.n, &mut p.e]);
                Kind::Rsa
            }
            AlgorithmParameters::EllipticCurve(p) => {
                unpad(&mut [&mut p.x, &mut p.y]);
                match p.curve {
                    EllipticCurve::P256 => Kind::P256,
                    EllipticCurve::P384 => Kind::P384,
                    _ => return None,
                }
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                unpad(&mut [&mut p.x]);
                Kind::Ed25519
            }
            _ => return None,
        };
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        let usable = match (kind, key.kind()) {
            // ring refuses moduli under 2048 bits at verification; refuse them here so that
            // a weak key is reported as unusable rather than as a bad signature.
            (Kind::Rsa, DecodingKeyKind::RsaModulusExponent { n, .. }) => {
                n.iter().skip_while(|b| **b == 0).count() * 8 >= 2048
            }
            // Uncompressed points `04 || x || y`, and the 32 bytes of an Ed25519 key.
            (Kind::P256, DecodingKeyKind::SecretOrDer(point)) => point.len() == 65,
            (Kind::P384, DecodingKeyKind::SecretOrDer(point)) => point.len() == 97,
            (Kind::Ed25519, DecodingKeyKind::SecretOrDer(x)) => x.len() == 32,
            _ => false,
        };
        usable.then(|| VerifyKey {
            kid: jwk.common.key_id,
            pin: jwk.common.key_algorithm,
            kind,
            key,
        })
    }
}

/// Tolerates base64url values written with `=` padding, as a few issuers do.
fn unpad(values: &mut [&mut String]) {
    for v in values {
        let len = v.trim_end_matches('=').len();
        v.truncate(len);
    }
}

#[derive(Debug, Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

/// Why a JWKS document is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not `{"keys":[…]}`.
    #[error("the JWKS is not a JSON object with a \"keys\" array")]
    NotJwks,
    /// No key we can verify with.
    #[error(
        "the JWKS holds no usable signing key (RSA, EC P-256/P-384 or Ed25519 with use \"sig\")"
    )]
    NoUsableKey,
}

/// The issuer's usable keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys we can use. Others, such as encryption keys,
    /// `oct` secrets or entries `jsonwebtoken` cannot read, are skipped silently one by one:
    /// many issuers publish them side by side (so the document is not read as one `JwkSet`,
    /// which one odd entry would make unusable as a whole).
    pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| JwksError::NotJwks)?;
        let keys: Vec<VerifyKey> = raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(VerifyKey::from_jwk)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this `kid` exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The `kid`s, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// The keys that may verify a token with this `kid` and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| match kid {
                Some(kid) => k.kid.as_deref() == Some(kid),
                None => true,
            })
            .filter(move |k| k.accepts(alg))
    }

    /// Verifies `token` (header already inspected: `kid`, `alg`) against the candidate keys and
    /// returns its claims, unchecked. [`JwtError::BadSignature`] when no key verifies it.
    pub fn verify(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Map<String, Value>, JwtError> {
        for key in self.candidates(kid, alg) {
            match key.verify(token, alg) {
                Err(JwtError::BadSignature) => continue,
                other => return other,
            }
        }
        Err(JwtError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::EncodingKey;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn es256_jwk(kid: &str) -> (EncodingKey, serde_json::Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    fn token(alg: Alg, kid: &str, key: &EncodingKey, sub: &str) -> String {
        jwt::sign(alg, kid, "at+jwt", &serde_json::json!({ "sub": sub }), key).unwrap()
    }

    fn tampered(token: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory"}"#);
        parts[1] = &other;
        parts.join(".")
    }

    #[test]
    fn verifies_es256_and_ed25519_and_rejects_tampering() {
        let rng = SystemRandom::new();
        let (ec, ec_jwk) = es256_jwk("ec1");
        let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
        let ed_jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"ed1","x":URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())});
        let set = KeySet::parse(
            serde_json::json!({"keys":[ec_jwk, ed_jwk, {"kty":"oct","k":"c2VjcmV0"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(set.len(), 2, "the oct key is skipped");

        let t = token(Alg::ES256, "ec1", &ec, "alice");
        let key = set.candidates(Some("ec1"), Alg::ES256).next().unwrap();
        assert_eq!(key.verify(&t, Alg::ES256).unwrap()["sub"], "alice");
        assert_eq!(
            key.verify(&tampered(&t), Alg::ES256).unwrap_err(),
            JwtError::BadSignature
        );
        assert_eq!(
            key.verify(&t, Alg::ES384).unwrap_err(),
            JwtError::BadSignature,
            "wrong curve for the alg"
        );
        assert!(set.candidates(Some("ec1"), Alg::RS256).next().is_none());
        assert_eq!(
            set.verify(&t, Some("ec1"), Alg::ES256).unwrap()["sub"],
            "alice"
        );
        assert_eq!(set.verify(&t, None, Alg::ES256).unwrap()["sub"], "alice");

        let ed_key = EncodingKey::from_ed_der(ed_pkcs8.as_ref());
        let t = token(Alg::EdDSA, "ed1", &ed_key, "bob");
        assert_eq!(set.verify(&t, None, Alg::EdDSA).unwrap()["sub"], "bob");
        assert_eq!(
            set.verify(&t, Some("ec1"), Alg::EdDSA).unwrap_err(),
            JwtError::BadSignature,
            "a kid selects that key only"
        );
        assert!(set.has_kid("ed1") && !set.has_kid("zz"));
    }

    #[test]
    fn skips_keys_pinned_to_another_alg_or_use() {
        let (_, mut jwk) = es256_jwk("k");
        jwk["alg"] = "ES384".into();
        let set = KeySet::parse(serde_json::json!({"keys":[jwk]}).to_string().as_bytes()).unwrap();
        assert!(set.candidates(Some("k"), Alg::ES256).next().is_none());
        let (_, mut enc) = es256_jwk("e");
        enc["use"] = "enc".into();
        let err =
            KeySet::parse(serde_json::json!({"keys":[enc]}).to_string().as_bytes()).unwrap_err();
        assert_eq!(err, JwksError::NoUsableKey);
        assert_eq!(KeySet::parse(b"[]").unwrap_err(), JwksError::NotJwks);
    }

    #[test]
    fn refuses_short_rsa_moduli() {
        let small = URL_SAFE_NO_PAD.encode([0xffu8; 128]); // 1024 bits
        let doc = serde_json::json!({"keys":[{"kty":"RSA","kid":"r","n":small,"e":"AQAB"}]});
        assert_eq!(
            KeySet::parse(doc.to_string().as_bytes()).unwrap_err(),
            JwksError::NoUsableKey
        );
    }

    #[test]
    fn one_odd_entry_does_not_spoil_the_set() {
        let (key, mut padded) = es256_jwk("p");
        for c in ["x", "y"] {
            padded[c] = format!("{}=", padded[c].as_str().unwrap()).into();
        }
        let odd = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": 7, "x": "AA"});
        let doc =
            serde_json::json!({"keys":[odd, padded, {"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            set.kids(),
            vec!["p"],
            "padding tolerated, the others skipped"
        );
        let t = token(Alg::ES256, "p", &key, "carol");
        assert_eq!(
            set.verify(&t, Some("p"), Alg::ES256).unwrap()["sub"],
            "carol"
        );
    }

    #[test]
    fn keys_the_token_points_to_are_never_used() {
        let (_, issuer_jwk) = es256_jwk("issuer");
        let set = KeySet::parse(
            serde_json::json!({ "keys": [issuer_jwk] })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        // An attacker's key, announced in the header by every means JOSE has, under the
        // issuer's kid.
        let (attacker, attacker_jwk) = es256_jwk("issuer");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("issuer".into());
        header.jku = Some("http://127.0.0.1:9/jwks.json".into());
        header.x5u = Some("http://127.0.0.1:9/cert.pem".into());
        header.x5c = Some(vec!["MIIBIjAN".into()]);
        header.jwk = Some(serde_json::from_value(attacker_jwk).unwrap());
        crate::auth::crypto::install();
        let forged =
            jsonwebtoken::encode(&header, &serde_json::json!({"sub": "mallory"}), &attacker)
                .unwrap();
        let d = jwt::inspect(&forged, &Alg::ALL).unwrap();
        assert_eq!(
            set.verify(&forged, d.header.kid.as_deref(), d.alg)
                .unwrap_err(),
            JwtError::BadSignature
        );
    }
}
