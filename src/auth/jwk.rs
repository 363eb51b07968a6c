//! JSON Web Keys: the issuer's public keys, parsed once per JWKS fetch into the form `ring`
//! verifies with, and the key selection rules.
//!
//! Selection: a token with a `kid` is checked against the key with that `kid` only; a token
//! without one against every key of the right type (a few authorization servers omit `kid`
//! when they publish one key). A key whose JWK says `use` other than `sig`, or whose `alg`
//! differs from the token's, is never used: a key is bound to one algorithm family, so an
//! RSA key cannot be "used" as an HMAC secret or an EC key with the wrong curve.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use super::jwt::Alg;

/// Largest JWKS accepted, in keys (bounds verification work for `kid`-less tokens).
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    EcP256(Vec<u8>),
    EcP384(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// One public key, ready to verify.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it pins one.
    pub alg: Option<String>,
    material: Material,
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
            return false;
        }
        matches!(
            (&self.material, alg),
            (
                Material::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (Material::EcP256(_), Alg::ES256)
                | (Material::EcP384(_), Alg::ES384)
                | (Material::Ed25519(_), Alg::EdDSA)
        )
    }

    /// Verifies `signature` over `message` with `alg`. False on any mismatch.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match &self.material {
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            Material::EcP256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            Material::EcP384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// The fields of a JWK we read; everything else is ignored.
#[derive(Debug, Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
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
    /// Parses a JWKS document, keeping the keys we can use (others, such as encryption keys or
    /// `oct` secrets, are skipped silently: many issuers publish them side by side).
    pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| JwksError::NotJwks)?;
        let keys: Vec<VerifyKey> = raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
            .filter_map(convert)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// Builds a set from keys already parsed (the gateway's own minting keys, tests).
    pub fn from_keys(keys: Vec<VerifyKey>) -> KeySet {
        KeySet { keys }
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
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    field
        .as_deref()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
}

/// A JWK as a [`VerifyKey`], or `None` when it is not a signature key we support.
fn convert(raw: RawJwk) -> Option<VerifyKey> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let material = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = b64(&raw.n)?;
            let e = b64(&raw.e)?;
            // ring refuses moduli under 2048 bits at verification; refuse them here so that
            // a weak key is reported as unusable rather than as a bad signature.
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return None;
            }
            Material::Rsa { n, e }
        }
        ("EC", Some("P-256")) => Material::EcP256(ec_point(&raw, 32)?),
        ("EC", Some("P-384")) => Material::EcP384(ec_point(&raw, 48)?),
        ("OKP", Some("Ed25519")) => {
            let x = b64(&raw.x)?;
            (x.len() == 32).then_some(())?;
            Material::Ed25519(x)
        }
        _ => return None,
    };
    Some(VerifyKey {
        kid: raw.kid,
        alg: raw.alg,
        material,
    })
}

/// The uncompressed SEC1 point `04 || x || y` of an EC JWK.
fn ec_point(raw: &RawJwk, size: usize) -> Option<Vec<u8>> {
    let x = b64(&raw.x)?;
    let y = b64(&raw.y)?;
    if x.len() != size || y.len() != size {
        return None;
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point)
}

/// A public key from raw parts: the gateway's own minting keys.
pub fn ec_p256_key(kid: &str, uncompressed_point: &[u8]) -> VerifyKey {
    VerifyKey {
        kid: Some(kid.to_string()),
        alg: Some("ES256".into()),
        material: Material::EcP256(uncompressed_point.to_vec()),
    }
}

/// An Ed25519 public key from its 32 bytes.
pub fn ed25519_key(kid: &str, public: &[u8]) -> VerifyKey {
    VerifyKey {
        kid: Some(kid.to_string()),
        alg: Some("EdDSA".into()),
        material: Material::Ed25519(public.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn es256_jwk(kid: &str) -> (EcdsaKeyPair, serde_json::Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        (pair, jwk)
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

        let msg = b"header.payload";
        let sig = ec.sign(&rng, msg).unwrap();
        let key = set.candidates(Some("ec1"), Alg::ES256).next().unwrap();
        assert!(key.verify(Alg::ES256, msg, sig.as_ref()));
        assert!(!key.verify(Alg::ES256, b"header.payloaX", sig.as_ref()));
        assert!(
            !key.verify(Alg::ES384, msg, sig.as_ref()),
            "wrong curve for the alg"
        );
        assert!(set.candidates(Some("ec1"), Alg::RS256).next().is_none());

        let sig = ed.sign(msg);
        let key = set.candidates(None, Alg::EdDSA).next().unwrap();
        assert!(key.verify(Alg::EdDSA, msg, sig.as_ref()));
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
}
