//! The crypto backend of `jsonwebtoken`: signatures with `ring`.
//!
//! `jsonwebtoken` parses tokens, headers and JWKs and leaves the signature arithmetic to a
//! process-wide [`CryptoProvider`]. Its two built-in backends were measured against `ring` and
//! not taken (docs/architecture.md has the figures): the pure-Rust one verifies RS256 and ES256
//! several times slower and brings a second crypto stack, `aws-lc-rs` adds a C build. `ring` is
//! already in the binary through rustls, so this small provider binds the crate to it.
//!
//! Only asymmetric algorithms exist here: the factories refuse every HMAC algorithm, so even a
//! key or token that reached them by mistake could not be checked or signed with a shared
//! secret (the allowlist in [`super::jwt`] refuses them before that).

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature as sig;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Makes [`PROVIDER`] the process-wide backend of `jsonwebtoken`. Every function of the gateway
/// that hands work to `jsonwebtoken` calls this first; after the first call it costs one atomic
/// load.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed: nothing else in the binary installs one.
        let _ = PROVIDER.install_default();
    });
}

/// Signing and verification with `ring`; JWK helpers the gateway does not use answer an error.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(unsupported()),
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_, _| Err(unsupported()),
        ed_pub_components_from_private_key: ed_unsupported,
        compute_digest,
    },
};

fn unsupported() -> Error {
    ErrorKind::Provider("not provided by the gateway's ring backend".into()).into()
}

fn ed_unsupported(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>> {
    Err(unsupported())
}

/// RFC 7638 thumbprints (the `kid` of the keys the gateway signs with).
fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    Ok(match hash {
        ThumbprintHash::SHA256 => Sha256::digest(data).to_vec(),
        ThumbprintHash::SHA384 => Sha384::digest(data).to_vec(),
        ThumbprintHash::SHA512 => Sha512::digest(data).to_vec(),
        _ => return Err(unsupported()),
    })
}

/// `ring`'s RSA verification parameters for `alg` (moduli of 2048 to 8192 bits).
fn rsa_verification(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// `ring`'s verification algorithm for the EC and EdDSA algorithms (JOSE's fixed-size
/// `r || s` ECDSA signatures).
fn point_verification(alg: Algorithm) -> Option<&'static dyn sig::VerificationAlgorithm> {
    Some(match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        _ => return None,
    })
}

/// A public key and the algorithm it checks.
struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let verified = match (self.key.kind(), rsa_verification(self.alg)) {
            (DecodingKeyKind::RsaModulusExponent { n, e }, Some(params)) => {
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, signature)
                    .is_ok()
            }
            // An RSAPublicKey (PKCS#1) DER document.
            (DecodingKeyKind::SecretOrDer(der), Some(params)) => {
                sig::UnparsedPublicKey::new(params, der)
                    .verify(msg, signature)
                    .is_ok()
            }
            // An uncompressed EC point or an Ed25519 public key.
            (DecodingKeyKind::SecretOrDer(bytes), None) => point_verification(self.alg)
                .is_some_and(|alg| {
                    sig::UnparsedPublicKey::new(alg, bytes)
                        .verify(msg, signature)
                        .is_ok()
                }),
            (DecodingKeyKind::RsaModulusExponent { .. }, None) => false,
        };
        verified.then_some(()).ok_or_else(signature::Error::new)
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if alg.family() == AlgorithmFamily::Hmac || key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: key.clone(),
    }))
}

enum KeyPair {
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
}

/// A private key (PKCS#8; PKCS#1 for RSA too) and the algorithm it signs with.
struct RingSigner {
    alg: Algorithm,
    pair: KeyPair,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.pair {
            KeyPair::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            KeyPair::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            KeyPair::Rsa(pair, encoding) => {
                let mut out = vec![0u8; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let der = key.as_bytes();
    let rsa = |encoding: &'static dyn sig::RsaEncoding| -> Result<KeyPair> {
        sig::RsaKeyPair::from_pkcs8(der)
            .or_else(|_| sig::RsaKeyPair::from_der(der))
            .map(|pair| KeyPair::Rsa(pair, encoding))
            .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()).into())
    };
    let ecdsa = |alg: &'static sig::EcdsaSigningAlgorithm| -> Result<KeyPair> {
        sig::EcdsaKeyPair::from_pkcs8(alg, der, &SystemRandom::new())
            .map(KeyPair::Ecdsa)
            .map_err(|_| ErrorKind::InvalidEcdsaKey.into())
    };
    let pair = match alg {
        Algorithm::ES256 => ecdsa(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)?,
        Algorithm::ES384 => ecdsa(&sig::ECDSA_P384_SHA384_FIXED_SIGNING)?,
        Algorithm::RS256 => rsa(&sig::RSA_PKCS1_SHA256)?,
        Algorithm::RS384 => rsa(&sig::RSA_PKCS1_SHA384)?,
        Algorithm::RS512 => rsa(&sig::RSA_PKCS1_SHA512)?,
        Algorithm::PS256 => rsa(&sig::RSA_PSS_SHA256)?,
        Algorithm::PS384 => rsa(&sig::RSA_PSS_SHA384)?,
        Algorithm::PS512 => rsa(&sig::RSA_PSS_SHA512)?,
        Algorithm::EdDSA => sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(KeyPair::Ed25519)
            .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?,
        // HMAC (and anything newer): the gateway never signs with a shared secret.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingSigner { alg: *alg, pair }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};

    #[test]
    fn refuses_hmac_whatever_the_key() {
        install();
        let secret = DecodingKey::from_secret(b"secret").unwrap();
        assert!(verifier(&Algorithm::HS256, &secret).is_err());
        let rsa = DecodingKey::from_rsa_raw_components(&[0xff; 256], &[1, 0, 1]);
        assert!(verifier(&Algorithm::HS256, &rsa).is_err());
        assert!(verifier(&Algorithm::ES256, &rsa).is_err(), "wrong family");
        let secret = EncodingKey::from_secret(b"secret").unwrap();
        let e = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &"{}", &secret).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidAlgorithm);
    }

    #[test]
    fn signs_and_verifies_through_jsonwebtoken() {
        install();
        let rng = SystemRandom::new();
        let pkcs8 =
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &serde_json::json!({"sub": "a"}),
            &EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
        .unwrap();
        let key = DecodingKey::from_ec_der(sig::KeyPair::public_key(&pair).as_ref());
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap();
        assert_eq!(claims.claims["sub"], "a");
        let (input, signature) = token.rsplit_once('.').unwrap();
        let first = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{input}.{first}{}", &signature[1..]);
        let e = jsonwebtoken::decode::<serde_json::Value>(&tampered, &key, &v).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidSignature);
    }
}
