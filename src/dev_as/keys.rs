//! The authorization server's signing key: one ES256 (ECDSA P-256) key, persisted as PKCS#8
//! PEM so tokens (and registered clients, whose ids are sealed with a key derived from it)
//! survive a restart. Published as a JWKS with an RFC 7638 thumbprint as `kid`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::util::Internal;
use crate::auth::jwt::{self, Alg};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why the signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file exists but cannot be read.
    #[error("cannot read the signing key {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key could not be written.
    #[error("cannot write the signing key {}: {source}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold a usable key. It is never overwritten: it may be someone's.
    #[error("{} is not a PKCS#8 P-256 private key in PEM ({reason}); fix it, or delete it to have a new key generated", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The random generator failed.
    #[error("cannot generate a signing key: the system random number generator failed")]
    Generate,
}

/// An ES256 signing key.
pub struct SigningKey {
    key: EncodingKey,
    kid: String,
    public_jwk: Value,
    /// Secret material for keys derived from this one (see [`SigningKey::derive`]).
    seed: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads the key at `path`, or generates one and writes it there (mode 0600, parent
    /// directories created). Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let der = pem_decode(&text).map_err(|reason| KeyError::Invalid {
                    path: path.to_path_buf(),
                    reason,
                })?;
                let key = SigningKey::from_pkcs8(&der).map_err(|reason| KeyError::Invalid {
                    path: path.to_path_buf(),
                    reason,
                })?;
                Ok((key, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, der) = SigningKey::generate()?;
                match write_new(path, &pem_encode(&der)) {
                    Ok(()) => Ok((key, true)),
                    // Another process created it in between: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        SigningKey::load_or_create(path)
                    }
                    Err(source) => Err(KeyError::Write {
                        path: path.to_path_buf(),
                        source,
                    }),
                }
            }
            Err(source) => Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// A new random key and its PKCS#8 document.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?;
        let der = doc.as_ref().to_vec();
        let key = SigningKey::from_pkcs8(&der).map_err(|_| KeyError::Generate)?;
        Ok((key, der))
    }

    /// A key from a PKCS#8 (v1 with the public key, or v2) P-256 document.
    /// `ring` reads it here, once, to check it and find its public half; tokens are signed
    /// through `jsonwebtoken`.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| format!("rejected: {e}"))?;
        let public = DecodingKey::from_ec_der(pair.public_key().as_ref());
        let jwk = jwt::public_jwk(Alg::ES256, &public).map_err(|e| e.to_string())?;
        let mut h = Sha256::new();
        h.update(b"cortex-gateway dev authorization server seed v1\0");
        h.update(der);
        let seed: [u8; 32] = h.finalize().into();
        Ok(SigningKey {
            key: EncodingKey::from_ec_der(der),
            kid: jwk.common.key_id.clone().unwrap_or_default(),
            public_jwk: serde_json::to_value(&jwk).map_err(|e| e.to_string())?,
            seed,
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> Value {
        self.public_jwk.clone()
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }

    /// A 32-byte secret for `purpose`, derived from the private key, so that whatever it
    /// protects lives exactly as long as the key file.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(purpose.as_bytes());
        h.finalize().into()
    }

    /// Signs `claims` as a compact JWS with `typ` (e.g. `at+jwt`, RFC 9068).
    pub(crate) fn sign_jwt(&self, typ: &str, claims: &Value) -> Result<String, Internal> {
        jwt::sign(Alg::ES256, &self.kid, typ, claims, &self.key).map_err(|_| Internal::Sign)
    }
}

/// PEM `PRIVATE KEY` armour around a PKCS#8 document.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// The PKCS#8 document inside `PRIVATE KEY` armour.
pub fn pem_decode(text: &str) -> Result<Vec<u8>, String> {
    let start = text
        .find(PEM_BEGIN)
        .ok_or_else(|| format!("no `{PEM_BEGIN}` line"))?;
    let body = &text[start + PEM_BEGIN.len()..];
    let end = body
        .find(PEM_END)
        .ok_or_else(|| format!("no `{PEM_END}` line"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).map_err(|e| format!("bad base64: {e}"))
}

/// Writes `contents` to a new file at `path` (never replacing one), readable by the owner
/// only. Written to a temporary file first and linked into place, so a reader never sees
/// half a key.
fn write_new(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The default key file: `<data_dir>/keys/dev-authorization-server.pem`.
pub fn default_key_file(config: &crate::config::Config) -> PathBuf {
    config
        .data_dir()
        .join("keys")
        .join("dev-authorization-server.pem")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn a_created_key_is_persisted_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.pem");
        let (a, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_broken_key_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "not a key").unwrap();
        let err = SigningKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
    }

    #[test]
    fn signatures_verify_with_the_published_jwk() {
        let (key, _) = SigningKey::generate().unwrap();
        let jwt = key.sign_jwt("at+jwt", &json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwk = key.public_jwk();
        let mut point = vec![4u8];
        point.extend(super::super::util::b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(super::super::util::b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
        let sig = super::super::util::b64url_decode(parts[2]).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &sig)
            .unwrap();
        assert!(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(b"tampered", &sig)
            .is_err());
    }

    #[test]
    fn pem_round_trips() {
        let (_, der) = SigningKey::generate().unwrap();
        assert_eq!(pem_decode(&pem_encode(&der)).unwrap(), der);
    }
}
